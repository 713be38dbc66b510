package runc

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// VersionInfo is what a runtime's `--version` says about itself.
type VersionInfo struct {
	// Output is the whole `--version` output, trimmed.
	Output string `json:"-"`
	// Line is its first line, e.g. "runc version 1.5.3".
	Line string `json:"line"`
	// Runtime is the program's own name from that line ("runc", "crun"),
	// "" when the line is not "<name> version <version>".
	Runtime string `json:"runtime,omitempty"`
	// Version is the version as printed, e.g. "1.1.5+ds1"; "" if unknown.
	Version string `json:"version,omitempty"`
}

// ParseVersionOutput reads `<runtime> --version` output. runc and crun
// (and runsc) start it with "<name> version <version>"; anything else
// keeps only Line.
func ParseVersionOutput(out string) VersionInfo {
	out = strings.TrimSpace(out)
	line, _, _ := strings.Cut(out, "\n")
	vi := VersionInfo{Output: out, Line: strings.TrimSpace(line)}
	if f := strings.Fields(vi.Line); len(f) == 3 && f[1] == "version" {
		vi.Runtime, vi.Version = f[0], f[2]
	}
	return vi
}

// Features are the "+NAME" build features crun lists on a line of its
// `--version` output (e.g. "+SYSTEMD +SECCOMP +LIBKRUN").
func (v VersionInfo) Features() []string {
	var feats []string
	for _, w := range strings.Fields(v.Output) {
		if len(w) > 1 && w[0] == '+' {
			feats = append(feats, w[1:])
		}
	}
	return feats
}

// versionTimeout bounds `--version`: a wedged binary must not hold up
// crid's start.
const versionTimeout = 10 * time.Second

// VersionInfo runs `<runtime> --version` once and caches the answer for
// the life of the Runtime: crid reads it at start (to warn about known
// escapes) and Status reports it on every verbose call without spawning
// the runtime. A runtime upgraded under a running crid shows its new
// version after crid restarts. A failure is not cached (so a later call
// may succeed), except a context error which is returned as is.
func (r *Runtime) VersionInfo(ctx context.Context) (VersionInfo, error) {
	r.verMu.Lock()
	defer r.verMu.Unlock()
	if r.ver != nil {
		return *r.ver, nil
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.Path, "--version").Output()
	if err != nil {
		return VersionInfo{}, fmt.Errorf("%s --version: %w", r.Path, err)
	}
	vi := ParseVersionOutput(string(out))
	if vi.Line == "" {
		return VersionInfo{}, fmt.Errorf("%s --version printed nothing", r.Path)
	}
	r.ver = &vi
	return vi, nil
}

// Version is a runtime release number: major.minor[.patch][-pre][+build].
// Pre-release tags compare by their letters and then their number, so that
// runc's old "1.0.0-rc10" is after "1.0.0-rc7" and "1.4.0-rc.2" before
// "1.4.0-rc.3"; a release is after all its pre-releases.
type Version struct {
	Major, Minor, Patch int
	PreTag              string // "rc", "alpha", ...; "" for a release
	PreNum              int
}

// ParseVersion parses a runtime's version. Build metadata ("+ds1",
// Debian's) is ignored; so is a suffix after "-" that starts with a digit:
// that is how distributions append their package revision
// ("1.1.12-0ubuntu2"), and it must not read as a pre-release older than
// the release it packages. A leading "v" is allowed.
func ParseVersion(s string) (Version, error) {
	var v Version
	rest := strings.TrimPrefix(strings.TrimSpace(s), "v")
	rest, _, _ = strings.Cut(rest, "+")
	core, pre, hasPre := strings.Cut(rest, "-")
	nums := strings.Split(core, ".")
	if len(nums) < 2 || len(nums) > 3 {
		return Version{}, fmt.Errorf("version %q: want major.minor[.patch]", s)
	}
	fields := []*int{&v.Major, &v.Minor, &v.Patch}
	for i, n := range nums {
		x, err := strconv.Atoi(n)
		if err != nil || x < 0 {
			return Version{}, fmt.Errorf("version %q: %q is not a number", s, n)
		}
		*fields[i] = x
	}
	if hasPre && pre != "" && !isDigit(pre[0]) {
		tag, num, err := parsePre(pre)
		if err != nil {
			return Version{}, fmt.Errorf("version %q: %w", s, err)
		}
		v.PreTag, v.PreNum = tag, num
	}
	return v, nil
}

// parsePre splits "rc.2", "rc2" or "beta" into its letters and number.
func parsePre(pre string) (string, int, error) {
	i := 0
	for i < len(pre) && isLetter(pre[i]) {
		i++
	}
	tag, num := pre[:i], strings.TrimPrefix(pre[i:], ".")
	if num == "" {
		return tag, 0, nil
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return "", 0, fmt.Errorf("pre-release %q: want letters and a number", pre)
	}
	return tag, n, nil
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// Compare returns -1, 0 or +1 as v is before, the same as or after w.
func (v Version) Compare(w Version) int {
	for _, d := range [][2]int{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if c := cmpInt(d[0], d[1]); c != 0 {
			return c
		}
	}
	switch {
	case v.PreTag == "" && w.PreTag == "":
		return 0
	case v.PreTag == "":
		return 1
	case w.PreTag == "":
		return -1
	}
	if c := strings.Compare(v.PreTag, w.PreTag); c != 0 {
		return c
	}
	return cmpInt(v.PreNum, w.PreNum)
}

// compareLine compares the major.minor release lines of v and w.
func (v Version) compareLine(w Version) int {
	if c := cmpInt(v.Major, w.Major); c != 0 {
		return c
	}
	return cmpInt(v.Minor, w.Minor)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.PreTag != "" {
		s += fmt.Sprintf("-%s.%d", v.PreTag, v.PreNum)
	}
	return s
}
