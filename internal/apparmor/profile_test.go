package apparmor

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func defaultParams() Params {
	return Params{Name: DefaultProfile, ABI: true, SignalPeers: DefaultSignalPeers()}
}

func render(t *testing.T, p Params) string {
	t.Helper()
	text, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// globRegexp turns an AppArmor path glob into a Go regexp with the
// meaning apparmor.d(5) gives it: ** any characters, * and ? any but '/',
// [...] a character class.
func globRegexp(t *testing.T, glob string) *regexp.Regexp {
	t.Helper()
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; {
		case strings.HasPrefix(glob[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			end := strings.IndexByte(glob[i:], ']')
			if end < 0 {
				t.Fatalf("glob %q: unterminated class", glob)
			}
			b.WriteString(glob[i : i+end+1])
			i += end
		case c == '{':
			t.Fatalf("glob %q: alternations are not used by the profile", glob)
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

type fileDeny struct {
	re    *regexp.Regexp
	perms string
}

// fileDenies are the profile's deny rules on paths.
func fileDenies(t *testing.T, text string) []fileDeny {
	t.Helper()
	var out []fileDeny
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), ","))
		if len(f) == 3 && f[0] == "deny" && strings.HasPrefix(f[1], "/") {
			out = append(out, fileDeny{globRegexp(t, f[1]), f[2]})
		}
	}
	if len(out) == 0 {
		t.Fatal("the profile has no file deny rules")
	}
	return out
}

func denied(rules []fileDeny, path string, perm byte) bool {
	for _, r := range rules {
		if strings.IndexByte(r.perms, perm) >= 0 && r.re.MatchString(path) {
			return true
		}
	}
	return false
}

// TestProfileFileRules: what the generated rules deny, path by path. The
// profile allows every file access ("file,") and takes away with deny
// rules, so this is the whole of its file policy.
func TestProfileFileRules(t *testing.T) {
	rules := fileDenies(t, render(t, defaultParams()))
	tests := []struct {
		path         string
		write, read  bool // denied?
		onlyApparmor bool // documentation: a path runc leaves writable
	}{
		// /proc: processes' own entries and the IPC namespace's shm limits stay writable.
		{path: "/proc/1/oom_score_adj"},
		{path: "/proc/42/task/42/attr/apparmor/exec"},
		{path: "/proc/123456/comm"},
		{path: "/proc/sys/kernel/shmmax"},
		{path: "/proc/sys/kernel/shm_rmid_forced"},
		{path: "/proc/sys/kernel/shmall"},
		{path: "/proc/sysrq-trigger", write: true, read: true},
		{path: "/proc/kcore", write: true, read: true},
		{path: "/proc/timer_list", write: true},
		{path: "/proc/sys/kernel/sysrq", write: true},
		{path: "/proc/sys/kernel/core_pattern", write: true},
		{path: "/proc/sys/kernel/hostname", write: true},
		{path: "/proc/sys/kernel/sem", write: true},
		{path: "/proc/sys/kernelx/y", write: true},
		{path: "/proc/sys/net/ipv4/ip_forward", write: true},
		{path: "/proc/sys/vm/drop_caches", write: true},
		{path: "/proc/sys/fs/binfmt_misc/register", write: true},
		{path: "/proc/sysvipc/shm", write: true},
		{path: "/proc/scsi/scsi", write: true},
		{path: "/proc/acpi/wakeup", write: true},
		{path: "/proc/irq/1/smp_affinity", write: true},
		{path: "/proc/cpuinfo", write: true},
		// /sys: only the cgroup tree is writable.
		{path: "/sys/fs/cgroup/cpu.max"},
		{path: "/sys/fs/cgroup/kubepods/pod1/memory.high"},
		{path: "/sys/fs/cgroupx/y", write: true},
		{path: "/sys/fs/fuse/connections/1/abort", write: true},
		{path: "/sys/kernel/mm/transparent_hugepage/enabled", write: true},
		{path: "/sys/class/net/eth0/mtu", write: true},
		{path: "/sys/module/apparmor/parameters/enabled", write: true},
		{path: "/sys/firmware/efi/efivars/x", write: true, read: true},
		{path: "/sys/kernel/security/apparmor/.load", write: true, read: true},
		{path: "/sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj", write: true, read: true},
		// Elsewhere the container's own files.
		{path: "/etc/passwd"},
		{path: "/tmp/x"},
		{path: "/proc-like/sysrq-trigger"},
	}
	for _, tt := range tests {
		if got := denied(rules, tt.path, 'w'); got != tt.write {
			t.Errorf("%s: write denied %v, want %v", tt.path, got, tt.write)
		}
		if got := denied(rules, tt.path, 'r'); got != tt.read {
			t.Errorf("%s: read denied %v, want %v", tt.path, got, tt.read)
		}
	}
}

func TestNotUnder(t *testing.T) {
	got := notUnder("/sys/", "fs/c", "")
	want := []string{"/sys/[^f/]**", "/sys/f[^s/]**", "/sys/fs[^/]**", "/sys/fs/[^c/]**"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("notUnder = %q, want %q", got, want)
	}
	if got := notUnder("/proc/", "s", "0-9"); len(got) != 1 || got[0] != "/proc/[^0-9s/]**" {
		t.Errorf("notUnder with keepFirst = %q", got)
	}
	if got := notUnder("/x/", "a]b", ""); got[1] != `/x/a[^\]/]**` {
		t.Errorf("class metacharacter not escaped: %q", got)
	}
}

func TestRender(t *testing.T) {
	p := defaultParams()
	text := render(t, p)
	if render(t, p) != text {
		t.Fatal("two renders of the same parameters differ")
	}
	// The header's hash is the rest's.
	_, body, ok := strings.Cut(text, TextHash(text)+"\n")
	sum := sha256.Sum256([]byte(body))
	if !ok || TextHash(text) != hex.EncodeToString(sum[:]) {
		t.Errorf("header hash %q is not the body's sha256", TextHash(text))
	}
	for _, want := range []string{
		"abi <abi/3.0>,",
		"profile crid-default flags=(attach_disconnected,mediate_deleted) {",
		"signal (send,receive) peer=crid-default,",
		"signal (receive) peer=unconfined,",
		"signal (receive) peer=runc,",
		"ptrace (trace,read,tracedby,readby) peer=crid-default,",
		"deny mount,",
		"deny pivot_root,",
	} {
		if !strings.Contains(text, "\n"+want+"\n") && !strings.Contains(text, "  "+want+"\n") {
			t.Errorf("profile lacks %q:\n%s", want, text)
		}
	}
	noABI := p
	noABI.ABI = false
	other := render(t, noABI)
	if strings.Contains(other, "abi <") || TextHash(other) == TextHash(text) {
		t.Errorf("without ABI: hash %s (with: %s), text:\n%s", TextHash(other), TextHash(text), other)
	}
	for _, bad := range []string{"", "a b", "x{", "a\nb"} {
		if _, err := Render(Params{Name: bad}); err == nil {
			t.Errorf("Render accepted name %q", bad)
		}
	}
}

// TestRenderParses has apparmor_parser compile the profile (without
// loading it: -Q), for each shape it takes on a host; no kernel AppArmor
// is needed.
func TestRenderParses(t *testing.T) {
	parser, err := findParser()
	if err != nil {
		t.Skipf("apparmor_parser is not installed (Debian: the apparmor package): %v", err)
	}
	confined := defaultParams()
	confined.SignalPeers = append(DefaultSignalPeers(), "crid")
	noABI := defaultParams()
	noABI.ABI = false
	for name, p := range map[string]Params{"default": defaultParams(), "crid confined": confined, "no abi rule": noABI} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), DefaultProfile)
			if err := os.WriteFile(path, []byte(render(t, p)), 0o600); err != nil {
				t.Fatal(err)
			}
			// Against a kernel with AppArmor 3.0's features (the 6.1 of
			// Debian 12 has them), every rule must be enforced: a signal,
			// ptrace or mount rule the parser would drop is an error.
			args := []string{"-Q", "-K", "--warn=rule-not-enforced", "--Werror=rule-not-enforced", path}
			if _, err := os.Stat(abiFile); err == nil {
				args = append([]string{"--kernel-features", abiFile}, args...)
			}
			out, err := exec.Command(parser, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", parser, strings.Join(args, " "), err, out)
			}
			names, err := exec.Command(parser, "-N", path).Output()
			if err != nil || strings.TrimSpace(string(names)) != DefaultProfile {
				t.Errorf("profile names %q (%v), want %s", names, err, DefaultProfile)
			}
		})
	}
}

func TestOwnLabel(t *testing.T) {
	for in, want := range map[string]string{
		"unconfined\n":                   "unconfined",
		"crid (enforce)\n":               "crid",
		"/usr/bin/crid (complain)\x00\n": "/usr/bin/crid",
		"a//&b (enforce)\n":              "",
		"":                               "",
		"bad\"name (enforce)":            "",
	} {
		if got := ownLabel(in); got != want {
			t.Errorf("ownLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestListed(t *testing.T) {
	list := []byte("crid-default (enforce)\n/usr/bin/man (enforce)\ncrid-default-old (complain)\n")
	for name, want := range map[string]bool{"crid-default": true, "/usr/bin/man": true, "crid": false, "crid-default-o": false} {
		if got := listed(list, name); got != want {
			t.Errorf("listed(%q) = %v, want %v", name, got, want)
		}
	}
}
