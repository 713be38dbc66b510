package nsexec

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// records decodes a request back into key/value pairs.
func records(t *testing.T, b []byte) [][2]string {
	t.Helper()
	if len(b) == 0 || b[len(b)-1] != 0 {
		t.Fatalf("request not NUL-terminated: %q", b)
	}
	parts := strings.Split(string(b[:len(b)-1]), "\x00")
	if len(parts)%2 != 0 {
		t.Fatalf("odd number of fields: %q", parts)
	}
	var out [][2]string
	for i := 0; i < len(parts); i += 2 {
		out = append(out, [2]string{parts[i], parts[i+1]})
	}
	return out
}

func TestEncodeRequest(t *testing.T) {
	umask := uint32(0o027)
	oom := 500
	eperm := uint(1)
	enosys := uint(38)
	proc := &specs.Process{
		Args: []string{"sh", "-c", "echo hi"},
		Env:  []string{"PATH=/bin", "MULTI=a\nb"},
		Cwd:  "/work",
		User: specs.User{UID: 1000, GID: 3000, AdditionalGids: []uint32{2001, 2002}, Umask: &umask},
		Capabilities: &specs.LinuxCapabilities{
			Bounding:  []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE"},
			Effective: []string{"CAP_NET_BIND_SERVICE"},
			Permitted: []string{"CAP_NET_BIND_SERVICE"},
		},
		Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 4096}},
		NoNewPrivileges: true,
		OOMScoreAdj:     &oom,
		ApparmorProfile: "crid-default",
	}
	sc := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   []specs.Arch{specs.ArchX86_64, specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write"}, Action: specs.ActAllow},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 0, Op: specs.OpEqualTo}, {Index: 0, Value: 8, Op: specs.OpEqualTo},
			}},
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 2114060288, ValueTwo: 0, Op: specs.OpMaskedEqual},
			}},
		},
	}
	b, err := encodeRequest(proc, sc, 0x6c020000, []string{"/sys/fs/cgroup/memory/c1", "/sys/fs/cgroup/unified/c1"})
	if err != nil {
		t.Fatal(err)
	}
	got := records(t, b)
	want := [][2]string{
		{"ns", "6c020000"},
		{"cgroup", "/sys/fs/cgroup/memory/c1"},
		{"cgroup", "/sys/fs/cgroup/unified/c1"},
		{"oom", "500"},
		{"rlimit", "7 1024 4096"},
		{"uid", "1000"},
		{"gid", "3000"},
		{"groups", "2001 2002"},
		{"umask", "27"},
		{"cwd", "/work"},
		{"caps", "401 400 400 0 0"},
		{"nnp", "1"},
		{"apparmor", "crid-default"},
		{"seccomp-default", "SCMP_ACT_ERRNO 1"},
		{"seccomp-arch", "x86_64"},
		{"seccomp-arch", "x86"},
		{"seccomp-enosys", "1"},
		{"seccomp-rule", "SCMP_ACT_ALLOW 1 read 0"},
		{"seccomp-rule", "SCMP_ACT_ALLOW 1 write 0"},
		{"seccomp-rule", "SCMP_ACT_ERRNO 38 clone3 0"},
		{"seccomp-rule", "SCMP_ACT_ALLOW 1 personality 2 0 SCMP_CMP_EQ 0 0 0 SCMP_CMP_EQ 8 0"},
		{"seccomp-rule", "SCMP_ACT_ALLOW 1 clone 1 0 SCMP_CMP_MASKED_EQ 2114060288 0"},
		{"env", "PATH=/bin"},
		{"env", "MULTI=a\nb"},
		{"arg", "sh"},
		{"arg", "-c"},
		{"arg", "echo hi"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d:\n%q", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestEncodeRequestErrors(t *testing.T) {
	base := func() *specs.Process { return &specs.Process{Args: []string{"true"}} }
	tests := []struct {
		name string
		mut  func(*specs.Process)
		sc   *specs.LinuxSeccomp
	}{
		{"no args", func(p *specs.Process) { p.Args = nil }, nil},
		{"NUL in arg", func(p *specs.Process) { p.Args = []string{"a\x00b"} }, nil},
		{"NUL in env", func(p *specs.Process) { p.Env = []string{"A=\x00"} }, nil},
		{"unknown capability", func(p *specs.Process) {
			p.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_NOPE"}}
		}, nil},
		{"unknown rlimit", func(p *specs.Process) { p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOPE"}} }, nil},
		// The helper writes "exec NAME" to the kernel: one word.
		{"AppArmor profile with a space", func(p *specs.Process) { p.ApparmorProfile = "a b" }, nil},
		{"AppArmor profile with a newline", func(p *specs.Process) { p.ApparmorProfile = "a\nchangeprofile b" }, nil},
		{"syscall name with a space", nil, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read write"}, Action: specs.ActErrno}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			if tt.mut != nil {
				tt.mut(p)
			}
			if b, err := encodeRequest(p, tt.sc, 0, nil); err == nil {
				t.Fatalf("want error, got request %q", b)
			}
		})
	}
}

func TestSupported(t *testing.T) {
	linux := func(sc *specs.LinuxSeccomp) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Seccomp: sc}}
	}
	caps := &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}}
	proc := func(mut func(*specs.Process)) specs.Process {
		p := specs.Process{Capabilities: caps}
		if mut != nil {
			mut(&p)
		}
		return p
	}
	tests := []struct {
		name string
		spec *specs.Spec
		proc specs.Process
		ok   bool
	}{
		{"plain", linux(nil), proc(nil), true},
		{"no capabilities", linux(nil), proc(func(p *specs.Process) { p.Capabilities = nil }), false},
		{"empty capabilities", linux(nil), proc(func(p *specs.Process) { p.Capabilities = &specs.LinuxCapabilities{} }), true},
		{"seccomp", linux(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno}), proc(nil), true},
		{"terminal", linux(nil), proc(func(p *specs.Process) { p.Terminal = true }), false},
		// Entered by the helper itself, as runc does.
		{"apparmor", linux(nil), proc(func(p *specs.Process) { p.ApparmorProfile = "p" }), true},
		{"selinux", linux(nil), proc(func(p *specs.Process) { p.SelinuxLabel = "l" }), false},
		{"no linux", &specs.Spec{}, proc(nil), false},
		{"seccomp listener", linux(&specs.LinuxSeccomp{ListenerPath: "/run/agent.sock"}), proc(nil), false},
		{"seccomp notify", linux(&specs.LinuxSeccomp{Syscalls: []specs.LinuxSyscall{{Names: []string{"mount"}, Action: specs.ActNotify}}}), proc(nil), false},
		{"seccomp flags", linux(&specs.LinuxSeccomp{Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog}}), proc(nil), false},
		{"cgroupfs path", &specs.Spec{Linux: &specs.Linux{CgroupsPath: "/kubepods/c1"}}, proc(nil), true},
		{"systemd cgroups path", &specs.Spec{Linux: &specs.Linux{CgroupsPath: "kubepods.slice:crid:c1"}}, proc(nil), true},
		{"intel rdt", &specs.Spec{Linux: &specs.Linux{IntelRdt: &specs.LinuxIntelRdt{ClosID: "c1"}}}, proc(nil), false},
		// A time namespace is joined like the others, not routed.
		{"time namespace", &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.TimeNamespace}}}}, proc(nil), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Supported(tt.spec, &tt.proc)
			if (err == nil) != tt.ok {
				t.Fatalf("Supported = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestLoadSeals(t *testing.T) {
	h, err := Load("/bin/true", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.exe.Fd() < 100 {
		t.Errorf("memfd is fd %d; it must stay clear of the fds a child maps", h.exe.Fd())
	}
	if _, err := h.exe.WriteAt([]byte("x"), 0); err == nil {
		t.Error("writing the sealed helper succeeded")
	}
	got := make([]byte, 4)
	if _, err := h.exe.ReadAt(got, 0); err != nil || !bytes.Equal(got, []byte("\x7fELF")) {
		t.Errorf("memfd starts with %q (%v), want the ELF header", got, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h.exe.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o511 {
		t.Errorf("memfd mode %#o, want 0511", st.Mode&0o7777)
	}
	seals, err := unix.FcntlInt(h.exe.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_EXEC
	if seals&want != want {
		t.Errorf("seals %#x, want at least %#x", seals, want)
	}
	// What the attacker of issue 11 did through /proc/PID/exe: another
	// open file of the same memfd, owned by the same uid.
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", h.exe.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Chmod(0); !errors.Is(err, unix.EPERM) {
		t.Errorf("chmod 0 of the helper: %v, want EPERM (F_SEAL_EXEC)", err)
	}
}

// TestCheckRepairs: a helper whose mode or owner was changed (what the exec
// seal does not prevent, or all of it before Linux 6.3) is put back before
// an exec runs, and the tampering is logged.
func TestCheckRepairs(t *testing.T) {
	var logBuf bytes.Buffer
	h, err := Load("/bin/true", slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.check(); err != nil || logBuf.Len() > 0 {
		t.Fatalf("check of an untouched helper: %v, log %q", err, logBuf.String())
	}
	fd := int(h.exe.Fd())
	for _, tamper := range []struct {
		name string
		do   func() error
	}{
		{"chmod 0711", func() error { return unix.Fchmod(fd, 0o711) }},
		{"chmod 04511", func() error { return unix.Fchmod(fd, 0o4511) }},
		{"chown", func() error { return unix.Fchown(fd, 1234, 1234) }},
	} {
		t.Run(tamper.name, func(t *testing.T) {
			logBuf.Reset()
			if err := tamper.do(); err != nil {
				t.Fatal(err)
			}
			if err := h.check(); err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode&0o7777 != 0o511 || st.Uid != h.uid || st.Gid != h.gid {
				t.Errorf("after check: mode %#o owner %d:%d, want 0511 %d:%d", st.Mode&0o7777, st.Uid, st.Gid, h.uid, h.gid)
			}
			if !strings.Contains(logBuf.String(), "tampered") {
				t.Errorf("tampering not logged: %q", logBuf.String())
			}
		})
	}
}

// TestEncodeRequestCapsAlwaysSent: the helper drops every capability it is
// not sent, so crid always sends the caps record, all zero for none.
func TestEncodeRequestCapsAlwaysSent(t *testing.T) {
	for _, tt := range []struct {
		name string
		caps *specs.LinuxCapabilities
		want string
	}{
		{"nil", nil, "0 0 0 0 0"},
		{"empty", &specs.LinuxCapabilities{}, "0 0 0 0 0"},
		{"some", &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Ambient: []string{"cap_kill"}}, "20 0 0 0 20"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeRequest(&specs.Process{Args: []string{"true"}, Capabilities: tt.caps}, nil, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range records(t, b) {
				if r[0] == "caps" {
					got = append(got, r[1])
				}
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("caps records %q, want exactly [%q]", got, tt.want)
			}
		})
	}
}

// TestEnosysStubDecision: as runc's patchbpf, the stub goes with every
// default action that does not let unknown syscalls through.
func TestEnosysStubDecision(t *testing.T) {
	enosys := uint(unix.ENOSYS)
	for _, tt := range []struct {
		def   specs.LinuxSeccompAction
		errno *uint
		stub  bool
	}{
		{specs.ActErrno, nil, true},
		{specs.ActErrno, &enosys, true},
		{specs.ActKill, nil, true},
		{specs.ActKillThread, nil, true},
		{specs.ActKillProcess, nil, true},
		{specs.ActTrap, nil, true},
		{specs.ActAllow, nil, false},
		{specs.ActLog, nil, false},
		{specs.ActTrace, nil, false},
	} {
		t.Run(string(tt.def), func(t *testing.T) {
			sc := &specs.LinuxSeccomp{DefaultAction: tt.def, DefaultErrnoRet: tt.errno,
				Architectures: []specs.Arch{specs.ArchX86_64},
				Syscalls:      []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno}}}
			b, err := encodeRequest(&specs.Process{Args: []string{"true"}}, sc, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := false
			for _, r := range records(t, b) {
				if r[0] == "seccomp-enosys" {
					got = r[1] == "1"
				}
			}
			if got != tt.stub {
				t.Errorf("stub requested %v, want %v", got, tt.stub)
			}
		})
	}
}

func TestSplitStatus(t *testing.T) {
	for _, tt := range []struct {
		in       string
		warnings []string
		failure  string
	}{
		{"", nil, ""},
		{"exec foo: No such file\n", nil, "exec foo: No such file"},
		{"warning: a\nwarning: b\n", []string{"a", "b"}, ""},
		{"warning: a\nsetuid 5: Operation not permitted\n", []string{"a"}, "setuid 5: Operation not permitted"},
	} {
		w, f := splitStatus([]byte(tt.in))
		if strings.Join(w, "|") != strings.Join(tt.warnings, "|") || f != tt.failure {
			t.Errorf("splitStatus(%q) = %q, %q; want %q, %q", tt.in, w, f, tt.warnings, tt.failure)
		}
	}
}

// inTimeNamespace starts a process in a time namespace of its own and
// returns its pid.
func inTimeNamespace(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("unshare", "--time", "--fork", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// The sleep is unshare's child: the one in the new namespace.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			pid, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --time started no child")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNamespaceFlagsTime: a target in another time namespace is joined in
// it (finding 6c), and only in it.
func TestNamespaceFlagsTime(t *testing.T) {
	h, err := Load("/bin/true", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if flags, err := h.namespaceFlags(os.Getpid()); err != nil || flags != 0 {
		t.Fatalf("own namespaces: flags %#x, %v; want 0", flags, err)
	}
	flags, err := h.namespaceFlags(inTimeNamespace(t))
	if err != nil {
		t.Fatal(err)
	}
	if flags != unix.CLONE_NEWTIME {
		t.Errorf("flags %#x, want CLONE_NEWTIME", flags)
	}
}
