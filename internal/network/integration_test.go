package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/config"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Names the integration tests create on the host; cleanup removes them.
const (
	testBridge  = "crid-test0"
	testNetName = "crid-nettest"
	testSubnet  = "10.123.0.0/24"
	testGateway = "10.123.0.1"
)

// portmapChains are the top-level chains portmap creates once and never
// deletes; the tests remove them if they created them.
var portmapChains = []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (netns, bind mounts, CNI plugins)")
	}
}

// unmountAll detaches every mount at dir (the shared self-bind of the netns
// dir and anything below it).
func unmountAll(t *testing.T, dir string) {
	t.Helper()
	for range 10 {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				t.Errorf("unmount %s: %v", dir, err)
			}
			return
		}
	}
}

func natRules(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	return string(out)
}

func chainExists(rules, chain string) bool {
	return strings.Contains(rules, "\n:"+chain+" ")
}

// cleanupPortmapChains removes portmap's shared chains when this test run
// created them and no other pod uses them any more.
func cleanupPortmapChains(t *testing.T, existed bool) {
	if existed {
		return
	}
	rules := natRules(t)
	for _, line := range strings.Split(rules, "\n") {
		if strings.HasPrefix(line, "-A CNI-HOSTPORT-DNAT ") || strings.HasPrefix(line, "-A CNI-DN-") {
			t.Logf("leaving portmap chains: still in use (%s)", line)
			return
		}
	}
	for _, line := range strings.Split(rules, "\n") {
		if !strings.HasPrefix(line, "-A ") || strings.HasPrefix(line, "-A CNI-HOSTPORT") {
			continue
		}
		for _, c := range portmapChains {
			if strings.HasSuffix(line, "-j "+c) {
				// iptables-save quotes comments as a shell would.
				cmd := "iptables -t nat -D " + strings.TrimPrefix(line, "-A ")
				if out, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
					t.Errorf("%s: %v: %s", cmd, err, out)
				}
			}
		}
	}
	for _, c := range portmapChains {
		if chainExists(rules, c) {
			exec.Command("iptables", "-t", "nat", "-F", c).Run()
			if out, err := exec.Command("iptables", "-t", "nat", "-X", c).CombinedOutput(); err != nil {
				t.Errorf("delete chain %s: %v: %s", c, err, out)
			}
		}
	}
}

// cleanupMasqRules removes the bridge plugin's per-pod NAT chains of the
// test network. Debian's bridge plugin (1.1.x) only finds the pod address to
// unmasquerade inside the pod's namespace, so a DEL after the namespace is
// gone leaves them behind; crid avoids that by tearing down before removing
// the namespace, the test case "teardown after netns removal" does not.
func cleanupMasqRules(t *testing.T) {
	marker := `name: \"` + testNetName + `\"`
	chains := map[string]bool{}
	for _, line := range strings.Split(natRules(t), "\n") {
		if !strings.HasPrefix(line, "-A POSTROUTING ") || !strings.Contains(line, marker) {
			continue
		}
		f := strings.Fields(line)
		chains[f[len(f)-1]] = true
		cmd := "iptables -t nat -D " + strings.TrimPrefix(line, "-A ")
		if out, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
			t.Errorf("%s: %v: %s", cmd, err, out)
		}
	}
	for c := range chains {
		if !strings.HasPrefix(c, "CNI-") {
			continue
		}
		exec.Command("iptables", "-t", "nat", "-F", c).Run()
		if out, err := exec.Command("iptables", "-t", "nat", "-X", c).CombinedOutput(); err != nil {
			t.Errorf("delete chain %s: %v: %s", c, err, out)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// leasedIPs lists the addresses host-local holds in its data dir.
func leasedIPs(t *testing.T, dataDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, testNetName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

func testConflist(dataDir string, extra string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q,
              "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}%s
  ]
}`, testNetName, testBridge, dataDir, testSubnet, extra)
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func TestPodNetwork(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	chainsExisted := chainExists(natRules(t), "CNI-HOSTPORT-DNAT")
	// No thread of the process, the main one included, may stay in a pod
	// namespace after CreateNetNS or WithNetNS.
	hostNS := inode(t, "/proc/self/ns/net")
	defer func() {
		if inode(t, "/proc/self/ns/net") != hostNS {
			t.Error("main thread left in another network namespace")
		}
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			if ino := inode(t, "/proc/self/task/"+task.Name()+"/ns/net"); ino != hostNS {
				t.Errorf("thread %s in network namespace %d", task.Name(), ino)
			}
		}
	}()
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", testBridge).Run()
		cleanupMasqRules(t)
		cleanupPortmapChains(t, chainsExisted)
	})

	confDir := t.TempDir()
	dataDir := t.TempDir()
	m := newTestManager(t, confDir, "")
	// Watch Setup's forwarding check on a stand-in file rather than on the
	// host's sysctl, which other tests on this machine may rely on.
	m.ipForward = filepath.Join(t.TempDir(), "ip_forward")
	if err := os.WriteFile(m.ipForward, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Not ready without a config; ready once one appears.
	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), "no network config found") {
		t.Fatalf("Ready() = %v", err)
	}
	if _, err := m.Setup(ctx, Pod{ID: "x", NetNSPath: "/proc/self/ns/net"}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Setup without config = %v, want failed precondition", err)
	}
	// Without any config, teardown has nothing to do and must not block kubelet.
	if err := m.Teardown(ctx, Pod{ID: "nothing", NetNSPath: "/nonexistent"}); err != nil {
		t.Fatalf("Teardown without config: %v", err)
	}
	if err := writeFileAtomic(filepath.Join(confDir, "50-test.conflist"), []byte(testConflist(dataDir, ""))); err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready() after writing config: %v", err)
	}

	pods := map[string]*Pod{}
	for _, name := range []string{"a", "b"} {
		id := fmt.Sprintf("crid-nettest-%s-%d", name, os.Getpid())
		path, err := m.CreateNetNS(id)
		if err != nil {
			t.Fatal(err)
		}
		p := &Pod{ID: id, Name: "pod-" + name, Namespace: "default", UID: "uid-" + name, NetNSPath: path}
		pods[name] = p
		t.Cleanup(func() {
			if err := m.Teardown(context.Background(), *p); err != nil {
				t.Errorf("cleanup teardown %s: %v", id, err)
			}
			if err := m.RemoveNetNS(path); err != nil {
				t.Errorf("cleanup netns %s: %v", id, err)
			}
		})
	}
	a, b := pods["a"], pods["b"]

	t.Run("netns pinned", func(t *testing.T) {
		if filepath.Dir(a.NetNSPath) != m.netnsDir {
			t.Fatalf("pin %s not under %s", a.NetNSPath, m.netnsDir)
		}
		if !IsNSMount(a.NetNSPath) {
			t.Fatal("pin is not an nsfs mount")
		}
		pinned := inode(t, a.NetNSPath)
		if pinned == inode(t, "/proc/self/ns/net") || pinned == inode(t, b.NetNSPath) {
			t.Fatal("pinned namespace is not a new one")
		}
		var inside uint64
		if err := WithNetNS(a.NetNSPath, func() error {
			inside = inode(t, "/proc/thread-self/ns/net")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if inside != pinned {
			t.Fatalf("inside netns inode %d, pin inode %d", inside, pinned)
		}
		if _, err := m.CreateNetNS(a.ID); !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Fatalf("second CreateNetNS = %v, want already exists", err)
		}
		if _, err := m.CreateNetNS("../escape"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("CreateNetNS(../escape) = %v", err)
		}
	})

	hostPort := freePort(t)
	a.PortMappings = []*runtime.PortMapping{
		{ContainerPort: 80, Protocol: runtime.Protocol_TCP}, // no host port: not mapped
		{HostPort: int32(hostPort), ContainerPort: 8080, Protocol: runtime.Protocol_TCP},
	}
	_, subnet, _ := net.ParseCIDR(testSubnet)
	var ipA string
	for _, p := range []*Pod{a, b} {
		res, err := m.Setup(ctx, *p)
		if err != nil {
			t.Fatalf("Setup %s: %v", p.ID, err)
		}
		if ip := net.ParseIP(res.IP); ip == nil || !subnet.Contains(ip) || res.IP == testGateway {
			t.Fatalf("Setup %s: IP %q not a pod address in %s", p.ID, res.IP, testSubnet)
		}
		if len(res.AdditionalIPs) != 0 {
			t.Fatalf("unexpected additional IPs %v", res.AdditionalIPs)
		}
		if p == a {
			ipA = res.IP
		}
	}
	if got := leasedIPs(t, dataDir); len(got) != 2 {
		t.Fatalf("host-local leases = %v, want 2", got)
	}
	if b, _ := os.ReadFile(m.ipForward); string(b) != "1" {
		t.Fatalf("ip_forward stand-in = %q after setting up an IPv4 pod, want 1", b)
	}

	t.Run("interfaces in pod", func(t *testing.T) {
		err := WithNetNS(a.NetNSPath, func() error {
			ifs, err := net.Interfaces()
			if err != nil {
				return err
			}
			found := map[string]net.Interface{}
			for _, i := range ifs {
				found[i.Name] = i
			}
			if lo, ok := found["lo"]; !ok || lo.Flags&net.FlagUp == 0 {
				return fmt.Errorf("lo missing or down: %+v", ifs)
			}
			eth0, ok := found["eth0"]
			if !ok || eth0.Flags&net.FlagUp == 0 {
				return fmt.Errorf("eth0 missing or down: %+v", ifs)
			}
			addrs, err := eth0.Addrs()
			if err != nil {
				return err
			}
			for _, ad := range addrs {
				if strings.HasPrefix(ad.String(), ipA+"/") {
					return nil
				}
			}
			return fmt.Errorf("eth0 addresses %v lack %s", addrs, ipA)
		})
		if err != nil {
			t.Fatal(err)
		}
		// The thread that ran fn must not leak the namespace: this goroutine
		// and new ones still see the host namespace.
		if inode(t, "/proc/thread-self/ns/net") != inode(t, "/proc/self/ns/net") {
			t.Fatal("caller thread left in pod namespace")
		}
	})

	// A listener in pod a, reached from pod b and through the host port.
	var ln net.Listener
	if err := WithNetNS(a.NetNSPath, func() (err error) {
		ln, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "hello from a to %s\n", c.RemoteAddr())
			}()
		}
	}()
	readGreeting := func(c net.Conn) (string, error) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return bufio.NewReader(c).ReadString('\n')
	}

	t.Run("pod to pod", func(t *testing.T) {
		var got string
		err := WithNetNS(b.NetNSPath, func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(ipA, "8080"), 5*time.Second)
			if err != nil {
				return err
			}
			got, err = readGreeting(c)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, "hello from a") {
			t.Fatalf("got %q", got)
		}
		// Dialing pod a from the host network must also work (bridge gateway).
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ipA, "8080"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := readGreeting(c); err != nil || !strings.HasPrefix(got, "hello") {
			t.Fatalf("host to pod: %q %v", got, err)
		}
	})

	t.Run("host port", func(t *testing.T) {
		rules := natRules(t)
		if !strings.Contains(rules, a.ID) {
			t.Fatalf("no portmap rules for %s:\n%s", a.ID, rules)
		}
		if strings.Contains(rules, "--dport 80 ") {
			t.Fatalf("container-port-only mapping was passed to portmap:\n%s", rules)
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(testGateway, fmt.Sprint(hostPort)), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := readGreeting(c); err != nil || !strings.HasPrefix(got, "hello from a") {
			t.Fatalf("via host port: %q %v", got, err)
		}
	})

	t.Run("teardown", func(t *testing.T) {
		if err := m.Teardown(ctx, *a); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(natRules(t), a.ID) {
			t.Fatalf("portmap rules for %s left after teardown", a.ID)
		}
		if got := leasedIPs(t, dataDir); len(got) != 1 || got[0] == ipA {
			t.Fatalf("leases after teardown of a = %v", got)
		}
		if err := WithNetNS(a.NetNSPath, func() error {
			if _, err := net.InterfaceByName("eth0"); err == nil {
				return errors.New("eth0 still present")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := m.Teardown(ctx, *a); err != nil {
			t.Fatalf("second teardown: %v", err)
		}
		if entries, _ := os.ReadDir(filepath.Join(m.netnsDir, "..", "cni-cache", "results")); len(entries) != 1 {
			// b's eth0 attachment remains cached, a's is gone (lo is
			// brought up directly, not through a plugin).
			t.Fatalf("CNI cache entries: %v", entries)
		}
	})

	t.Run("teardown after netns removal", func(t *testing.T) {
		if err := m.RemoveNetNS(b.NetNSPath); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(b.NetNSPath); !os.IsNotExist(err) {
			t.Fatalf("pin still there: %v", err)
		}
		if err := m.RemoveNetNS(b.NetNSPath); err != nil {
			t.Fatalf("second RemoveNetNS: %v", err)
		}
		if err := m.Teardown(ctx, *b); err != nil {
			t.Fatal(err)
		}
		if got := leasedIPs(t, dataDir); len(got) != 0 {
			t.Fatalf("leases left: %v", got)
		}
	})

	t.Run("setup failure rolls back", func(t *testing.T) {
		// tuning fails on a sysctl that does not exist, after bridge and
		// host-local succeeded: Setup must undo those.
		bad := testConflist(dataDir, `,
    {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.crid_no_such_sysctl": "1"}}`)
		if err := writeFileAtomic(filepath.Join(confDir, "50-test.conflist"), []byte(bad)); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("crid-nettest-c-%d", os.Getpid())
		path, err := m.CreateNetNS(id)
		if err != nil {
			t.Fatal(err)
		}
		defer m.RemoveNetNS(path)
		p := Pod{ID: id, Name: "pod-c", Namespace: "default", UID: "uid-c", NetNSPath: path}
		defer m.Teardown(context.Background(), p)
		_, err = m.Setup(ctx, p)
		if err == nil || !strings.Contains(err.Error(), id) {
			t.Fatalf("Setup = %v, want an error naming the sandbox", err)
		}
		if got := leasedIPs(t, dataDir); len(got) != 0 {
			t.Fatalf("leases left after failed setup: %v", got)
		}
		if err := WithNetNS(path, func() error {
			if _, err := net.InterfaceByName("eth0"); err == nil {
				return errors.New("eth0 left after failed setup")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPinSurvivesManager checks that a pin outlives the Manager that made it
// (crid restarts) and is still removable by a new one.
func TestPinSurvivesManager(t *testing.T) {
	requireRoot(t)
	state := t.TempDir()
	cfg := config.Network{ConfDir: t.TempDir(), BinDirs: []string{"/usr/lib/cni"}}
	m1, err := New(cfg, state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountAll(t, m1.netnsDir) })
	path, err := m1.CreateNetNS("survivor")
	if err != nil {
		t.Fatal(err)
	}
	ino := inode(t, path)
	m1.Close()
	m2, err := New(cfg, state)
	if err != nil {
		t.Fatal(err)
	}
	if !IsNSMount(path) || inode(t, path) != ino {
		t.Fatal("pin lost across managers")
	}
	// Only one self-bind of the netns dir, however often New runs.
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if n := strings.Count(string(mi), " "+m2.netnsDir+" "); n != 1 {
		t.Fatalf("netns dir mounted %d times", n)
	}
	if !strings.Contains(mountInfoLine(string(mi), m2.netnsDir), "shared:") {
		t.Fatalf("netns dir is not a shared mount: %s", mountInfoLine(string(mi), m2.netnsDir))
	}
	if err := m2.RemoveNetNS(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("pin not removed: %v", err)
	}
	// Refuses to touch what is not a pin.
	notNS := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notNS, []byte("x"), 0o644)
	if err := m2.RemoveNetNS(notNS); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("RemoveNetNS(regular file) = %v", err)
	}
	if _, err := os.Stat(notNS); err != nil {
		t.Fatalf("non-pin file removed: %v", err)
	}
}

func mountInfoLine(mi, dir string) string {
	for _, l := range strings.Split(mi, "\n") {
		if strings.Contains(l, " "+dir+" ") {
			return l
		}
	}
	return ""
}
