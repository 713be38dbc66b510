package monitor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/internal/runc"
)

// Integration tests: root, the real runc, a busybox bundle.

const (
	cgroupParent = "crid-monitor-test"
	helperEnv    = "CRID_MONITOR_TEST_HELPER"
	runcPath     = "/usr/sbin/runc"
)

var (
	testDir     string // everything the tests create lives here
	monitorBin  string
	runtimeRoot string
	rootfs      string
	baseSpec    []byte
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "monitor tests run real containers and need root")
		os.Exit(1)
	}
	var code int
	_, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		code = 1
	} else {
		code = m.Run()
	}
	if err := teardown(); err != nil {
		fmt.Fprintln(os.Stderr, "teardown:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func setup() (int, error) {
	var err error
	testDir, err = os.MkdirTemp("", "crid-monitor-test-")
	if err != nil {
		return 1, err
	}
	monitorBin = filepath.Join(testDir, "crid-monitor")
	buildArgs := []string{"build", "-o", monitorBin}
	if os.Getenv("CRID_MONITOR_RACE") != "" {
		// Race-check the monitor process itself as well.
		buildArgs = append(buildArgs, "-race")
	}
	build := exec.Command("go", append(buildArgs, "github.com/crid-dev/crid/cmd/crid-monitor")...)
	if bin := os.Getenv("CRID_MONITOR_TEST_BIN"); bin != "" {
		// Compare another build (e.g. an older one's footprint).
		build = exec.Command("cp", bin, monitorBin)
	}
	if out, err := build.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("build crid-monitor: %v\n%s", err, out)
	}
	runtimeRoot = filepath.Join(testDir, "runc")
	rootfs = filepath.Join(testDir, "rootfs")
	if err := buildRootfs(rootfs); err != nil {
		return 1, err
	}
	specDir := filepath.Join(testDir, "spec")
	os.Mkdir(specDir, 0o755)
	cmd := exec.Command(runcPath, "spec")
	cmd.Dir = specDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("runc spec: %v: %s", err, out)
	}
	baseSpec, err = os.ReadFile(filepath.Join(specDir, "config.json"))
	return 0, err
}

// buildRootfs makes a busybox tree: Debian's dynamic busybox, its
// libraries per ldd, and applet links.
func buildRootfs(dir string) error {
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile("/bin/busybox", filepath.Join(dir, "bin/busybox")); err != nil {
		return err
	}
	out, err := exec.Command("ldd", "/bin/busybox").Output()
	if err != nil {
		return fmt.Errorf("ldd busybox: %w", err)
	}
	for _, f := range regexp.MustCompile(`(/\S+)`).FindAllString(string(out), -1) {
		if strings.HasPrefix(f, "/") && !strings.Contains(f, "(") {
			dst := filepath.Join(dir, f)
			os.MkdirAll(filepath.Dir(dst), 0o755)
			if err := copyFile(f, dst); err != nil {
				return err
			}
		}
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return err
	}
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			os.Symlink("busybox", filepath.Join(dir, "bin", a))
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, st.Mode().Perm())
}

func teardown() error {
	var errs []error
	rt := &runc.Runtime{Path: runcPath, Root: runtimeRoot}
	if ents, err := os.ReadDir(runtimeRoot); err == nil {
		for _, e := range ents {
			errs = append(errs, fmt.Errorf("container %s left behind", e.Name()))
			rt.Delete(context.Background(), e.Name(), true)
		}
	}
	for _, p := range cgroupDirs() {
		subs, _ := os.ReadDir(p)
		for _, s := range subs {
			if s.IsDir() {
				os.Remove(filepath.Join(p, s.Name()))
			}
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	if testDir != "" {
		// Monitors log to their state dir; a race-built one reports there.
		filepath.WalkDir(filepath.Join(testDir, "state"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == logName {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("DATA RACE")) || bytes.Contains(b, []byte("panic:")) {
					errs = append(errs, fmt.Errorf("%s:\n%s", p, b))
				}
			}
			return nil
		})
		errs = append(errs, os.RemoveAll(testDir))
	}
	return errors.Join(errs...)
}

func cgroupDirs() []string {
	m, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupParent)
	if _, err := os.Stat("/sys/fs/cgroup/" + cgroupParent); err == nil {
		m = append(m, "/sys/fs/cgroup/"+cgroupParent)
	}
	return m
}

type testCtr struct {
	t        *testing.T
	id       string
	o        Options
	proc     *Process
	rt       *runc.Runtime
	logPath  string
	stateDir string
}

var idSeq struct {
	sync.Mutex
	n int
}

func newID(t *testing.T) string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.n++
	return fmt.Sprintf("cmt-%d-%d", os.Getpid(), idSeq.n)
}

// prepare writes a bundle and returns Options for it; the caller may
// change them before spawning.
func prepare(t *testing.T, args []string, tweak func(*specs.Spec)) Options {
	t.Helper()
	id := newID(t)
	var spec specs.Spec
	if err := json.Unmarshal(baseSpec, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Root.Path = rootfs
	spec.Process.Args = args
	spec.Process.Terminal = false
	spec.Process.Env = append(spec.Process.Env, "PATH=/bin")
	spec.Linux.CgroupsPath = "/" + cgroupParent + "/" + id
	var ns []specs.LinuxNamespace
	for _, n := range spec.Linux.Namespaces {
		if n.Type != specs.NetworkNamespace {
			ns = append(ns, n)
		}
	}
	spec.Linux.Namespaces = ns
	if tweak != nil {
		tweak(&spec)
	}
	bundle := filepath.Join(testDir, "bundles", id)
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(&spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return Options{
		ID:          id,
		Bundle:      bundle,
		StateDir:    filepath.Join(testDir, "state", id),
		RuntimePath: runcPath,
		RuntimeRoot: runtimeRoot,
		LogPath:     filepath.Join(testDir, "logs", id+".log"),
	}
}

func runtimeFor() *runc.Runtime {
	return &runc.Runtime{Name: "runc", Path: runcPath, Root: runtimeRoot, ExecHelper: monitorBin}
}

// spawn creates (and with start, starts) the container, arranging cleanup.
func spawn(t *testing.T, o Options, start bool) *testCtr {
	t.Helper()
	os.MkdirAll(filepath.Dir(o.LogPath), 0o755)
	c := &testCtr{t: t, id: o.ID, o: o, rt: runtimeFor(), logPath: o.LogPath, stateDir: o.StateDir}
	t.Cleanup(c.cleanup)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Spawn(ctx, monitorBin, o)
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	c.proc = p
	if start {
		if err := c.rt.Start(ctx, o.ID); err != nil {
			t.Fatalf("Start: %v", err)
		}
	}
	return c
}

// cleanup is what crid does when removing a container: delete the runtime
// container; the monitor exits by itself once the container is gone.
func (c *testCtr) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.rt.Delete(ctx, c.id, true); err != nil {
		c.t.Errorf("delete %s: %v", c.id, err)
	}
	if _, err := Wait(ctx, c.stateDir); err != nil {
		c.t.Errorf("monitor of %s after delete: %v", c.id, err)
	}
	waitFor(c.t, "monitor to exit", 5*time.Second, func() bool { return !Alive(c.stateDir) })
}

func (c *testCtr) wait(timeout time.Duration) *Exit {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	e, err := Wait(ctx, c.stateDir)
	if err != nil {
		c.t.Fatalf("Wait: %v", err)
	}
	return e
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type logLine struct {
	ts            time.Time
	stream, tag   string
	content, text string
}

var logRe = regexp.MustCompile(`^(\S+) (stdout|stderr) (P|F) (.*)$`)

// readLog parses a CRI log strictly: every line must match the format.
func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	var out []logLine
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("log %s does not end with a newline: %q", path, b)
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		m := logRe.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("bad CRI log line %q", l)
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("bad timestamp in %q: %v", l, err)
		}
		out = append(out, logLine{ts: ts, stream: m[2], tag: m[3], content: m[4], text: l})
	}
	return out
}

func hasLine(lines []logLine, stream, tag, content string) bool {
	for _, l := range lines {
		if l.stream == stream && l.tag == tag && l.content == content {
			return true
		}
	}
	return false
}

// A state dir longer than sun_path allows exercises the socket path trick.
func longStateDir(id string) string {
	return filepath.Join(testDir, "state", strings.Repeat("d", 60), strings.Repeat("e", 60), id)
}

func TestRunLogsAndExit(t *testing.T) {
	o := prepare(t, []string{"sh", "-c", "echo hello; echo oops >&2; echo; printf partial; exit 3"}, nil)
	o.StateDir = longStateDir(o.ID)
	if len(filepath.Join(o.StateDir, socketName)) <= sunPathMax {
		t.Fatal("state dir not long enough for this test")
	}
	c := spawn(t, o, false)
	if c.proc.MonitorPID <= 0 || c.proc.ContainerPID <= 0 {
		t.Fatalf("Spawn returned %+v", c.proc)
	}
	if !Alive(c.stateDir) {
		t.Fatal("monitor not alive after Spawn")
	}
	if sid, _ := unix.Getsid(c.proc.MonitorPID); sid != c.proc.MonitorPID {
		t.Errorf("monitor session %d, want its own (%d)", sid, c.proc.MonitorPID)
	}
	st, err := c.rt.State(context.Background(), c.id)
	if err != nil || st.Status != "created" || st.Pid != c.proc.ContainerPID {
		t.Fatalf("state after create = %+v, %v; want created, pid %d", st, err, c.proc.ContainerPID)
	}
	if _, err := ReadExit(c.stateDir); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("ReadExit before exit: %v, want ErrNotFound", err)
	}
	before := time.Now()
	if err := c.rt.Start(context.Background(), c.id); err != nil {
		t.Fatal(err)
	}
	e := c.wait(20 * time.Second)
	if e.Code != 3 || e.Signal != 0 || e.OOMKilled {
		t.Errorf("exit = %+v, want code 3", e)
	}
	if e.ExitedAt.Before(before) || e.ExitedAt.After(time.Now()) {
		t.Errorf("exitedAt %v not within the run", e.ExitedAt)
	}
	re, err := ReadExit(c.stateDir)
	if err != nil || re.Code != 3 || !re.ExitedAt.Equal(e.ExitedAt) {
		t.Errorf("ReadExit = %+v, %v; want %+v", re, err, e)
	}
	lines := readLog(t, c.logPath)
	for _, want := range []struct{ stream, tag, content string }{
		{"stdout", "F", "hello"}, {"stderr", "F", "oops"}, {"stdout", "F", ""}, {"stdout", "P", "partial"},
	} {
		if !hasLine(lines, want.stream, want.tag, want.content) {
			t.Errorf("log lacks %v; have:\n%s", want, logText(lines))
		}
	}
	if len(lines) != 4 {
		t.Errorf("log has %d lines, want 4:\n%s", len(lines), logText(lines))
	}
	for _, l := range lines {
		if l.ts.Before(before.Add(-time.Second)) || l.ts.After(e.ExitedAt.Add(time.Second)) {
			t.Errorf("timestamp of %q outside the run", l.text)
		}
	}
	waitFor(t, "monitor to exit", 5*time.Second, func() bool { return !Alive(c.stateDir) })
	// Wait from scratch after the monitor is gone reads the exit file.
	if e2 := c.wait(5 * time.Second); e2.Code != 3 {
		t.Errorf("Wait after monitor exit = %+v", e2)
	}
}

func logText(lines []logLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

func TestSignalExitAndLongLine(t *testing.T) {
	// 20000 bytes on one line: split into a 16 KiB P record and an F.
	o := prepare(t, []string{"sh", "-c", "head -c 20000 /dev/zero | tr '\\0' x; echo; echo done; sleep 100"}, nil)
	c := spawn(t, o, true)
	waitFor(t, "output", 10*time.Second, func() bool { return hasLine(readLog(t, c.logPath), "stdout", "F", "done") })
	if err := c.rt.Kill(context.Background(), c.id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	e := c.wait(10 * time.Second)
	if e.Code != 137 || e.Signal != 9 {
		t.Errorf("exit = %+v, want code 137 signal 9", e)
	}
	lines := readLog(t, c.logPath)
	if len(lines) != 3 || lines[0].tag != "P" || len(lines[0].content) != 16384 ||
		lines[1].tag != "F" || len(lines[1].content) != 20000-16384 {
		t.Errorf("long line not split as 16384 P + F:\n%.300s", logText(lines))
	}
}

// A "crid" that spawns a monitor and goes away: the helper process runs
// Spawn and Start, prints the Process and exits.
func helperMain() int {
	var o Options
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	p, err := Spawn(ctx, os.Getenv("CRID_MONITOR_BIN"), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := (&runc.Runtime{Path: o.RuntimePath, Root: o.RuntimeRoot}).Start(ctx, o.ID); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(p)
	return 0
}

func TestMonitorOutlivesCrid(t *testing.T) {
	o := prepare(t, []string{"sh", "-c", "read x; for i in 1 2 3; do echo tick $i; sleep 0.2; done; exit 4"}, nil)
	o.Stdin = true
	os.MkdirAll(filepath.Dir(o.LogPath), 0o755)
	c := &testCtr{t: t, id: o.ID, o: o, rt: runtimeFor(), logPath: o.LogPath, stateDir: o.StateDir}
	t.Cleanup(c.cleanup)
	optJSON, _ := json.Marshal(o)
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+string(optJSON), "CRID_MONITOR_BIN="+monitorBin)
	var stderr bytes.Buffer
	helper.Stderr = &stderr
	out, err := helper.Output()
	if err != nil {
		t.Fatalf("helper crid: %v: %s", err, stderr.String())
	}
	var p Process
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	// The spawning process is gone; the monitor is not.
	if !Alive(o.StateDir) {
		t.Fatal("monitor died with the process that spawned it")
	}
	if MonitorPID(o.StateDir) != p.MonitorPID || ContainerPID(o.StateDir) != p.ContainerPID {
		t.Errorf("pid files %d/%d, Spawn said %+v", MonitorPID(o.StateDir), ContainerPID(o.StateDir), p)
	}
	// A new "crid" talks to it from scratch: send the line the container
	// waits for, then wait for the exit.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	pr, pw := io.Pipe()
	go func() { errc <- Attach(ctx, o.StateDir, AttachOptions{Stdin: pr}) }()
	pw.Write([]byte("go\n"))
	e, err := Wait(ctx, o.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if e.Code != 4 {
		t.Errorf("exit = %+v, want 4", e)
	}
	if err := <-errc; err != nil {
		t.Errorf("Attach: %v", err)
	}
	pw.Close()
	lines := readLog(t, o.LogPath)
	for i := 1; i <= 3; i++ {
		if !hasLine(lines, "stdout", "F", fmt.Sprintf("tick %d", i)) {
			t.Errorf("log lacks tick %d:\n%s", i, logText(lines))
		}
	}
}

// lockedBuffer collects attach output from the client's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestAttach(t *testing.T) {
	script := `while read l; do echo "got:$l"; echo "err:$l" >&2; done; echo bye; exit 7`
	o := prepare(t, []string{"sh", "-c", script}, nil)
	o.Stdin, o.StdinOnce = true, true
	c := spawn(t, o, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A watcher without stdin that leaves early: no effect on the container.
	wctx, wcancel := context.WithCancel(ctx)
	var early lockedBuffer
	earlyDone := make(chan error, 1)
	go func() { earlyDone <- Attach(wctx, c.stateDir, AttachOptions{Stdout: &early}) }()

	// A second watcher that stays to the end.
	var watchOut, watchErr lockedBuffer
	watchDone := make(chan error, 1)
	go func() { watchDone <- Attach(ctx, c.stateDir, AttachOptions{Stdout: &watchOut, Stderr: &watchErr}) }()

	// The interactive attacher.
	pr, pw := io.Pipe()
	var out, errOut lockedBuffer
	mainDone := make(chan error, 1)
	go func() { mainDone <- Attach(ctx, c.stateDir, AttachOptions{Stdin: pr, Stdout: &out, Stderr: &errOut}) }()

	// Attachers only see output produced after they joined: retry until
	// every one has seen a line.
	for i := 0; ; i++ {
		fmt.Fprintf(pw, "a%d\n", i)
		time.Sleep(50 * time.Millisecond)
		if strings.Contains(out.String(), "got:a") && strings.Contains(early.String(), "got:a") &&
			strings.Contains(watchOut.String(), "got:a") {
			break
		}
		if i > 100 {
			t.Fatalf("attach output missing: main %q early %q watch %q", out.String(), early.String(), watchOut.String())
		}
	}
	wcancel()
	if err := <-earlyDone; !errors.Is(err, context.Canceled) {
		t.Errorf("detached attach returned %v, want context.Canceled", err)
	}
	fmt.Fprintf(pw, "after-detach\n")
	waitFor(t, "output after a detach", 5*time.Second, func() bool {
		return strings.Contains(out.String(), "got:after-detach") && strings.Contains(errOut.String(), "err:after-detach")
	})
	// Stdin EOF with StdinOnce closes the container's stdin: the loop ends.
	pw.Close()
	e := c.wait(10 * time.Second)
	if e.Code != 7 {
		t.Errorf("exit = %+v, want 7", e)
	}
	for name, ch := range map[string]chan error{"main": mainDone, "watch": watchDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("%s attach: %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s attach did not end with the container", name)
		}
	}
	if !strings.Contains(out.String(), "bye") || !strings.Contains(watchOut.String(), "bye") {
		t.Errorf("final output missing: main %q watch %q", out.String(), watchOut.String())
	}
	if strings.Contains(watchOut.String(), "err:") || !strings.Contains(watchErr.String(), "err:after-detach") {
		t.Errorf("streams mixed up: stdout %q stderr %q", watchOut.String(), watchErr.String())
	}
	lines := readLog(t, c.logPath)
	if !hasLine(lines, "stdout", "F", "got:after-detach") || !hasLine(lines, "stderr", "F", "err:after-detach") {
		t.Errorf("log lacks attach input echo:\n%s", logText(lines))
	}
	// Attaching to an exited container ends at once.
	waitFor(t, "monitor exit", 5*time.Second, func() bool { return !Alive(c.stateDir) })
	if err := Attach(ctx, c.stateDir, AttachOptions{Stdout: io.Discard}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("attach after exit: %v, want ErrFailedPrecondition", err)
	}
}

func TestStdinWithoutStdinOnce(t *testing.T) {
	o := prepare(t, []string{"sh", "-c", `while read l; do echo "got:$l"; done; echo eof`}, nil)
	o.Stdin = true
	c := spawn(t, o, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Each session's stdin ends at once; without StdinOnce that must not
	// close the container's stdin, so the second line still gets through.
	for _, word := range []string{"one", "two"} {
		var out lockedBuffer
		actx, acancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- Attach(actx, c.stateDir, AttachOptions{Stdin: strings.NewReader(word + "\n"), Stdout: &out})
		}()
		waitFor(t, "echo of "+word, 10*time.Second, func() bool { return strings.Contains(out.String(), "got:"+word) })
		acancel()
		<-done
	}
	if lines := readLog(t, c.logPath); hasLine(lines, "stdout", "F", "eof") {
		t.Errorf("container saw stdin EOF:\n%s", logText(lines))
	}
	if _, err := ReadExit(c.stateDir); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("container exited: %v", err)
	}
}

func TestReopenLog(t *testing.T) {
	o := prepare(t, []string{"sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done"}, nil)
	c := spawn(t, o, true)
	waitFor(t, "first lines", 10*time.Second, func() bool { return len(readLog(t, c.logPath)) >= 2 })
	rotated := c.logPath + ".1"
	if err := os.Rename(c.logPath, rotated); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ReopenLog(ctx, c.stateDir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lines in the new file", 10*time.Second, func() bool { return len(readLog(t, c.logPath)) >= 2 })
	old := readLog(t, rotated)
	cur := readLog(t, c.logPath)
	last := old[len(old)-1].content
	first := cur[0].content
	var a, b int
	fmt.Sscanf(last, "line %d", &a)
	fmt.Sscanf(first, "line %d", &b)
	if b != a+1 {
		t.Errorf("rotation lost or repeated lines: old ends %q, new starts %q", last, first)
	}
	if err := c.rt.Kill(ctx, c.id, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	// sh as pid 1 ignores SIGTERM without a handler: kill it.
	time.Sleep(200 * time.Millisecond)
	c.rt.Kill(ctx, c.id, syscall.SIGKILL, false)
	c.wait(10 * time.Second)
	waitFor(t, "monitor exit", 5*time.Second, func() bool { return !Alive(c.stateDir) })
	if err := ReopenLog(ctx, c.stateDir); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("ReopenLog after exit: %v, want ErrFailedPrecondition", err)
	}
}

func TestCreateFailure(t *testing.T) {
	o := prepare(t, []string{"/no/such/binary"}, nil)
	os.MkdirAll(filepath.Dir(o.LogPath), 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Spawn(ctx, monitorBin, o)
	if err == nil {
		runtimeFor().Delete(ctx, o.ID, true)
		t.Fatalf("Spawn of a bad container succeeded: %+v", p)
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "/no/such/binary") || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("error lacks runc's message: %v", err)
	}
	if _, err := runtimeFor().State(ctx, o.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("runc still knows the container: %v", err)
	}
	if Alive(o.StateDir) {
		t.Error("monitor still alive")
	}
	if pids := monitorsFor(o.StateDir); len(pids) > 0 {
		t.Errorf("monitor processes left: %v", pids)
	}
	for _, d := range cgroupDirs() {
		if _, err := os.Stat(filepath.Join(d, o.ID)); err == nil {
			t.Errorf("cgroup %s left", filepath.Join(d, o.ID))
		}
	}
	if _, err := os.Stat(filepath.Join(o.StateDir, socketName)); err == nil {
		t.Error("socket left in state dir")
	}
}

// monitorsFor lists live (non-zombie) processes whose command line names
// stateDir.
func monitorsFor(stateDir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(stateDir)) && bytes.Contains(b, []byte("-state-dir")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestSpawnMissingLogDir(t *testing.T) {
	o := prepare(t, []string{"true"}, nil)
	o.LogPath = filepath.Join(testDir, "no-such-dir", "x.log")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Spawn(ctx, monitorBin, o); err == nil || !strings.Contains(err.Error(), "no-such-dir") {
		t.Fatalf("Spawn with an unusable log path: %v", err)
	}
	if _, err := runtimeFor().State(ctx, o.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("runc knows the container: %v", err)
	}
}

func TestWaitVanishedMonitor(t *testing.T) {
	o := prepare(t, []string{"sleep", "100"}, nil)
	c := spawn(t, o, true)
	if err := syscall.Kill(c.proc.MonitorPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "monitor death", 5*time.Second, func() bool { return !Alive(c.stateDir) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Wait(ctx, c.stateDir); !errors.Is(err, ErrMonitorVanished) {
		t.Errorf("Wait = %v, want ErrMonitorVanished", err)
	}
	// Without its monitor nothing records the exit; the test's cleanup
	// would wait for it, so clean up here and write the exit ourselves.
	c.rt.Delete(ctx, c.id, true)
	writeFileAtomic(filepath.Join(c.stateDir, exitName), []byte(`{"code":137}`))
}

func TestOOMKilled(t *testing.T) {
	limit := int64(16 << 20)
	o := prepare(t, []string{"sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"}, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
	})
	c := spawn(t, o, true)
	e := c.wait(60 * time.Second)
	if !e.OOMKilled || e.Code != 137 {
		t.Errorf("exit = %+v, want OOM kill with 137", e)
	}
}

func TestMonitorMemory(t *testing.T) {
	o := prepare(t, []string{"sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; sleep 100"}, nil)
	o.Stdin = true
	c := spawn(t, o, true)
	waitFor(t, "output", 10*time.Second, func() bool { return hasLine(readLog(t, c.logPath), "stdout", "F", "line 1999") })
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", c.proc.MonitorPID))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			n, err := strconv.Atoi(f[1])
			if err == nil {
				vals[strings.TrimSuffix(f[0], ":")] = n
			}
		}
	}
	t.Logf("monitor memory: Rss %d KiB, Pss %d KiB (Pss_Anon %d, Pss_File %d), Private %d KiB",
		vals["Rss"], vals["Pss"], vals["Pss_Anon"], vals["Pss_File"], vals["Private_Clean"]+vals["Private_Dirty"])
	limit := 20 * 1024
	if os.Getenv("CRID_MONITOR_RACE") != "" {
		limit = 96 * 1024 // the race detector's shadow memory
	}
	if vals["Rss"] == 0 || vals["Rss"] > limit {
		t.Errorf("monitor Rss %d KiB; want (0, %d KiB]", vals["Rss"], limit)
	}
	c.rt.Kill(context.Background(), c.id, syscall.SIGKILL, false)
	c.wait(10 * time.Second)
}

// TestLaunchTouchesNoFile checks what lets crid launch a monitor before its
// record of the container exists: Launch makes no file (a crash then
// leaves nothing on disk), Abort ends the monitor, and Create makes the
// state dir, where the monitor then keeps its log.
func TestLaunchTouchesNoFile(t *testing.T) {
	t.Run("aborted", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "never")
		p, err := Launch(monitorBin, dir)
		if err != nil {
			t.Fatal(err)
		}
		if pids := monitorsFor(dir); len(pids) != 1 {
			t.Errorf("launched monitor processes %v, want one", pids)
		}
		p.Abort()
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state dir after Launch and Abort: %v, want none", err)
		}
		if pids := monitorsFor(dir); len(pids) > 0 {
			t.Errorf("monitor processes left after Abort: %v", pids)
		}
	})
	t.Run("created", func(t *testing.T) {
		o := prepare(t, []string{"sh", "-c", "echo launched"}, nil)
		if err := os.RemoveAll(o.StateDir); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(o.LogPath), 0o755)
		l := LaunchAsync(monitorBin, o.StateDir)
		defer l.Abort()
		p, err := l.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(o.StateDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state dir before Create: %v, want none", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		proc, err := p.Create(ctx, o)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		c := &testCtr{t: t, id: o.ID, o: o, rt: runtimeFor(), logPath: o.LogPath, stateDir: o.StateDir, proc: proc}
		t.Cleanup(c.cleanup)
		if err := c.rt.Start(ctx, o.ID); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if e := c.wait(10 * time.Second); e.Code != 0 {
			t.Errorf("exit %+v, want 0", e)
		}
		b, err := os.ReadFile(filepath.Join(o.StateDir, logName))
		if err != nil || !strings.Contains(string(b), "container created") {
			t.Errorf("monitor log %q (%v), want the monitor's own lines", b, err)
		}
	})
}

// TestLogNotThroughSymlink: a symlink in the place of the monitor's log
// is not followed (the monitor runs as root): the create fails saying so,
// and the file the link names is left as it was.
func TestLogNotThroughSymlink(t *testing.T) {
	o := prepare(t, []string{"true"}, nil)
	os.MkdirAll(filepath.Dir(o.LogPath), 0o755)
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(target, []byte("untouched\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(o.StateDir, logName)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if p, err := Spawn(ctx, monitorBin, o); err == nil || !strings.Contains(err.Error(), "open the monitor's log") {
		if err == nil {
			runtimeFor().Delete(ctx, o.ID, true)
		}
		t.Fatalf("Spawn with a symlink for the monitor's log = %+v, %v; want a failure saying the log could not be opened", p, err)
	}
	if b, _ := os.ReadFile(target); string(b) != "untouched\n" {
		t.Errorf("the symlink's target now holds %q", b)
	}
	if pids := monitorsFor(o.StateDir); len(pids) > 0 {
		t.Errorf("monitor processes left: %v", pids)
	}
}
