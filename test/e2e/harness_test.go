// Package e2e tests a real crid daemon end to end: real runc and crun,
// real CNI plugins, images pulled over the registry protocol from a
// registry served on 127.0.0.1 through configured mirrors. Run as root.
package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/test/images"
	"github.com/moby/sys/mountinfo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

// Each run gets its own bridge, CNI network and subnet so that two runs
// on one machine (developers, helpers, CI) cannot tear each other down.
var (
	runTag      = randHex(3)
	bridgeName  = "crid-e2e" + runTag[:4]
	networkName = "crid-e2e-" + runTag
	podSubnet   = freePodSubnet(runTag)
)

// freePodSubnet is a /24 of 10.99.10.0-10.99.209.0, starting from one the
// tag picks, that overlaps no address of this machine's interfaces. A
// bridge on the same subnet (another run's, or one a killed run left, which
// keeps its address and route) would take the pods' traffic from the host:
// hostPort connections then time out. (The subnet was once picked from the
// tag alone, among 16, and a leaked bridge made TestIsolationPortMappings
// fail that way.)
func freePodSubnet(tag string) string {
	var addrs []net.Addr
	if a, err := net.InterfaceAddrs(); err == nil {
		addrs = a
	}
	start, _ := strconv.ParseUint(tag, 16, 32)
	candidate := func(i int) *net.IPNet {
		return &net.IPNet{IP: net.IPv4(10, 99, byte(10+(int(start)+i)%200), 0).To4(), Mask: net.CIDRMask(24, 32)}
	}
	for i := range 200 {
		c, free := candidate(i), true
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (c.Contains(ipn.IP) || ipn.Contains(c.IP)) {
				free = false
				break
			}
		}
		if free {
			return c.String()
		}
	}
	return candidate(0).String() // none free: the CNI ADD will say why
}

// harness is the crid under test and what it needs around it.
type harness struct {
	base     string // everything the run creates lives here
	binDir   string
	socket   string
	cfgPath  string
	registry string // host:port
	logPath  string
	metrics  string   // host:port of crid's Prometheus endpoint (prometheus_test.go)
	env      []string // added to crid's environment (fault_test.go: CRID_FAULTS)
	crid     *exec.Cmd
	conn     *grpc.ClientConn
	rt       runtime.RuntimeServiceClient
	img      runtime.ImageServiceClient
}

var h *harness

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e tests need root")
		os.Exit(1)
	}
	var err error
	h, err = setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		if h != nil {
			h.teardown()
		}
		os.Exit(1)
	}
	code := m.Run()
	h.teardown()
	os.Exit(code)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func setup() (*harness, error) {
	// Short base path: monitor sockets live under it (sun_path is 108 bytes).
	base := filepath.Join("/tmp", "crid-e2e-"+randHex(3))
	hh := &harness{base: base, socket: filepath.Join(base, "crid.sock"), logPath: filepath.Join(base, "crid.log")}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	hh.binDir = os.Getenv("CRID_BIN")
	if hh.binDir == "" {
		hh.binDir = filepath.Join(base, "bin")
		cmd := exec.Command("go", "build", "-o", hh.binDir+"/", "../../cmd/crid", "../../cmd/crid-monitor")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return hh, fmt.Errorf("build crid: %w", err)
		}
		cmd = exec.Command("make", "-C", "../..", "nsexec", "NSEXEC_OUT="+hh.binDir+"/crid-nsexec")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return hh, fmt.Errorf("build crid-nsexec: %w", err)
		}
	}
	// Registry with the test images.
	cat, err := images.Catalog()
	if err != nil {
		return hh, fmt.Errorf("build test images: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return hh, err
	}
	hh.registry = lis.Addr().String()
	logf, err := os.Create(filepath.Join(base, "registry.log"))
	if err != nil {
		return hh, err
	}
	go func() {
		_ = http.Serve(lis, images.NewRegistry(slog.New(slog.NewTextHandler(logf, nil))))
	}()
	if err := images.Push(context.Background(), hh.registry, cat); err != nil {
		return hh, fmt.Errorf("push test images: %w", err)
	}
	// A failpoint plugin chained after the standard ones.
	cniBin := filepath.Join(base, "cnibin")
	if err := buildHelper("./cnifail", filepath.Join(cniBin, "crid-e2e-failpoint")); err != nil {
		return hh, fmt.Errorf("build failpoint plugin: %w", err)
	}
	// CNI config on a bridge of our own.
	cniDir := filepath.Join(base, "cni")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		return hh, err
	}
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "crid-e2e-failpoint"}
  ]
}`, networkName, bridgeName, podSubnet)
	if err := os.WriteFile(filepath.Join(cniDir, "10-e2e.conflist"), []byte(conflist), 0o644); err != nil {
		return hh, err
	}
	cfg := fmt.Sprintf(`root = %q
state = %q
socket = %q
log_level = "debug"
[images]
sandbox_image = "registry.k8s.io/pause:3.10"
%s
[runtime]
cdi_spec_dirs = [%q]
# The default handler, spelled out: the runc scripts/build-runc.sh installs.
[runtime.handlers.runc]
path = "/usr/local/sbin/runc"
[runtime.handlers.runc-b]
path = "runc"
# Its execs go through runc exec, so that path stays tested.
direct_exec = false
[runtime.handlers.broken]
path = "/bin/false"
# Pods of this handler may use crid's annotations (annotations_test.go).
[runtime.handlers.runc-annot]
path = "/usr/local/sbin/runc"
allowed_annotations = ["io.crid.*", "example.com/*"]
[network]
conf_dir = %q
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin", %q]
`, filepath.Join(base, "root"), filepath.Join(base, "state"), hh.socket, mirrorsTOML(hh.registry), filepath.Join(base, "cdi"), cniDir, cniBin)
	// The metrics endpoint, on a free loopback port.
	if hh.metrics, err = freeLoopbackAddr(); err != nil {
		return hh, err
	}
	cfg += fmt.Sprintf("[metrics]\naddress = %q\n", hh.metrics)
	hh.cfgPath = filepath.Join(base, "crid.toml")
	if err := os.WriteFile(hh.cfgPath, []byte(cfg), 0o644); err != nil {
		return hh, err
	}
	if err := hh.start(); err != nil {
		return hh, err
	}
	return hh, nil
}

// start launches crid and connects to it.
func (hh *harness) start() error {
	logf, err := os.OpenFile(hh.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(hh.binDir, "crid"), "--config", hh.cfgPath)
	cmd.Env = append(os.Environ(), hh.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start crid: %w", err)
	}
	hh.crid = cmd
	go func() { _ = cmd.Wait(); logf.Close() }()
	return hh.connect(30 * time.Second)
}

// connect dials crid's socket and waits up to wait for it to answer
// (a crid another process started, e.g. systemd, or one just started).
func (hh *harness) connect(wait time.Duration) error {
	conn, err := grpc.NewClient("unix://"+hh.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	hh.conn, hh.rt, hh.img = conn, runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := hh.rt.Version(ctx, &runtime.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("crid did not answer within %s: %w; log:\n%s", wait, err, hh.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends crid with sig and waits for it; containers keep running.
func (hh *harness) stop(sig syscall.Signal) {
	if hh.conn != nil {
		hh.conn.Close()
		hh.conn = nil
	}
	if hh.crid == nil || hh.crid.Process == nil {
		return
	}
	_ = hh.crid.Process.Signal(sig)
	for i := 0; i < 100; i++ {
		if err := hh.crid.Process.Signal(syscall.Signal(0)); err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	hh.crid = nil
}

func (hh *harness) logTail() string {
	b, _ := os.ReadFile(hh.logPath)
	lines := strings.Split(string(b), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// teardown removes every pod crid still has, stops it and removes all the
// run left on the host: mounts, bridge, IPAM state, files.
func (hh *harness) teardown() {
	if hh.rt != nil && hh.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if pods, err := hh.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err == nil {
			for _, p := range pods.Items {
				_, _ = hh.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.Id})
			}
		}
		cancel()
	}
	hh.stop(syscall.SIGTERM)
	if mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(hh.base)); err == nil {
		for i := len(mounts) - 1; i >= 0; i-- {
			_ = syscall.Unmount(mounts[i].Mountpoint, syscall.MNT_DETACH)
		}
	}
	removeLeakCgroupParent()
	_ = exec.Command("ip", "link", "del", bridgeName).Run()
	_ = os.RemoveAll(filepath.Join("/var/lib/cni/networks", networkName))
	if os.Getenv("CRID_E2E_KEEP") == "" {
		_ = os.RemoveAll(hh.base)
	}
}

// buildHelper puts the helper program in package dir (relative to
// test/e2e) at out: built with go, or, where there is no Go toolchain (the
// VM of test/vm), copied from $CRID_E2E_PREBUILT/crid-e2e-<base of dir>,
// which test/vm/e2e.sh builds on the host.
func buildHelper(dir, out string) error {
	if pre := os.Getenv("CRID_E2E_PREBUILT"); pre != "" {
		b, err := os.ReadFile(filepath.Join(pre, "crid-e2e-"+filepath.Base(dir)))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o755)
	}
	build := exec.Command("go", "build", "-o", out, dir)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	return build.Run()
}

// readLines returns the lines of a file (nil if it does not exist).
func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// mirrorsTOML is crid's [[images.registries]] config sending the upstream
// registries the test images are named after to the test registry at
// registry, with no fallback to the real ones (the machine is offline).
func mirrorsTOML(registry string) string {
	var regs strings.Builder
	for _, host := range []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io", "docker.io"} {
		fmt.Fprintf(&regs, "[[images.registries]]\nhost = %q\nmirrors = [\"http://%s/%s\"]\nfallback = false\n", host, registry, host)
	}
	return regs.String()
}

// secondHarness is a harness for another crid with its own root, state
// and socket under /tmp/crid-<name>-<random> (short: monitor sockets live
// under it and sun_path is 108 bytes), using the run's registry. Its pods,
// the daemon, its mounts and files go when the test ends, whatever the
// outcome; the caller writes its config (cfgPath) and starts it.
func secondHarness(t *testing.T, name string) *harness {
	t.Helper()
	base := filepath.Join("/tmp", "crid-"+name+"-"+randHex(3))
	c2 := &harness{
		base: base, binDir: h.binDir, socket: filepath.Join(base, "crid.sock"),
		cfgPath: filepath.Join(base, "crid.toml"), registry: h.registry, logPath: filepath.Join(base, "crid.log"),
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c2.removeAllPods(t)
		c2.stop(syscall.SIGTERM)
		// Containers outlive crid: one its pods' removal missed would run
		// on, holding mounts under base, after the directory is gone.
		for _, p := range processesRootedUnder(base) {
			t.Errorf("cleanup: process %d (%s) still runs in a container of this crid after every pod was removed; killing it", p.pid, p.comm)
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		unmountUnder(base)
		if os.Getenv("CRID_E2E_KEEP") == "" {
			_ = os.RemoveAll(base)
		}
	})
	return c2
}

// removeAllPods removes every pod the crid has, starting it again (without
// fault rules) if the test left it stopped or it does not answer: its containers run on without
// it, and only it can stop and remove them. A crid that cannot start (a
// test left a bad config) is said so in the log; what it had running is
// then found by processesRootedUnder.
func (hh *harness) removeAllPods(t *testing.T) {
	t.Helper()
	if hh.conn != nil {
		// Connected once, but maybe to a crid stopped since by other means
		// than stop (systemd, a crash).
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := hh.rt.Version(ctx, &runtime.VersionRequest{})
		cancel()
		if err != nil {
			if hh.crid != nil && hh.crid.Process.Signal(syscall.Signal(0)) == nil {
				// Ours, alive and not answering: a second crid on its
				// state would only wait for its store's lock.
				t.Errorf("cleanup: crid (pid %d) runs but does not answer: %v", hh.crid.Process.Pid, err)
				return
			}
			hh.conn.Close()
			hh.conn = nil
		}
	}
	if hh.conn == nil {
		if _, err := os.Stat(hh.cfgPath); err != nil {
			return // never configured, so never run
		}
		hh.env = nil
		if err := hh.start(); err != nil {
			t.Logf("cleanup: crid did not start again to remove its pods: %v", err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods, err := hh.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("cleanup ListPodSandbox: %v", err)
		return
	}
	for _, p := range pods.Items {
		if _, err := hh.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("cleanup RemovePodSandbox %s: %v", p.Id, err)
		}
	}
}

// rootedProc is a process processesRootedUnder found.
type rootedProc struct {
	pid  int
	comm string
}

// processesRootedUnder lists the processes whose root filesystem is an
// overlay with its upper dir under dir: the containers and pauses of a
// crid whose root is there.
func processesRootedUnder(dir string) []rootedProc {
	procs, _ := os.ReadDir("/proc")
	var out []rootedProc
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "mountinfo"))
		if err != nil {
			continue // exited, or a kernel thread
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && f[4] == "/" && strings.Contains(line, "upperdir="+dir+"/") {
				comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
				out = append(out, rootedProc{pid: pid, comm: strings.TrimSpace(string(comm))})
				break
			}
		}
	}
	return out
}

// unmountUnder lazily unmounts everything below dir, deepest first.
func unmountUnder(dir string) {
	out, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}
