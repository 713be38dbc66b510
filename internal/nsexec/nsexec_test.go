package nsexec

import (
	"bytes"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
		{"seccomp-default", "SCMP_ACT_ERRNO 1"},
		{"seccomp-arch", "x86_64"},
		{"seccomp-arch", "x86"},
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
	tests := []struct {
		name string
		spec *specs.Spec
		proc specs.Process
		ok   bool
	}{
		{"plain", linux(nil), specs.Process{}, true},
		{"seccomp", linux(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno}), specs.Process{}, true},
		{"terminal", linux(nil), specs.Process{Terminal: true}, false},
		{"apparmor", linux(nil), specs.Process{ApparmorProfile: "p"}, false},
		{"selinux", linux(nil), specs.Process{SelinuxLabel: "l"}, false},
		{"no linux", &specs.Spec{}, specs.Process{}, false},
		{"seccomp listener", linux(&specs.LinuxSeccomp{ListenerPath: "/run/agent.sock"}), specs.Process{}, false},
		{"seccomp notify", linux(&specs.LinuxSeccomp{Syscalls: []specs.LinuxSyscall{{Names: []string{"mount"}, Action: specs.ActNotify}}}), specs.Process{}, false},
		{"seccomp flags", linux(&specs.LinuxSeccomp{Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog}}), specs.Process{}, false},
		{"cgroupfs path", &specs.Spec{Linux: &specs.Linux{CgroupsPath: "/kubepods/c1"}}, specs.Process{}, true},
		{"systemd cgroups path", &specs.Spec{Linux: &specs.Linux{CgroupsPath: "kubepods.slice:crid:c1"}}, specs.Process{}, false},
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
	h, err := Load("/bin/true")
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
}
