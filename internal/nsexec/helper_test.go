package nsexec

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// These tests run the real crid-nsexec, built from cmd/crid-nsexec, on the
// host: no namespaces or cgroups to join (the request says none), but the
// real request parsing, seccomp filter, capabilities and execve.

// buildHelper builds crid-nsexec as the Makefile does and loads it.
func buildHelper(t *testing.T, log *slog.Logger) *Helper {
	t.Helper()
	out := filepath.Join(t.TempDir(), BinaryName)
	cmd := exec.Command("make", "-s", "-C", "../..", "nsexec", "NSEXEC_OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", BinaryName, err, b)
	}
	h, err := Load(out, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// runHelper runs req through h with a pidfd of pid (the helper joins
// nothing when the request's ns is 0) and returns the exit code and stdout.
func runHelper(t *testing.T, h *Helper, pid int, req []byte) (int, string) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	pidf := os.NewFile(uintptr(fd), "pidfd")
	defer pidf.Close()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := h.run(ctx, pidf, req, IO{Stdout: &stdout, Stderr: &stderr}, time.Second)
	if err != nil {
		t.Fatalf("helper: %v (stderr %q)", err, stderr.String())
	}
	return code, stdout.String()
}

// rawSyscallSource is a program without libc (so that nothing runs before
// main that a narrow filter would refuse) that makes the raw x86_64
// syscall of each argument with zero arguments and prints its raw result,
// -errno on failure, one line each.
const rawSyscallSource = `
static long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}

static long parse(const char *s)
{
	long v = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (*s++ - '0');
	return v;
}

static void put(long v)
{
	char buf[32];
	int i = 31, neg = v < 0;
	buf[i--] = '\n';
	if (neg)
		v = -v;
	do {
		buf[i--] = '0' + v % 10;
		v /= 10;
	} while (v);
	if (neg)
		buf[i--] = '-';
	sys3(1, 1, (long)(buf + i + 1), 31 - i);
}

void start(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	for (long i = 1; i < argc; i++)
		put(sys3(parse(argv[i]), 0, 0, 0));
	sys3(231, 0, 0, 0);
}

__asm__(".text\n.globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall start\n\thlt\n");
`

func buildRawSyscall(t *testing.T) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("the raw syscall program is x86_64 assembly; GOARCH is %s", runtime.GOARCH)
	}
	out := filepath.Join(t.TempDir(), "rawsyscall")
	cmd := exec.Command("gcc", "-static", "-nostdlib", "-O2", "-fno-stack-protector", "-x", "c", "-", "-o", out)
	cmd.Stdin = strings.NewReader(rawSyscallSource)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build raw syscall program: %v\n%s", err, b)
	}
	return out
}

// TestHelperEnosysStub runs processes under filters with and without
// runc's -ENOSYS stub and checks what each syscall number gets: ENOSYS
// above the largest number the profile names on the arch, the default
// action below it, as the container's init gets under runc (finding 6b).
func TestHelperEnosysStub(t *testing.T) {
	h := buildHelper(t, nil)
	prog := buildRawSyscall(t)
	const (
		getpid    = 39
		getppid   = 110 // named by no profile here: gets the default
		fanotify  = 301 // above exit_group (231), below fchmodat2 (452)
		fchmod2   = 452
		cachestat = 451
		shadow    = 453 // map_shadow_stack
		beyond    = 1000
		ePERM     = "-1"
		eNOSYS    = "-38"
	)
	// What every process needs: its execve (the filter is loaded before
	// it), write for the results and exit_group.
	base := []specs.LinuxSyscall{{Names: []string{"execve", "write", "exit_group", "getpid"}, Action: specs.ActAllow}}
	x86All := []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	eperm := uint(unix.EPERM)
	tests := []struct {
		name     string
		def      specs.LinuxSeccompAction
		arches   []specs.Arch
		extra    []specs.LinuxSyscall
		calls    []int
		want     []string // "+" is any non-negative result
		wantCode int
	}{
		{"errno default: ENOSYS above the largest name", specs.ActErrno, x86All, nil,
			[]int{getpid, getppid, fanotify, beyond}, []string{"+", ePERM, eNOSYS, eNOSYS}, 0},
		{"a name with the default action counts too", specs.ActErrno, x86All,
			[]specs.LinuxSyscall{{Names: []string{"fchmodat2"}, Action: specs.ActErrno, ErrnoRet: &eperm}},
			[]int{fanotify, cachestat, fchmod2, shadow, beyond}, []string{ePERM, ePERM, ePERM, eNOSYS, eNOSYS}, 0},
		{"kill default: ENOSYS above, killed below", specs.ActKillProcess, x86All, nil,
			[]int{beyond, getppid, getpid}, []string{eNOSYS}, 128 + int(unix.SIGSYS)},
		{"no arches listed: no stub (as runc)", specs.ActErrno, nil, nil,
			[]int{beyond}, []string{ePERM}, 0},
		{"only another arch listed: no stub for this one", specs.ActErrno, []specs.Arch{specs.ArchX86}, nil,
			[]int{beyond}, []string{ePERM}, 0},
		{"allow default: no stub, the kernel answers", specs.ActAllow, x86All,
			[]specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: &eperm}},
			[]int{getppid, getpid, beyond}, []string{ePERM, "+", eNOSYS}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := &specs.LinuxSeccomp{DefaultAction: tt.def, Architectures: tt.arches, Syscalls: append(base, tt.extra...)}
			proc := &specs.Process{Args: []string{prog}, NoNewPrivileges: true, Capabilities: &specs.LinuxCapabilities{}}
			for _, c := range tt.calls {
				proc.Args = append(proc.Args, strconv.Itoa(c))
			}
			req, err := encodeRequest(proc, sc, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			code, out := runHelper(t, h, os.Getpid(), req)
			got := strings.Fields(out)
			if code != tt.wantCode || len(got) != len(tt.want) {
				t.Fatalf("calls %v: exit %d, results %q; want exit %d, results %q", tt.calls, code, got, tt.wantCode, tt.want)
			}
			for i, w := range tt.want {
				if w == "+" && !strings.HasPrefix(got[i], "-") || got[i] == w {
					continue
				}
				t.Errorf("syscall %d: %s, want %s", tt.calls[i], got[i], w)
			}
		})
	}
}

// TestHelperCapsFailClosed: a request without capabilities gets none, not
// the helper's (root's) own (finding 6a).
func TestHelperCapsFailClosed(t *testing.T) {
	h := buildHelper(t, nil)
	req, err := encodeRequest(&specs.Process{Args: []string{"/bin/grep", "^Cap", "/proc/self/status"}}, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// encodeRequest always sends caps; take them out to see the helper's
	// own default.
	var stripped bytes.Buffer
	for _, r := range records(t, req) {
		if r[0] != "caps" {
			fmt.Fprintf(&stripped, "%s\x00%s\x00", r[0], r[1])
		}
	}
	code, out := runHelper(t, h, os.Getpid(), stripped.Bytes())
	if code != 0 {
		t.Fatalf("grep exited %d: %s", code, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, ":")
		if strings.Trim(strings.TrimSpace(v), "0") != "" {
			t.Errorf("%s is %s, want no capabilities", k, strings.TrimSpace(v))
		}
	}
}

// TestHelperJoinsTimeNamespace: a target in its own time namespace gets
// its exec'd process there (finding 6c).
func TestHelperJoinsTimeNamespace(t *testing.T) {
	h := buildHelper(t, nil)
	target := inTimeNamespace(t)
	ns, err := h.namespaceFlags(target)
	if err != nil {
		t.Fatal(err)
	}
	req, err := encodeRequest(&specs.Process{Args: []string{"/bin/readlink", "/proc/self/ns/time"}}, nil, ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, out := runHelper(t, h, target, req)
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/time", target))
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || strings.TrimSpace(out) != want {
		t.Errorf("exec'd process in time namespace %q (exit %d), want the target's %s", strings.TrimSpace(out), code, want)
	}
}

// TestHelperWarnsUnknownSyscalls: a name this libseccomp does not know is
// left out of the filter, as runc leaves it out, but crid logs it, once.
func TestHelperWarnsUnknownSyscalls(t *testing.T) {
	var logBuf bytes.Buffer
	h := buildHelper(t, slog.New(slog.NewTextHandler(&logBuf, nil)))
	sc := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"no_such_syscall_a", "getppid", "no_such_syscall_b"}, Action: specs.ActErrno},
	}}
	req, err := encodeRequest(&specs.Process{Args: []string{"/bin/true"}}, sc, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if code, out := runHelper(t, h, os.Getpid(), req); code != 0 {
			t.Fatalf("true exited %d: %s", code, out)
		}
	}
	log := logBuf.String()
	if strings.Count(log, "no_such_syscall_a no_such_syscall_b") != 1 || strings.Contains(log, "getppid") {
		t.Errorf("log %q: want the two unknown names in one warning, logged once", log)
	}
}

// TestHelperAppArmorFailsClosed: a process whose AppArmor profile cannot
// be entered (none is loaded under that name, or the kernel has no
// AppArmor, as on the development machine) is not started at all, and the
// error says why. That it enters a loaded one is TestAppArmor's (e2e, on
// the VM).
func TestHelperAppArmorFailsClosed(t *testing.T) {
	h := buildHelper(t, nil)
	marker := filepath.Join(t.TempDir(), "ran")
	req, err := encodeRequest(&specs.Process{
		Args: []string{"/bin/touch", marker}, ApparmorProfile: "crid-test-not-loaded-" + strconv.Itoa(os.Getpid()),
	}, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	pidf := os.NewFile(uintptr(fd), "pidfd")
	defer pidf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := h.run(ctx, pidf, req, IO{}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "apparmor") {
		t.Errorf("exec with a profile that cannot be entered: code %d, error %v; want an apparmor error", code, err)
	}
	if _, serr := os.Stat(marker); serr == nil {
		t.Errorf("the process ran although its AppArmor profile was not entered")
	}
	t.Logf("error: %v", err)
}
