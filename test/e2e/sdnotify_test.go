package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/test/images"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/sys/mountinfo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// notifySocket is a socket like systemd's NOTIFY_SOCKET that records what
// crid sends to it.
type notifySocket struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T, path string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, msgs: make(chan string, 1000)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n
}

// until returns the messages received up to and including the first that
// has the line want; it fails the test if none comes within d.
func (n *notifySocket) until(t *testing.T, want string, d time.Duration) []string {
	t.Helper()
	var got []string
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed waiting for %s; got %q", want, got)
			}
			got = append(got, m)
			if hasLine(m, want) {
				return got
			}
		case <-timeout:
			t.Fatalf("no %s within %v; got %q", want, d, got)
		}
	}
}

func hasLine(msg, line string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// notifiedCrid is a crid of its own (root, state, socket under dir) that
// notifies a socket the test listens on.
type notifiedCrid struct {
	dir, cfgPath, socket, logPath string
	// tables are appended to the config (handlers).
	tables string
	cmd    *exec.Cmd
	done   chan struct{}
}

// newNotifiedCrid writes a config whose registry.k8s.io mirror is mirror
// (host:port) and whose network has no CNI config (its pods use the
// host's network). tables(dir) returns more of it.
func newNotifiedCrid(t *testing.T, mirror string, tables func(dir string) string) *notifiedCrid {
	t.Helper()
	// Short: monitor sockets live under it (sun_path is 108 bytes).
	dir, err := os.MkdirTemp("/tmp", "crid-sdn-")
	if err != nil {
		t.Fatal(err)
	}
	c := &notifiedCrid{dir: dir, cfgPath: filepath.Join(dir, "crid.toml"), socket: filepath.Join(dir, "crid.sock"), logPath: filepath.Join(dir, "crid.log")}
	// Registered first, so it runs last: after the test's own cleanups,
	// which may still need crid.
	t.Cleanup(func() {
		c.stop(t)
		if mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir)); err == nil {
			for i := len(mounts) - 1; i >= 0; i-- {
				_ = syscall.Unmount(mounts[i].Mountpoint, syscall.MNT_DETACH)
			}
		}
		if t.Failed() {
			t.Logf("crid log:\n%s", c.log())
		}
		_ = os.RemoveAll(dir)
	})
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		t.Fatal(err)
	}
	if tables != nil {
		c.tables = tables(dir)
	}
	c.writeConfig(t, mirror, "")
	return c
}

func (c *notifiedCrid) writeConfig(t *testing.T, mirror, extra string) {
	t.Helper()
	cfg := fmt.Sprintf(`root = %q
state = %q
socket = %q
%s
[[images.registries]]
host = "registry.k8s.io"
mirrors = ["http://%s/registry.k8s.io"]
fallback = false
[network]
conf_dir = %q
%s`, filepath.Join(c.dir, "root"), filepath.Join(c.dir, "state"), c.socket, extra, mirror, filepath.Join(c.dir, "cni"), c.tables)
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs crid with NOTIFY_SOCKET=notify.
func (c *notifiedCrid) start(t *testing.T, notify string) {
	t.Helper()
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(h.binDir, "crid"), "--config", c.cfgPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.cmd, c.done = cmd, make(chan struct{})
	done := c.done
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
}

// stop sends SIGTERM and waits for crid to exit.
func (c *notifiedCrid) stop(t *testing.T) {
	t.Helper()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Error("crid did not exit within 30s of SIGTERM")
	}
	c.cmd = nil
}

func (c *notifiedCrid) log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// dial connects to the crid's CRI socket, counting connections made.
func (c *notifiedCrid) dial(t *testing.T, dials *atomic.Int32) (runtime.RuntimeServiceClient, runtime.ImageServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+c.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			return (&net.Dialer{}).DialContext(ctx, "unix", c.socket)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
}

// answersNow calls Version once on a fresh connection with a short
// deadline and no retry: does the CRI socket serve at this moment?
func (c *notifiedCrid) answersNow() error {
	conn, err := grpc.NewClient("unix://"+c.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = runtime.NewRuntimeServiceClient(conn).Version(ctx, &runtime.VersionRequest{})
	return err
}

// environHas reports whether process pid's environment has name set.
func environHas(t *testing.T, pid int, name string) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if bytes.HasPrefix(kv, []byte(name+"=")) {
			return true
		}
	}
	return false
}

// parentPid is the PPid of pid.
func parentPid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			p, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("no PPid in /proc/%d/status", pid)
	return 0
}

// TestSdNotify runs crid as systemd would (Type=notify): READY=1 only once
// the CRI socket answers; a start with containers to recover reports its
// progress with STATUS and EXTEND_TIMEOUT_USEC before READY=1; SIGTERM
// sends STOPPING=1; and neither the container's monitor nor its processes
// nor any runc crid runs inherit NOTIFY_SOCKET. The socket is in the
// abstract namespace on the first start and a path on the second, as
// systemd may use either.
func TestSdNotify(t *testing.T) {
	// The runtime is a wrapper named runc (so crid treats it as runc) that
	// records the environment of every call crid or a monitor makes.
	c := newNotifiedCrid(t, h.registry, func(dir string) string {
		wrap := filepath.Join(dir, "wrap")
		script := "#!/bin/sh\nenv > " + wrap + "/env.$$\nexec " + newRunc + " \"$@\"\n"
		if err := os.MkdirAll(wrap, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(wrap, "runc"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("[runtime.handlers.runc]\npath = %q\n", filepath.Join(wrap, "runc"))
	})

	// A fresh crid: nothing to recover, so no timeout extension.
	abstract := "@crid-e2e-notify-" + randHex(4)
	n1 := listenNotify(t, abstract)
	started := time.Now()
	c.start(t, abstract)
	msgs := n1.until(t, "READY=1", time.Minute)
	t.Logf("fresh start: READY=1 %v after exec", time.Since(started).Round(time.Millisecond))
	if err := c.answersNow(); err != nil {
		t.Fatalf("READY=1 sent while the CRI socket does not answer: %v", err)
	}
	for _, m := range msgs {
		if strings.Contains(m, "EXTEND_TIMEOUT_USEC=") {
			t.Errorf("a start with nothing to recover extended the timeout: %q", msgs)
		}
	}

	rt, img := c.dial(t, nil)
	ctx := ctxT(t)
	if _, err := img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, c.log())
	}
	pod := podConfig(t)
	pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}
	sb, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, c.log())
	}
	t.Cleanup(func() {
		// Through whichever crid runs now (the test restarts it).
		conn, err := grpc.NewClient("unix://"+c.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := runtime.NewRuntimeServiceClient(conn).RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
			t.Errorf("cleanup RemovePodSandbox: %v", err)
		}
	})
	cr, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: containerConfig("sleeper", "sleep", "3600"), SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, c.log())
	}
	if _, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v\n%s", err, c.log())
	}

	// The container's init and its monitor (the init's parent: the monitor
	// is its subreaper) were started by crid, which had NOTIFY_SOCKET.
	out, err := exec.Command(newRunc, "--root", filepath.Join(c.dir, "state", "runtime", "runc"), "state", cr.ContainerId).Output()
	if err != nil {
		t.Fatalf("runc state: %v", err)
	}
	var state struct{ Pid int }
	if err := json.Unmarshal(out, &state); err != nil || state.Pid == 0 {
		t.Fatalf("runc state %s: %v", out, err)
	}
	monitorPid := parentPid(t, state.Pid)
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", monitorPid)); filepath.Base(exe) != "crid-monitor" {
		t.Fatalf("parent of the container's init is %s, want crid-monitor", exe)
	}
	for what, pid := range map[string]int{"crid-monitor": monitorPid, "container init": state.Pid} {
		if environHas(t, pid, "NOTIFY_SOCKET") {
			t.Errorf("%s (pid %d) inherited NOTIFY_SOCKET", what, pid)
		}
	}
	ex, err := rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"env"}, Timeout: 10})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ex.Stdout), "NOTIFY_SOCKET") {
		t.Errorf("an exec'd process sees NOTIFY_SOCKET:\n%s", ex.Stdout)
	}

	c.stop(t)
	n1.until(t, "STOPPING=1", 5*time.Second)
	envs, err := filepath.Glob(filepath.Join(c.dir, "wrap", "env.*"))
	if err != nil || len(envs) == 0 {
		t.Fatalf("the runc wrapper recorded no call (%v)", err)
	}
	for _, p := range envs {
		if b, err := os.ReadFile(p); err != nil || bytes.Contains(b, []byte("NOTIFY_SOCKET=")) {
			t.Errorf("a runc call inherited NOTIFY_SOCKET (%v):\n%s", err, b)
		}
	}

	// Restart with a pod and a container to recover.
	path := filepath.Join(c.dir, "notify.sock")
	n2 := listenNotify(t, path)
	started = time.Now()
	c.start(t, path)
	msgs = n2.until(t, "READY=1", time.Minute)
	t.Logf("start with a pod and a container to recover: READY=1 %v after exec", time.Since(started).Round(time.Millisecond))
	if err := c.answersNow(); err != nil {
		t.Fatalf("READY=1 sent while the CRI socket does not answer: %v", err)
	}
	var recovering []string
	for _, m := range msgs {
		if strings.Contains(m, "EXTEND_TIMEOUT_USEC=") {
			recovering = append(recovering, m)
		}
	}
	if len(recovering) < 2 {
		t.Fatalf("recovery sent %d EXTEND_TIMEOUT_USEC messages before READY=1, want its start and end: %q", len(recovering), msgs)
	}
	if first := recovering[0]; !hasLine(first, "EXTEND_TIMEOUT_USEC=120000000") || !hasLine(first, "STATUS=recovering state: 0 of 2 pods and containers") {
		t.Errorf("first recovery message %q", first)
	}
	if last := recovering[len(recovering)-1]; !hasLine(last, "STATUS=recovering state: 2 of 2 pods and containers") {
		t.Errorf("last recovery message %q", last)
	}
	rt, _ = c.dial(t, nil)
	st, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if err != nil || st.Status.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after the restart: %v %v", st, err)
	}
	if parentPid(t, state.Pid) != monitorPid {
		t.Errorf("the container's monitor changed across the restart")
	}
}

// countingRegistry serves the test images on 127.0.0.1 and counts the
// manifest GETs.
type countingRegistry struct {
	addr      string
	manifests atomic.Int32
}

func newCountingRegistry(t *testing.T, refs map[string]string) *countingRegistry {
	t.Helper()
	cat, err := images.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &countingRegistry{addr: lis.Addr().String()}
	reg := images.NewRegistry(slog.New(slog.DiscardHandler))
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Only GETs: pushing the images asks too (HEAD, PUT).
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/manifests/") {
			r.manifests.Add(1)
		}
		reg.ServeHTTP(w, req)
	})}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close() })
	push := map[string]v1.Image{}
	for as, from := range refs {
		img, ok := cat[from]
		if !ok {
			t.Fatalf("no %s in the test catalog", from)
		}
		push[as] = img
	}
	if err := images.Push(context.Background(), r.addr, push); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSighupReloadsMirrors: SIGHUP applies a new mirror to the next pull
// while a gRPC connection opened before keeps working (no reconnect); a
// config that does not load is refused and the running one kept; a
// changed key that needs a restart is logged as such.
func TestSighupReloadsMirrors(t *testing.T) {
	second := newCountingRegistry(t, map[string]string{
		"registry.k8s.io/sighup/only-second:a": busybox,
		"registry.k8s.io/sighup/only-second:b": busybox,
	})
	c := newNotifiedCrid(t, h.registry, nil)
	notify := listenNotify(t, filepath.Join(c.dir, "notify.sock"))
	c.start(t, notify.path)
	notify.until(t, "READY=1", time.Minute)

	var dials atomic.Int32
	_, img := c.dial(t, &dials)
	ctx := ctxT(t)
	pullA := func() error {
		_, err := img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "registry.k8s.io/sighup/only-second:a"}})
		return err
	}
	if err := pullA(); status.Code(err) != codes.NotFound {
		t.Fatalf("pull before the reload = %v, want NotFound from the first mirror", err)
	}

	// The new mirror, and a key that needs a restart.
	c.writeConfig(t, second.addr, `log_level = "debug"`)
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	msgs := notify.until(t, "READY=1", 30*time.Second)
	if !hasLine(msgs[0], "RELOADING=1") || !strings.Contains(msgs[0], "MONOTONIC_USEC=") {
		t.Errorf("reload began with %q, want RELOADING=1 and MONOTONIC_USEC", msgs[0])
	}
	if err := pullA(); err != nil {
		t.Fatalf("pull after the reload: %v\n%s", err, c.log())
	}
	if n := second.manifests.Load(); n == 0 {
		t.Error("the pull after the reload did not go through the new mirror")
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the client connected %d times: the reload dropped its connection", n)
	}
	log := c.log()
	if !strings.Contains(log, "take effect only when crid restarts") || !strings.Contains(log, "log_level") {
		t.Errorf("the changed log_level is not logged as needing a restart:\n%s", log)
	}

	// A config that does not validate: refused, the second mirror stays.
	if err := os.WriteFile(c.cfgPath, []byte("[[images.registries]]\nhost = \"registry.k8s.io\"\nmirrors = [\"ftp://nowhere\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	msgs = notify.until(t, "READY=1", 30*time.Second)
	if last := msgs[len(msgs)-1]; !strings.Contains(last, "refused") {
		t.Errorf("status after a bad config = %q, want it refused", last)
	}
	if !strings.Contains(c.log(), "config reload refused; keeping the running config") {
		t.Errorf("the refused reload is not logged:\n%s", c.log())
	}
	before := second.manifests.Load()
	if _, err := img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "registry.k8s.io/sighup/only-second:b"}}); err != nil {
		t.Fatalf("pull after a refused reload: %v", err)
	}
	if second.manifests.Load() == before {
		t.Error("after a refused reload the pull did not use the running mirror")
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the client connected %d times across two reloads", n)
	}
	if c.cmd.ProcessState != nil {
		t.Fatal("crid exited")
	}
}
