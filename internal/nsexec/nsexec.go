// Package nsexec runs a process inside a running container with crid's own
// helper, crid-nsexec (cmd/crid-nsexec), instead of the OCI runtime's exec
// command. `runc exec` takes 60-70 ms on a small node, nearly all of it
// runc starting twice and re-reading its state; the helper joins the
// container in about a millisecond. Exec probes run every few seconds in
// every pod, so that is the cost that matters.
//
// The helper does exactly what runc exec does for a runc container: join
// the init process's cgroups and namespaces, then set rlimits, umask, cwd,
// seccomp, capabilities, user, no_new_privs, the AppArmor profile to exec
// into, in runc's order, and exec.
// Supported says which process specs it covers; the others (a terminal,
// SELinux labels, seccomp notification, Intel RDT) still go through the
// runtime. An AppArmor profile is entered as runc enters it.
//
// The helper binary is copied once into a memfd and always executed from
// there, so a container process can never reach the host's binary through
// /proc/PID/exe. The helper is not dumpable until its execve, so the
// container cannot open that either; in case it could, the memfd is mode
// 0511 and sealed against writes and against changes of its exec bits
// (F_SEAL_EXEC, Linux 6.3), and crid checks its mode before every exec.
package nsexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crid-dev/crid/internal/cgroups"
	"github.com/crid-dev/crid/internal/runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// BinaryName is the helper's file name, installed next to crid.
const BinaryName = "crid-nsexec"

// helperMode is the memfd's mode: executable, readable by its owner only,
// writable by no one (the seals refuse writes anyway).
const helperMode = 0o511

// Helper runs processes in containers through the sealed helper binary.
type Helper struct {
	exe *os.File
	// uid and gid own the memfd; with helperMode, what check expects.
	uid, gid uint32
	// own are crid's namespaces (device and inode per namespaceKinds,
	// zero for a kind this kernel lacks), read once at Load: they do not
	// change under a running crid.
	own [][2]uint64
	log *slog.Logger

	mu     sync.Mutex
	warned map[string]bool // helper warnings already logged
}

// Load copies the helper at path into a sealed memfd. log receives the
// helper's warnings (once each) and any tampering found on the memfd.
func Load(path string, log *slog.Logger) (*Helper, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load exec helper: %w", err)
	}
	f, err := sealedCopy(src)
	if err != nil {
		return nil, fmt.Errorf("load exec helper: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("load exec helper: %w", err)
	}
	// The child maps its extra files onto fds 3-5 before it execs
	// /proc/self/fd/N: N must not be one of them.
	high, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 100)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("load exec helper: %w", err)
	}
	own, err := ownNamespaces()
	if err != nil {
		unix.Close(high)
		return nil, fmt.Errorf("load exec helper: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Helper{exe: os.NewFile(uintptr(high), BinaryName), uid: st.Uid, gid: st.Gid, own: own, log: log,
		warned: map[string]bool{}}, nil
}

// sealedCopy returns a memfd holding src, mode helperMode, sealed against
// any change of its contents and, where the kernel has F_SEAL_EXEC, of its
// exec bits: a chmod that takes them away would fail every later exec.
func sealedCopy(src []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(BinaryName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		// Before Linux 6.3 memfds are executable without asking.
		fd, err = unix.MemfdCreate(BinaryName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), BinaryName)
	if _, err := f.Write(src); err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Fchmod(fd, helperMode); err != nil {
		f.Close()
		return nil, fmt.Errorf("chmod memfd: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	_, err = unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals|unix.F_SEAL_EXEC)
	if errors.Is(err, unix.EINVAL) {
		// A kernel before 6.3: no exec seal; check repairs the mode.
		_, err = unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return f, nil
}

// check makes sure the memfd is still as Load left it: mode helperMode,
// owned by crid. Its contents cannot change (sealed), nor, on Linux 6.3+,
// its exec bits, but its owner can change the rest, and a memfd that lost
// them would fail every exec until crid restarts. Anything found changed
// is logged as the tampering it is and put back. One fstat per exec.
func (h *Helper) check() error {
	fd := int(h.exe.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s memfd: %w", BinaryName, err)
	}
	if st.Mode&0o7777 == helperMode && st.Uid == h.uid && st.Gid == h.gid {
		return nil
	}
	h.log.Error("exec helper memfd was tampered with; repairing it",
		"mode", fmt.Sprintf("%#o", st.Mode&0o7777), "uid", st.Uid, "gid", st.Gid)
	if st.Uid != h.uid || st.Gid != h.gid {
		if err := unix.Fchown(fd, int(h.uid), int(h.gid)); err != nil {
			return fmt.Errorf("repair %s memfd owner: %w", BinaryName, err)
		}
	}
	// After the chown: it clears set-id bits.
	if err := unix.Fchmod(fd, helperMode); err != nil {
		return fmt.Errorf("repair %s memfd mode: %w", BinaryName, err)
	}
	return nil
}

// logWarnings logs the helper's "warning: " lines, each once per crid: the
// same container's profile would repeat them on every exec probe.
func (h *Helper) logWarnings(lines []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range lines {
		if h.warned[l] {
			continue
		}
		h.warned[l] = true
		h.log.Warn(BinaryName + ": " + l)
	}
}

// Close releases the memfd.
func (h *Helper) Close() error { return h.exe.Close() }

// Target is the running container a process joins.
type Target struct {
	Pid  int // the container's init
	Spec *specs.Spec
}

// IO is the process's stdio; a nil Stdin reads /dev/null.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// ErrUnsupported is Exec's error for a process the helper does not cover;
// nothing was started, and the runtime's own exec should run it.
var ErrUnsupported = errors.New("not supported by " + BinaryName)

// Supported returns nil if the helper can run proc in a container with
// spec, or the reason it cannot.
func Supported(spec *specs.Spec, proc *specs.Process) error {
	switch {
	case proc.Terminal:
		return errors.New("terminal")
	case proc.SelinuxLabel != "":
		return errors.New("selinux label")
	case proc.Scheduler != nil || proc.IOPriority != nil || proc.ExecCPUAffinity != nil:
		return errors.New("scheduler, I/O priority or CPU affinity")
	case proc.Capabilities == nil:
		// The helper drops every capability when it is sent none; runc
		// leaves a process without a capabilities section all of root's.
		return errors.New("no capabilities in the process spec")
	}
	if spec == nil || spec.Linux == nil {
		return errors.New("no linux section in spec")
	}
	if spec.Linux.Personality != nil {
		return errors.New("personality")
	}
	if spec.Linux.IntelRdt != nil {
		// runc exec moves the process into the container's resctrl group.
		return errors.New("intel RDT")
	}
	if sc := spec.Linux.Seccomp; sc != nil {
		if sc.ListenerPath != "" || len(sc.Flags) > 0 {
			return errors.New("seccomp listener or flags")
		}
		for _, s := range sc.Syscalls {
			if s.Action == specs.ActNotify {
				return errors.New("seccomp notify action")
			}
		}
	}
	return nil
}

// Exec runs proc in the container t and waits for it, returning its exit
// code (128+signal if it was killed). ErrUnsupported (see Supported)
// means nothing was started. Output still held open by a
// background child after the process exits is drained for at most drain.
// Cancelling ctx kills the process.
func (h *Helper) Exec(ctx context.Context, t Target, proc *specs.Process, eio IO, drain time.Duration) (int, error) {
	if err := Supported(t.Spec, proc); err != nil {
		return -1, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if err := h.check(); err != nil {
		return -1, err
	}
	pidfd, err := unix.PidfdOpen(t.Pid, 0)
	if err != nil {
		return -1, fmt.Errorf("open init process %d: %w", t.Pid, err)
	}
	pidf := os.NewFile(uintptr(pidfd), "pidfd")
	defer pidf.Close()
	// Read after the pidfd is open: should the pid have been reused, the
	// cgroup check fails and the pidfd names the wrong process anyway.
	// Either driver's path: the systemd driver's slice:prefix:name is
	// the scope systemd made for the container.
	dirs, err := cgroups.ProcessDirs(t.Pid, t.Spec.Linux.CgroupsPath)
	if err != nil {
		return -1, fmt.Errorf("init process %d: %w", t.Pid, err)
	}
	ns, err := h.namespaceFlags(t.Pid)
	if err != nil {
		return -1, err
	}
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return -1, fmt.Errorf("init process %d: %w", t.Pid, err)
	}
	req, err := encodeRequest(proc, t.Spec.Linux.Seccomp, ns, dirs)
	if err != nil {
		return -1, err
	}
	return h.run(ctx, pidf, req, eio, drain)
}

// run starts the helper with request req and the target's pidfd, and
// waits for it: Exec's second half, once the target is checked.
func (h *Helper) run(ctx context.Context, pidf *os.File, req []byte, eio IO, drain time.Duration) (int, error) {
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	defer reqR.Close()
	defer reqW.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	defer stR.Close()
	defer stW.Close()

	cmd := exec.CommandContext(ctx, "/proc/self/fd/"+strconv.Itoa(int(h.exe.Fd())))
	cmd.Args[0] = BinaryName
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{reqR, pidf, stW}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = eio.Stdin, eio.Stdout, eio.Stderr
	// SIGTERM makes the helper kill the process and reap it before it
	// exits; should the helper itself be SIGKILLed, the process dies too
	// (parent-death signal), but would be left to crid to reap.
	// WaitDelay bounds the output drain and the wait for the helper.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = drain
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = time.Millisecond
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start %s: %w", BinaryName, err)
	}
	reqR.Close()
	stW.Close()
	// The request fits in the pipe for ordinary specs, but not always (a
	// long env): write it alongside the helper reading it.
	werr := make(chan error, 1)
	go func() {
		_, err := reqW.Write(req)
		reqW.Close()
		werr <- err
	}()
	waitErr := cmd.Wait()
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		waitErr = nil // a background child kept the output open; not a failure
	}
	status, _ := io.ReadAll(io.LimitReader(stR, 8192))
	warnings, failure := splitStatus(status)
	h.logWarnings(warnings)
	if err := <-werr; err != nil && failure == "" && ctx.Err() == nil {
		return -1, fmt.Errorf("send request: %w", err)
	}
	if cmd.ProcessState == nil {
		return -1, waitErr
	}
	code := runc.ExitCode(cmd.ProcessState)
	if ctx.Err() != nil {
		return code, ctx.Err()
	}
	if failure != "" {
		return -1, errors.New(failure)
	}
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return -1, waitErr
	}
	return code, nil
}

// splitStatus parses the helper's status pipe: its "warning: " lines, and
// the error that stopped it, "" if none.
func splitStatus(status []byte) (warnings []string, failure string) {
	var fails []string
	for _, l := range strings.Split(string(status), "\n") {
		l = strings.TrimSpace(l)
		if w, ok := strings.CutPrefix(l, "warning: "); ok {
			warnings = append(warnings, w)
		} else if l != "" {
			fails = append(fails, l)
		}
	}
	return warnings, strings.Join(fails, "; ")
}

// namespaceKinds are the namespaces a process can share with a container,
// with their setns flags. CRI containers do not ask for a time namespace,
// but one the spec gives the container (runc joins or creates it) is
// joined like the others.
var namespaceKinds = []struct {
	name string
	flag int
}{
	{"user", unix.CLONE_NEWUSER},
	{"mnt", unix.CLONE_NEWNS},
	{"pid", unix.CLONE_NEWPID},
	{"ipc", unix.CLONE_NEWIPC},
	{"uts", unix.CLONE_NEWUTS},
	{"net", unix.CLONE_NEWNET},
	{"cgroup", unix.CLONE_NEWCGROUP},
	{"time", unix.CLONE_NEWTIME},
}

// ownNamespaces identifies crid's namespaces (/proc/self: the process's,
// not a thread's that may be visiting a pod's). A kind the kernel does not
// have (time namespaces before Linux 5.6) is left zero.
func ownNamespaces() ([][2]uint64, error) {
	own := make([][2]uint64, len(namespaceKinds))
	for i, k := range namespaceKinds {
		var st unix.Stat_t
		err := unix.Stat("/proc/self/ns/"+k.name, &st)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("own namespace %s: %w", k.name, err)
		}
		own[i] = [2]uint64{st.Dev, st.Ino}
	}
	return own, nil
}

// namespaceFlags are the namespaces of pid that are not crid's own: joining
// one's own user namespace is an error, and the others need no joining.
func (h *Helper) namespaceFlags(pid int) (int, error) {
	flags := 0
	for i, k := range namespaceKinds {
		if h.own[i] == [2]uint64{} {
			continue // the kernel has no such namespace
		}
		var theirs unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, k.name), &theirs); err != nil {
			return 0, fmt.Errorf("namespace %s of process %d: %w", k.name, pid, err)
		}
		if [2]uint64{theirs.Dev, theirs.Ino} != h.own[i] {
			flags |= k.flag
		}
	}
	return flags, nil
}

// encodeRequest writes the helper's request (see cmd/crid-nsexec).
func encodeRequest(proc *specs.Process, sc *specs.LinuxSeccomp, ns int, cgroupDirs []string) ([]byte, error) {
	if len(proc.Args) == 0 {
		return nil, errors.New("process has no args")
	}
	var b bytes.Buffer
	put := func(k, v string) error {
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%s contains a NUL byte", k)
		}
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(v)
		b.WriteByte(0)
		return nil
	}
	put("ns", strconv.FormatInt(int64(ns), 16))
	for _, d := range cgroupDirs {
		if err := put("cgroup", d); err != nil {
			return nil, err
		}
	}
	if proc.OOMScoreAdj != nil {
		put("oom", strconv.Itoa(*proc.OOMScoreAdj))
	}
	for _, r := range proc.Rlimits {
		res, ok := rlimits[r.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q", r.Type)
		}
		put("rlimit", fmt.Sprintf("%d %d %d", res, r.Soft, r.Hard))
	}
	put("uid", strconv.FormatUint(uint64(proc.User.UID), 10))
	put("gid", strconv.FormatUint(uint64(proc.User.GID), 10))
	if len(proc.User.AdditionalGids) > 0 {
		gs := make([]string, len(proc.User.AdditionalGids))
		for i, g := range proc.User.AdditionalGids {
			gs[i] = strconv.FormatUint(uint64(g), 10)
		}
		put("groups", strings.Join(gs, " "))
	}
	if proc.User.Umask != nil {
		put("umask", strconv.FormatUint(uint64(*proc.User.Umask), 8))
	}
	if proc.Cwd != "" {
		if err := put("cwd", proc.Cwd); err != nil {
			return nil, err
		}
	}
	// Always sent: the helper drops what it is not told to keep.
	var masks [5]uint64
	if c := proc.Capabilities; c != nil {
		for i, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
			m, err := capMask(set)
			if err != nil {
				return nil, err
			}
			masks[i] = m
		}
	}
	put("caps", fmt.Sprintf("%x %x %x %x %x", masks[0], masks[1], masks[2], masks[3], masks[4]))
	if proc.NoNewPrivileges {
		put("nnp", "1")
	}
	if p := proc.ApparmorProfile; p != "" {
		if strings.ContainsAny(p, " \t\n\x00") {
			return nil, fmt.Errorf("bad AppArmor profile name %q", p)
		}
		put("apparmor", p)
	}
	if sc != nil {
		put("seccomp-default", fmt.Sprintf("%s %d", sc.DefaultAction, errnoOr(sc.DefaultErrnoRet)))
		for _, a := range sc.Architectures {
			put("seccomp-arch", strings.ToLower(strings.TrimPrefix(string(a), "SCMP_ARCH_")))
		}
		if enosysStub(sc.DefaultAction) {
			put("seccomp-enosys", "1")
		}
		for _, s := range sc.Syscalls {
			var conds strings.Builder
			for _, a := range s.Args {
				fmt.Fprintf(&conds, " %d %s %d %d", a.Index, a.Op, a.Value, a.ValueTwo)
			}
			for _, name := range s.Names {
				if name == "" || strings.ContainsAny(name, " \x00") {
					return nil, fmt.Errorf("bad syscall name %q", name)
				}
				put("seccomp-rule", fmt.Sprintf("%s %d %s %d%s", s.Action, errnoOr(s.ErrnoRet), name, len(s.Args), conds.String()))
			}
		}
	}
	for _, e := range proc.Env {
		if err := put("env", e); err != nil {
			return nil, err
		}
	}
	for _, a := range proc.Args {
		if err := put("arg", a); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// enosysStub says whether the filter gets runc's -ENOSYS stub (see
// cmd/crid-nsexec): runc's init adds it to the container's own filter
// unless the default action lets unknown syscalls through anyway. Trace
// counts as letting through: a tracer should handle new syscalls itself.
func enosysStub(def specs.LinuxSeccompAction) bool {
	switch def {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
		return false
	}
	return true
}

// errnoOr is the errno of an SCMP_ACT_ERRNO/TRACE action: EPERM unless set.
func errnoOr(p *uint) uint {
	if p != nil {
		return *p
	}
	return uint(unix.EPERM)
}

func capMask(names []string) (uint64, error) {
	var m uint64
	for _, n := range names {
		c, ok := capabilities[strings.ToUpper(n)]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		m |= 1 << c
	}
	return m, nil
}

var rlimits = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

var capabilities = map[string]uint{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH,
	"CAP_FOWNER": unix.CAP_FOWNER, "CAP_FSETID": unix.CAP_FSETID, "CAP_KILL": unix.CAP_KILL, "CAP_SETGID": unix.CAP_SETGID,
	"CAP_SETUID": unix.CAP_SETUID, "CAP_SETPCAP": unix.CAP_SETPCAP, "CAP_LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE,
	"CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE, "CAP_NET_BROADCAST": unix.CAP_NET_BROADCAST,
	"CAP_NET_ADMIN": unix.CAP_NET_ADMIN, "CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK,
	"CAP_IPC_OWNER": unix.CAP_IPC_OWNER, "CAP_SYS_MODULE": unix.CAP_SYS_MODULE, "CAP_SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE, "CAP_SYS_PACCT": unix.CAP_SYS_PACCT,
	"CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN, "CAP_SYS_BOOT": unix.CAP_SYS_BOOT, "CAP_SYS_NICE": unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_SYS_TIME": unix.CAP_SYS_TIME, "CAP_SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG,
	"CAP_MKNOD": unix.CAP_MKNOD, "CAP_LEASE": unix.CAP_LEASE, "CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"CAP_AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL, "CAP_SETFCAP": unix.CAP_SETFCAP, "CAP_MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN": unix.CAP_MAC_ADMIN, "CAP_SYSLOG": unix.CAP_SYSLOG, "CAP_WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "CAP_AUDIT_READ": unix.CAP_AUDIT_READ, "CAP_PERFMON": unix.CAP_PERFMON,
	"CAP_BPF": unix.CAP_BPF, "CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}
