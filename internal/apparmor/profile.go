// Package apparmor is crid's AppArmor support: the text of crid's default
// profile for containers (crid-default, what RuntimeDefault means where
// the kernel enforces AppArmor), loading it with apparmor_parser, and the
// facts about the host that spec generation needs (is AppArmor enforced,
// is a profile loaded).
//
// The profile follows the rules containerd's cri-containerd.apparmor.d
// and CRI-O's crio-default (both descended from moby's docker-default)
// enforce: no mounts, no writes to the kernel's global state under /proc
// and /sys, no reading of /proc/kcore or firmware, signals and ptrace only
// among the container's own processes and from the node's unconfined side.
// The text is crid's own; its /proc and /sys write rules are generated as
// exact complements (see notUnder) instead of hand-written globs.
package apparmor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"text/template"
)

// DefaultProfile is the name of crid's default profile.
const DefaultProfile = "crid-default"

// hashPrefix starts the comment line that carries the hash of the rest of
// the text: the loader compares whole texts, the hash makes a loaded
// profile's version readable in the file crid keeps of it.
const hashPrefix = "# crid-profile-sha256: "

// Params are the host-dependent parts of the profile.
type Params struct {
	// Name is the profile's name (DefaultProfile outside tests).
	Name string
	// ABI declares `abi <abi/3.0>`: set where the parser ships that ABI
	// file (AppArmor 3+; an older parser does not know the rule). Without
	// it Debian's parser compiles for the older feature set it pins and
	// drops the signal, ptrace and mount rules.
	ABI bool
	// SignalPeers are the labels, besides the profile itself, whose
	// processes may signal the container's: crid, its monitors and the
	// OCI runtime (unconfined, or under their own profiles).
	SignalPeers []string
}

// DefaultSignalPeers returns the labels the node's side of a container runs
// under: unconfined, and the profiles that newer AppArmor releases ship
// for runc and crun (attached to those binaries, in unconfined mode but
// named: a signal from them names their profile, not "unconfined").
func DefaultSignalPeers() []string { return []string{"unconfined", "runc", "crun"} }

// writeProtected are the trees whose writes the profile limits, with the
// one subtree below each that stays writable: a process's own /proc/<pid>
// entries (oom_score_adj, attr, ...) and the IPC namespace's shared memory
// limits under /proc; the container's cgroup tree under /sys (nested
// cgroup managers write there; runc mounts it read-only unless asked).
var writeProtected = []struct {
	dir, keep, keepFirst, perms string
}{
	// keepFirst "0-9": entries whose name starts with a digit are pids.
	{dir: "/proc/", keep: "sys/kernel/shm", keepFirst: "0-9", perms: "w"},
	{dir: "/sys/", keep: "fs/cgroup/", perms: "wklx"},
}

// neverReadable are paths no container process may read or write at all:
// kernel memory, the magic SysRq trigger, firmware tables, the LSMs' own
// interfaces, and the RAPL energy counters (a power side channel,
// CVE-2020-8694).
var neverReadable = []string{
	"/proc/kcore",
	"/proc/sysrq-trigger",
	"/sys/firmware/**",
	"/sys/kernel/security/**",
	"/sys/devices/virtual/powercap/**",
}

// notUnder returns AppArmor globs that together match every path below dir
// (which ends in "/") that does not start with keep, and nothing else
// (apart from names containing "/" right where keep continues, which
// procfs and sysfs do not have). AppArmor has no negation but
// character classes, so the complement is spelled out, one glob for each
// position where a path can first leave keep: for keep "fs/cgroup/",
// "dir/[^f/]**", "dir/f[^s/]**", ..., "dir/fs/cgroup[^/]**".
// keepFirst adds ranges to the first position's class, also spared.
func notUnder(dir, keep, keepFirst string) []string {
	out := make([]string, 0, len(keep))
	for i := 0; i < len(keep); i++ {
		class := classEscape(keep[i])
		if keep[i] != '/' {
			class += "/"
		}
		if i == 0 {
			class = keepFirst + class
		}
		out = append(out, dir+keep[:i]+"[^"+class+"]**")
	}
	return out
}

// classEscape quotes a byte for a character class.
func classEscape(c byte) string {
	if strings.IndexByte(`\]^-[`, c) >= 0 {
		return `\` + string(c)
	}
	return string(c)
}

// rules are the template's computed parts.
type rules struct {
	Params
	WriteDenied []denyRule
	NeverRead   []string
}

type denyRule struct{ Path, Perms string }

// The profile. A rule's comment says why it is there.
const profileTemplate = `{{if .ABI}}abi <abi/3.0>,

{{end -}}
profile {{.Name}} flags=(attach_disconnected,mediate_deleted) {
  # What a container's processes may do: use the network, the
  # capabilities runc left them (seccomp and the bounding set limit
  # those), their files, and unmount. The deny rules below take away
  # what reaches past the container; in AppArmor a deny always wins.
  network,
  capability,
  file,
  umount,

  # Signals between the container's processes, and from the node's side
  # (crid, the monitor, runc: stop, kill, exec's cancellation).
  signal (send,receive) peer={{.Name}},
{{- range .SignalPeers}}
  signal (receive) peer={{.}},
{{- end}}

  # ptrace only among the container's processes (CAP_SYS_PTRACE and
  # Yama still decide whether it is allowed at all).
  ptrace (trace,read,tracedby,readby) peer={{.Name}},

  # No new mounts: a container with CAP_SYS_ADMIN could otherwise mount
  # over what runc masked or made read-only, or mount the host's devices.
  deny mount,
  deny remount,
  deny pivot_root,

  # Writes to the kernel's global state. Under /proc only a process's own
  # entries (/proc/<pid>/...) and the IPC namespace's shm limits stay
  # writable; under /sys only the cgroup tree.
  deny /proc/* w,
{{- range .WriteDenied}}
  deny {{.Path}} {{.Perms}},
{{- end}}

  # Never readable either.
{{- range .NeverRead}}
  deny {{.}} rwklx,
{{- end}}
}
`

var profileTmpl = template.Must(template.New("apparmor").Parse(profileTemplate))

// Render returns the profile's text: a header with the hash of the rest,
// then the policy.
func Render(p Params) (string, error) {
	if p.Name == "" || strings.ContainsAny(p.Name, " \t\n\"{}") {
		return "", fmt.Errorf("apparmor: invalid profile name %q", p.Name)
	}
	r := rules{Params: p, NeverRead: neverReadable}
	for _, w := range writeProtected {
		for _, g := range notUnder(w.dir, w.keep, w.keepFirst) {
			r.WriteDenied = append(r.WriteDenied, denyRule{Path: g, Perms: w.perms})
		}
	}
	var body bytes.Buffer
	if err := profileTmpl.Execute(&body, r); err != nil {
		return "", fmt.Errorf("apparmor: render profile %s: %w", p.Name, err)
	}
	sum := sha256.Sum256(body.Bytes())
	header := "# AppArmor profile " + p.Name + ": crid's default for containers whose\n" +
		"# profile is RuntimeDefault or unset. Generated by crid, which loads it\n" +
		"# again whenever its text differs from this: edits here do not last.\n" +
		hashPrefix + hex.EncodeToString(sum[:]) + "\n"
	return header + body.String(), nil
}

// TextHash returns the hash a rendered profile's header carries, "" if it
// has none.
func TextHash(text string) string {
	for _, line := range strings.Split(text, "\n") {
		if h, ok := strings.CutPrefix(line, hashPrefix); ok {
			return h
		}
	}
	return ""
}
