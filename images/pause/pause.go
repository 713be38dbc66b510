// Package pause carries the source of crid's pause program, the process
// that holds a pod sandbox's namespaces. test/images compiles it into the
// pause image (registry.k8s.io/pause:*) at build time.
package pause

import _ "embed"

//go:embed pause.c
var source []byte

// Source returns the C source of the pause program.
func Source() []byte { return append([]byte(nil), source...) }

// CompileArgs are the gcc arguments (before -o) that build a self-contained
// pause binary from Source on standard input.
func CompileArgs() []string {
	return []string{"-static", "-Os", "-s", "-Wall", "-Werror", "-x", "c", "-"}
}
