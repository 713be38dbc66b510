//go:build !(linux && (amd64 || arm64))

package oci

// nativeSyscalls is empty where crid has no syscall table (mksyscalls.go
// generates amd64 and arm64): the seccomp notifier is refused there.
var nativeSyscalls []Syscall

// nativeAuditArch is 0 without a syscall table.
const nativeAuditArch = 0
