package e2e

// Integration tests for issue 5: every pod-spec field about networking and
// isolation does what kubelet means, checked from inside the container.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// udpEchoEnv makes the test binary, bind-mounted into a container, act as a
// UDP echo server: busybox's nc in the test image has no UDP mode.
const udpEchoEnv = "CRID_E2E_UDP_ECHO_PORT"

func init() {
	port := os.Getenv(udpEchoEnv)
	if port == "" {
		return
	}
	conn, err := net.ListenPacket("udp4", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "udp echo:", err)
		os.Exit(1)
	}
	buf := make([]byte, 1500)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			os.Exit(1)
		}
		_, _ = conn.WriteTo(append([]byte("echo:"), buf[:n]...), addr)
	}
}

// run executes a shell script in the container and returns its result.
func run(t *testing.T, id, script string) (code int32, stdout, stderr string) {
	t.Helper()
	r := execSync(t, id, 20, "sh", "-c", script)
	return r.ExitCode, string(r.Stdout), string(r.Stderr)
}

// must executes a shell script that must succeed and returns its trimmed stdout.
func must(t *testing.T, id, script string) string {
	t.Helper()
	code, out, errOut := run(t, id, script)
	if code != 0 {
		t.Fatalf("%q in %s: exit %d\nstdout: %s\nstderr: %s", script, id[:12], code, out, errOut)
	}
	return strings.TrimSpace(out)
}

// fails executes a shell script that must fail.
func fails(t *testing.T, id, script string) {
	t.Helper()
	if code, out, errOut := run(t, id, script); code == 0 {
		t.Errorf("%q in %s succeeded, want failure\nstdout: %s\nstderr: %s", script, id[:12], out, errOut)
	}
}

func isoPod(t *testing.T, mutate func(*runtime.PodSandboxConfig)) (string, *runtime.PodSandboxConfig) {
	t.Helper()
	pull(t, busybox)
	pod := podConfig(t)
	if mutate != nil {
		mutate(pod)
	}
	return runPod(t, pod, ""), pod
}

func secCtx(cfg *runtime.ContainerConfig) *runtime.LinuxContainerSecurityContext {
	if cfg.Linux == nil {
		cfg.Linux = &runtime.LinuxContainerConfig{}
	}
	if cfg.Linux.SecurityContext == nil {
		cfg.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{}
	}
	return cfg.Linux.SecurityContext
}

func podSecCtx(pod *runtime.PodSandboxConfig) *runtime.LinuxSandboxSecurityContext {
	if pod.Linux == nil {
		pod.Linux = &runtime.LinuxPodSandboxConfig{}
	}
	if pod.Linux.SecurityContext == nil {
		pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{}
	}
	return pod.Linux.SecurityContext
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("%s: %v (code %v), want %v", what, err, status.Code(err), want)
	}
}

// tryCreate creates a container that is expected to be refused; if it is
// not, it is removed again.
func tryCreate(t *testing.T, podID string, pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) error {
	t.Helper()
	ctx := ctxT(t)
	cr, err := h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if err == nil {
		_, _ = h.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: cr.ContainerId})
	}
	return err
}

// tryRunPod runs a pod that is expected to be refused; if it is not, it is
// removed again.
func tryRunPod(t *testing.T, pod *runtime.PodSandboxConfig) error {
	t.Helper()
	ctx := ctxT(t)
	resp, err := h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err == nil {
		_, _ = h.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId})
	}
	return err
}

// procStatus returns the fields of a /proc/<pid>/status read in the container.
func procStatus(t *testing.T, id, pid string) map[string]string {
	t.Helper()
	out := must(t, id, "cat /proc/"+pid+"/status")
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func hexMask(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatalf("capability mask %q: %v", s, err)
	}
	return v
}

// hostCapEff is this (root) test process's effective set: what crid, run
// the same way, holds and can hand out.
func hostCapEff(t *testing.T) uint64 {
	t.Helper()
	for _, l := range readLines(t, "/proc/self/status") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return hexMask(t, strings.TrimSpace(v))
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return 0
}

const (
	capChown    = 0
	capNetAdmin = 12
	capSysAdmin = 21
)

func hasCap(mask uint64, bit int) bool { return mask&(1<<bit) != 0 }

// hostIPv4 is the address of the interface holding the default route, the
// address a client from outside would use for a hostPort.
func hostIPv4(t *testing.T) string {
	t.Helper()
	out, err := runOut("ip", "-4", "-o", "route", "show", "default")
	if err == nil {
		f := strings.Fields(out)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "dev" {
				continue
			}
			if ifc, err := net.InterfaceByName(f[i+1]); err == nil {
				addrs, _ := ifc.Addrs()
				for _, a := range addrs {
					if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
						return ipn.IP.String()
					}
				}
			}
		}
	}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Name == bridgeName {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	t.Fatal("no host IPv4 address")
	return ""
}

// freePort returns a port nothing on the host listens on for proto.
func freePort(t *testing.T, proto string) int32 {
	t.Helper()
	if proto == "udp" {
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return int32(c.LocalAddr().(*net.UDPAddr).Port)
	}
	l, err := net.Listen("tcp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func nsLink(t *testing.T, path string) string {
	t.Helper()
	l, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func sandboxPID(t *testing.T, podID string) int {
	t.Helper()
	ps, err := h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	return infoPID(t, "sandbox", ps.Info["info"])
}

// infoPID is the "pid" of a verbose status's info JSON.
func infoPID(t *testing.T, what, info string) int {
	t.Helper()
	var v struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(info), &v); err != nil || v.PID <= 0 {
		t.Fatalf("no pid in %s info (%v): %s", what, err, info)
	}
	return v.PID
}

// TestIsolationDNSHostnameHosts: the pod's resolv.conf, hostname and hosts
// file, and what a host-network pod sees instead.
func TestIsolationDNSHostnameHosts(t *testing.T) {
	t.Run("pod network", func(t *testing.T) {
		podID, pod := isoPod(t, func(p *runtime.PodSandboxConfig) {
			p.DnsConfig = &runtime.DNSConfig{
				Servers:  []string{"10.96.0.10", "10.96.0.11"},
				Searches: []string{"ns1.svc.cluster.local", "svc.cluster.local"},
				Options:  []string{"ndots:5", "timeout:2"},
			}
		})
		id := createStart(t, podID, pod, containerConfig("dns", "sleep", "1000"))
		rc := must(t, id, "cat /etc/resolv.conf")
		for _, want := range []string{"nameserver 10.96.0.10", "nameserver 10.96.0.11",
			"search ns1.svc.cluster.local svc.cluster.local", "options ndots:5 timeout:2"} {
			if !strings.Contains(rc, want) {
				t.Errorf("resolv.conf lacks %q:\n%s", want, rc)
			}
		}
		if hn := must(t, id, "hostname"); hn != pod.Hostname {
			t.Errorf("hostname = %q, want %q", hn, pod.Hostname)
		}
		if hn := must(t, id, "cat /etc/hostname"); hn != pod.Hostname {
			t.Errorf("/etc/hostname = %q, want %q", hn, pod.Hostname)
		}
		if env := must(t, id, "echo $HOSTNAME"); env != pod.Hostname {
			t.Errorf("$HOSTNAME = %q, want %q", env, pod.Hostname)
		}
		ps, err := h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
		if err != nil {
			t.Fatal(err)
		}
		ip := ps.Status.GetNetwork().GetIp()
		hosts := must(t, id, "cat /etc/hosts")
		found := false
		for _, l := range strings.Split(hosts, "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == ip && strings.Contains(l, pod.Hostname) {
				found = true
			}
		}
		if !found || !strings.Contains(hosts, "localhost") {
			t.Errorf("/etc/hosts lacks %q %q or localhost:\n%s", ip, pod.Hostname, hosts)
		}
		// The pod has its own network: only lo and eth0.
		links := must(t, id, "ls /sys/class/net")
		if strings.Join(strings.Fields(links), " ") != "eth0 lo" {
			t.Errorf("pod interfaces: %q", links)
		}
	})
	t.Run("host network", func(t *testing.T) {
		podID, pod := isoPod(t, func(p *runtime.PodSandboxConfig) {
			p.DnsConfig = nil
			podSecCtx(p).NamespaceOptions = &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}
		})
		cfg := containerConfig("hostnet", "sleep", "1000")
		secCtx(cfg).NamespaceOptions = &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}
		id := createStart(t, podID, pod, cfg)
		host, _ := os.Hostname()
		if hn := must(t, id, "hostname"); hn != host {
			t.Errorf("hostname = %q, want the host's %q", hn, host)
		}
		for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
			want, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := must(t, id, "cat "+f); got != strings.TrimSpace(string(want)) {
				t.Errorf("%s = %q, want the host's %q", f, got, want)
			}
		}
		if got, want := must(t, id, "readlink /proc/self/ns/net"), nsLink(t, "/proc/self/ns/net"); got != want {
			t.Errorf("net namespace %s, want the host's %s", got, want)
		}
		links := strings.Fields(must(t, id, "ls /sys/class/net"))
		ifs, _ := net.Interfaces()
		for _, ifc := range ifs {
			if ifc.Name == bridgeName || ifc.Flags&net.FlagLoopback != 0 || strings.HasPrefix(ifc.Name, "veth") {
				continue // bridges and veths come and go with other tests
			}
			found := false
			for _, l := range links {
				found = found || l == ifc.Name
			}
			if !found {
				t.Errorf("host interface %s not visible in host-network pod: %v", ifc.Name, links)
			}
		}
		if ps, err := h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID}); err != nil || ps.Status.GetNetwork().GetIp() != "" {
			t.Errorf("host-network pod status network = %v, %v (want no IP)", ps.GetStatus().GetNetwork(), err)
		}
	})
}

// TestIsolationPortMappings: hostPort TCP and UDP reach the pod through the
// host's address, and the rules go with the pod.
func TestIsolationPortMappings(t *testing.T) {
	hostIP := hostIPv4(t)
	tcpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pull(t, busybox)
	pod := podConfig(t)
	pod.PortMappings = []*runtime.PortMapping{
		{Protocol: runtime.Protocol_TCP, ContainerPort: 8080, HostPort: tcpPort},
		{Protocol: runtime.Protocol_UDP, ContainerPort: 5353, HostPort: udpPort},
		{Protocol: runtime.Protocol_TCP, ContainerPort: 9090}, // container port only
	}
	ctx := ctxT(t)
	resp, err := h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, h.logTail())
	}
	podID := resp.PodSandboxId
	removed := false
	t.Cleanup(func() {
		if !removed && h.conn != nil {
			_, _ = h.rt.RemovePodSandbox(ctxT(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
		}
	})
	createStart(t, podID, pod, containerConfig("web", "sh", "-c",
		"mkdir -p /www && echo crid-hostport > /www/index.html && exec httpd -f -p 8080 -h /www"))
	udp := containerConfig("udp", "/e2e.test")
	udp.Envs = []*runtime.KeyValue{{Key: udpEchoEnv, Value: []byte("5353")}}
	udp.Mounts = []*runtime.Mount{{HostPath: self, ContainerPath: "/e2e.test", Readonly: true}}
	createStart(t, podID, pod, udp)

	// TCP through the host's address.
	var body string
	client := http.Client{Timeout: 2 * time.Second}
	for i := 0; i < 50; i++ {
		r, err := client.Get(fmt.Sprintf("http://%s:%d/", hostIP, tcpPort))
		if err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.TrimSpace(body) != "crid-hostport" {
		t.Errorf("GET %s:%d = %q, want crid-hostport", hostIP, tcpPort, body)
	}
	// UDP through the host's address.
	var reply string
	for i := 0; i < 30 && reply == ""; i++ {
		c, err := net.Dial("udp4", net.JoinHostPort(hostIP, strconv.Itoa(int(udpPort))))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write([]byte("ping")); err == nil {
			b := make([]byte, 64)
			if n, err := c.Read(b); err == nil {
				reply = string(b[:n])
			}
		}
		c.Close()
	}
	if reply != "echo:ping" {
		t.Errorf("UDP %s:%d replied %q, want echo:ping", hostIP, udpPort, reply)
	}
	nat, _ := runOut("iptables-save", "-t", "nat")
	for _, p := range []int32{tcpPort, udpPort} {
		if !strings.Contains(nat, "--dport "+strconv.Itoa(int(p))) {
			t.Errorf("no DNAT rule for host port %d while the pod runs", p)
		}
	}
	if strings.Contains(nat, "--dport 9090") || strings.Contains(nat, "--dport 0 ") {
		t.Errorf("a container-port-only mapping made a host port rule:\n%s", nat)
	}
	if _, err := h.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	removed = true
	nat, _ = runOut("iptables-save", "-t", "nat")
	filter, _ := runOut("iptables-save", "-t", "filter")
	for _, p := range []int32{tcpPort, udpPort} {
		if strings.Contains(nat+filter, "--dport "+strconv.Itoa(int(p))) {
			t.Errorf("rule for host port %d left after the pod is gone", p)
		}
	}
	if strings.Contains(nat, podID) {
		t.Errorf("iptables rules naming pod %s left behind", podID)
	}
	if c, err := net.DialTimeout("tcp4", net.JoinHostPort(hostIP, strconv.Itoa(int(tcpPort))), time.Second); err == nil {
		c.Close()
		t.Errorf("host port %d still answers after the pod is gone", tcpPort)
	}
}

// TestIsolationSysctls: namespaced sysctls, safe and unsafe, are set in the
// pod; a node-wide one, or one for a namespace the pod shares with the
// host, is refused.
func TestIsolationSysctls(t *testing.T) {
	sysctls := map[string]string{
		"net.ipv4.ip_unprivileged_port_start": "80",
		"kernel.shm_rmid_forced":              "1",
		"net.core.somaxconn":                  "2048",
	}
	podID, pod := isoPod(t, func(p *runtime.PodSandboxConfig) { p.Linux.Sysctls = sysctls })
	id := createStart(t, podID, pod, containerConfig("sysctl", "sleep", "1000"))
	for k, v := range sysctls {
		if got := must(t, id, "cat /proc/sys/"+strings.ReplaceAll(k, ".", "/")); got != v {
			t.Errorf("%s = %q in the container, want %q", k, got, v)
		}
	}
	// Not leaked to the host.
	if b, _ := os.ReadFile("/proc/sys/net/core/somaxconn"); strings.TrimSpace(string(b)) == "2048" {
		t.Errorf("net.core.somaxconn changed on the host")
	}
	for name, mutate := range map[string]func(*runtime.PodSandboxConfig){
		"vm.swappiness (not namespaced)": func(p *runtime.PodSandboxConfig) { p.Linux.Sysctls = map[string]string{"vm.swappiness": "10"} },
		"kernel.panic (not namespaced)":  func(p *runtime.PodSandboxConfig) { p.Linux.Sysctls = map[string]string{"kernel.panic": "10"} },
		"net.* with host network": func(p *runtime.PodSandboxConfig) {
			p.Linux.Sysctls = map[string]string{"net.core.somaxconn": "2048"}
			podSecCtx(p).NamespaceOptions = &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}
		},
		"kernel.shm_rmid_forced with host IPC": func(p *runtime.PodSandboxConfig) {
			p.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
			podSecCtx(p).NamespaceOptions = &runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE}
		},
	} {
		bad := podConfig(t)
		bad.Metadata.Name = "bad-sysctl-" + randHex(3)
		mutate(bad)
		wantCode(t, "RunPodSandbox with "+name, tryRunPod(t, bad), codes.InvalidArgument)
	}
	if b, _ := os.ReadFile("/proc/sys/vm/swappiness"); strings.TrimSpace(string(b)) == "10" {
		t.Errorf("vm.swappiness was changed on the host")
	}
}

// TestIsolationNamespaces: pid, ipc and network namespace modes.
func TestIsolationNamespaces(t *testing.T) {
	withNS := func(cfg *runtime.ContainerConfig, ns *runtime.NamespaceOption) *runtime.ContainerConfig {
		secCtx(cfg).NamespaceOptions = ns
		return cfg
	}
	t.Run("pid POD", func(t *testing.T) {
		podID, pod := isoPod(t, nil)
		a := createStart(t, podID, pod, withNS(containerConfig("a", "sleep", "1001"), &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}))
		b := createStart(t, podID, pod, withNS(containerConfig("b", "sleep", "1002"), &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}))
		ps := must(t, b, "ps -o pid,args")
		if !strings.Contains(ps, "pause") || !strings.Contains(ps, "sleep 1001") {
			t.Errorf("pid POD: ps lacks the pause or the sibling:\n%s", ps)
		}
		if one := must(t, a, "cat /proc/1/cmdline | tr '\\0' ' '"); !strings.Contains(one, "pause") {
			t.Errorf("pid POD: pid 1 is %q, want the pause", one)
		}
	})
	t.Run("pid CONTAINER and TARGET", func(t *testing.T) {
		podID, pod := isoPod(t, nil)
		a := createStart(t, podID, pod, withNS(containerConfig("a", "sleep", "1003"), &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}))
		if one := must(t, a, "cat /proc/1/cmdline | tr '\\0' ' '"); strings.TrimSpace(one) != "sleep 1003" {
			t.Errorf("pid CONTAINER: pid 1 is %q, want the container's own process", one)
		}
		if ps := must(t, a, "ps -o pid,args"); strings.Contains(ps, "pause") {
			t.Errorf("pid CONTAINER sees the pause:\n%s", ps)
		}
		b := createStart(t, podID, pod, withNS(containerConfig("b", "sleep", "1004"), &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: a}))
		if one := must(t, b, "cat /proc/1/cmdline | tr '\\0' ' '"); strings.TrimSpace(one) != "sleep 1003" {
			t.Errorf("pid TARGET: pid 1 is %q, want the target's process", one)
		}
		if ps := must(t, b, "ps -o pid,args"); !strings.Contains(ps, "sleep 1004") || strings.Contains(ps, "pause") {
			t.Errorf("pid TARGET: ps:\n%s", ps)
		}
		if ps := must(t, a, "ps -o pid,args"); !strings.Contains(ps, "sleep 1004") {
			t.Errorf("target does not see the container that joined it:\n%s", ps)
		}

		// Invalid combinations.
		err := tryCreate(t, podID, pod, withNS(containerConfig("no-target", "true"), &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET}))
		wantCode(t, "pid TARGET without target_id", err, codes.InvalidArgument)
		err = tryCreate(t, podID, pod, withNS(containerConfig("bad-target", "true"), &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: "0123456789abcdef"}))
		if status.Code(err) != codes.NotFound && status.Code(err) != codes.InvalidArgument {
			t.Errorf("pid TARGET with an unknown target: %v, want NotFound or InvalidArgument", err)
		}
		otherID, other := func() (string, *runtime.PodSandboxConfig) {
			p := podConfig(t)
			p.Metadata.Name += "-other"
			return runPod(t, p, ""), p
		}()
		err = tryCreate(t, otherID, other, withNS(containerConfig("cross-pod", "true"), &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: a}))
		wantCode(t, "pid TARGET naming a container of another pod", err, codes.InvalidArgument)
	})
	t.Run("pid NODE", func(t *testing.T) {
		podID, pod := isoPod(t, func(p *runtime.PodSandboxConfig) {
			podSecCtx(p).NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE}
		})
		id := createStart(t, podID, pod, withNS(containerConfig("hostpid", "sleep", "1000"), &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE}))
		self := strconv.Itoa(os.Getpid())
		if got := must(t, id, "tr '\\0' ' ' < /proc/"+self+"/cmdline"); !strings.Contains(got, filepath.Base(os.Args[0])) {
			t.Errorf("pid NODE: /proc/%s/cmdline = %q, want this test process", self, got)
		}
		if got, want := must(t, id, "readlink /proc/self/ns/pid"), nsLink(t, "/proc/self/ns/pid"); got != want {
			t.Errorf("pid NODE: namespace %s, want the host's %s", got, want)
		}
	})
	t.Run("ipc POD", func(t *testing.T) {
		podID, pod := isoPod(t, nil)
		a := createStart(t, podID, pod, containerConfig("a", "sleep", "1000"))
		b := createStart(t, podID, pod, containerConfig("b", "sleep", "1000"))
		pause := sandboxPID(t, podID)
		want := nsLink(t, fmt.Sprintf("/proc/%d/ns/ipc", pause))
		for _, id := range []string{a, b} {
			if got := must(t, id, "readlink /proc/self/ns/ipc"); got != want {
				t.Errorf("ipc POD: %s in %s, want the pause's %s", got, id[:12], want)
			}
		}
		if want == nsLink(t, "/proc/self/ns/ipc") {
			t.Errorf("pod ipc namespace is the host's")
		}
		must(t, a, "echo shared-by-a > /dev/shm/crid-iso")
		if got := must(t, b, "cat /dev/shm/crid-iso"); got != "shared-by-a" {
			t.Errorf("/dev/shm not shared in the pod: %q", got)
		}
		if _, err := os.Stat("/dev/shm/crid-iso"); err == nil {
			t.Errorf("pod /dev/shm is the host's")
		}
		must(t, a, "ipcs -m")
	})
	t.Run("ipc and network NODE", func(t *testing.T) {
		podID, pod := isoPod(t, func(p *runtime.PodSandboxConfig) {
			p.DnsConfig = nil
			podSecCtx(p).NamespaceOptions = &runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE, Network: runtime.NamespaceMode_NODE}
		})
		id := createStart(t, podID, pod, withNS(containerConfig("hostipc", "sleep", "1000"),
			&runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE, Network: runtime.NamespaceMode_NODE}))
		for _, ns := range []string{"ipc", "net", "uts"} {
			if got, want := must(t, id, "readlink /proc/self/ns/"+ns), nsLink(t, "/proc/self/ns/"+ns); got != want {
				t.Errorf("%s NODE: namespace %s, want the host's %s", ns, got, want)
			}
		}
		name := "crid-iso-" + randHex(4)
		if err := os.WriteFile("/dev/shm/"+name, []byte("host"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove("/dev/shm/" + name)
		if got := must(t, id, "cat /dev/shm/"+name); got != "host" {
			t.Errorf("host IPC pod does not see the host's /dev/shm: %q", got)
		}
		hostIpcs, err := runOut("ipcs", "-m")
		if err != nil {
			t.Fatal(err)
		}
		if got := must(t, id, "ipcs -m"); got != strings.TrimSpace(hostIpcs) {
			t.Errorf("ipcs -m in a host IPC pod:\n%s\nhost:\n%s", got, hostIpcs)
		}
	})
}

// TestIsolationUsers: run_as_user/username/group and supplemental groups.
func TestIsolationUsers(t *testing.T) {
	pull(t, images.TestImageUserUIDGroup)
	pull(t, images.TestImagePredefinedGroup)
	podID, pod := isoPod(t, nil)
	start := func(name, image string, sc *runtime.LinuxContainerSecurityContext) string {
		cfg := containerConfig(name, "sleep", "1000")
		if image != "" {
			cfg.Image = &runtime.ImageSpec{Image: image}
		}
		if sc == nil {
			sc = &runtime.LinuxContainerSecurityContext{}
		}
		// Its own pid namespace, so /proc/1 is the container's process.
		sc.NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
		cfg.Linux = &runtime.LinuxContainerConfig{SecurityContext: sc}
		return createStart(t, podID, pod, cfg)
	}
	cases := []struct {
		name, image string
		sc          *runtime.LinuxContainerSecurityContext
		id, groups  string
	}{
		{"image-user", images.TestImageUserUIDGroup, nil, "1003 1004", "1004"},
		{"run-as-user", "", &runtime.LinuxContainerSecurityContext{RunAsUser: &runtime.Int64Value{Value: 1234}}, "1234 0", "0"},
		{"run-as-user-group", "", &runtime.LinuxContainerSecurityContext{RunAsUser: &runtime.Int64Value{Value: 1234}, RunAsGroup: &runtime.Int64Value{Value: 5678}}, "1234 5678", "5678"},
		{"run-as-username", "", &runtime.LinuxContainerSecurityContext{RunAsUsername: "nobody"}, "65534 65534", "65534"},
		{"run-as-user-overrides-image", images.TestImageUserUIDGroup, &runtime.LinuxContainerSecurityContext{RunAsUser: &runtime.Int64Value{Value: 33}}, "33 33", "33"},
		{"request-groups", "", &runtime.LinuxContainerSecurityContext{RunAsUser: &runtime.Int64Value{Value: 1000}, SupplementalGroups: []int64{2001, 2002}}, "1000 0", "0 2001 2002"},
		{"image-groups-merge", images.TestImagePredefinedGroup, &runtime.LinuxContainerSecurityContext{SupplementalGroups: []int64{2001}}, "1000 1000", "1000 2001 50000"},
		{"image-groups-strict", images.TestImagePredefinedGroup, &runtime.LinuxContainerSecurityContext{SupplementalGroups: []int64{2001},
			SupplementalGroupsPolicy: runtime.SupplementalGroupsPolicy_Strict}, "1000 1000", "1000 2001"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := start(c.name, c.image, c.sc)
			if got := must(t, id, "echo $(id -u) $(id -g)"); got != c.id {
				t.Errorf("uid gid = %q, want %q", got, c.id)
			}
			got := strings.Fields(must(t, id, "id -G | tr ' ' '\\n' | sort -n"))
			if strings.Join(got, " ") != c.groups {
				t.Errorf("groups = %v, want %q (id: %s)", got, c.groups, must(t, id, "id"))
			}
			// The container's own process, not only exec, runs so.
			st := procStatus(t, id, "1")
			uid, gid := strings.Fields(c.id)[0], strings.Fields(c.id)[1]
			if f := strings.Fields(st["Uid"]); len(f) == 0 || f[0] != uid {
				t.Errorf("main process Uid %q, want %s", st["Uid"], uid)
			}
			if f := strings.Fields(st["Gid"]); len(f) == 0 || f[0] != gid {
				t.Errorf("main process Gid %q, want %s", st["Gid"], gid)
			}
			if g := strings.Join(strings.Fields(st["Groups"]), " "); g != c.groups {
				t.Errorf("main process Groups %q, want %q", g, c.groups)
			}
		})
	}
	err := tryCreate(t, podID, pod, func() *runtime.ContainerConfig {
		cfg := containerConfig("group-only", "true")
		secCtx(cfg).RunAsGroup = &runtime.Int64Value{Value: 1}
		return cfg
	}())
	wantCode(t, "run_as_group without a user", err, codes.InvalidArgument)
	err = tryCreate(t, podID, pod, func() *runtime.ContainerConfig {
		cfg := containerConfig("unknown-user", "true")
		secCtx(cfg).RunAsUsername = "no-such-user"
		return cfg
	}())
	wantCode(t, "unknown run_as_username", err, codes.InvalidArgument)
}

// TestIsolationPrivileges: privileged, capabilities, no_new_privs,
// read-only rootfs, masked and read-only paths.
func TestIsolationPrivileges(t *testing.T) {
	pidContainer := &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
	hostCaps := hostCapEff(t)
	t.Run("privileged", func(t *testing.T) {
		podID, pod := isoPod(t, func(p *runtime.PodSandboxConfig) { podSecCtx(p).Privileged = true })
		cfg := containerConfig("priv", "sleep", "1000")
		secCtx(cfg).Privileged = true
		secCtx(cfg).NamespaceOptions = pidContainer
		secCtx(cfg).MaskedPaths = []string{"/proc/timer_list"} // ignored when privileged
		id := createStart(t, podID, pod, cfg)
		st := procStatus(t, id, "1")
		if got := hexMask(t, st["CapEff"]); got != hostCaps {
			t.Errorf("privileged CapEff %x, want crid's %x", got, hostCaps)
		}
		if st["Seccomp"] != "0" {
			t.Errorf("privileged Seccomp %q, want 0", st["Seccomp"])
		}
		if m := must(t, id, "grep ' /sys ' /proc/self/mountinfo"); !strings.Contains(m, " rw,") {
			t.Errorf("/sys not writable in a privileged container: %s", m)
		}
		if m := must(t, id, "grep ' /sys/fs/cgroup ' /proc/self/mountinfo || true"); strings.Contains(m, " ro,") {
			t.Errorf("/sys/fs/cgroup read-only in a privileged container: %s", m)
		}
		if got := must(t, id, "test -c /proc/timer_list && echo masked || echo open"); got != "open" {
			t.Errorf("/proc/timer_list masked in a privileged container")
		}
		// Host devices appear, and are usable per the device cgroup.
		var hostDev string
		for _, d := range []string{"/dev/kmsg", "/dev/mem", "/dev/loop-control", "/dev/vda", "/dev/sda"} {
			if fi, err := os.Stat(d); err == nil && fi.Mode()&os.ModeDevice != 0 {
				hostDev = d
				break
			}
		}
		if hostDev == "" {
			t.Fatal("no host device to look for")
		}
		must(t, id, "test -c "+hostDev+" || test -b "+hostDev)
		// Unprivileged containers in the same pod do not get them.
		plain := createStart(t, podID, pod, containerConfig("plain", "sleep", "1000"))
		fails(t, plain, "test -e "+hostDev)
		// A privileged container in an unprivileged pod is refused.
		pod2ID, pod2 := func() (string, *runtime.PodSandboxConfig) {
			p := podConfig(t)
			p.Metadata.Name += "-unpriv"
			return runPod(t, p, ""), p
		}()
		err := tryCreate(t, pod2ID, pod2, cfg)
		wantCode(t, "privileged container in an unprivileged pod", err, codes.InvalidArgument)
	})
	t.Run("capabilities", func(t *testing.T) {
		podID, pod := isoPod(t, nil)
		caps := func(name string, c *runtime.Capability) uint64 {
			cfg := containerConfig(name, "sleep", "1000")
			secCtx(cfg).Capabilities = c
			secCtx(cfg).NamespaceOptions = pidContainer
			id := createStart(t, podID, pod, cfg)
			st := procStatus(t, id, "1")
			if st["CapBnd"] != st["CapEff"] {
				t.Errorf("%s: bounding %s != effective %s", name, st["CapBnd"], st["CapEff"])
			}
			return hexMask(t, st["CapEff"])
		}
		def := caps("default", nil)
		if !hasCap(def, capChown) || hasCap(def, capNetAdmin) || hasCap(def, capSysAdmin) {
			t.Errorf("default caps %x", def)
		}
		if got := caps("add-net-admin", &runtime.Capability{AddCapabilities: []string{"NET_ADMIN"}}); got != def|1<<capNetAdmin {
			t.Errorf("add NET_ADMIN: %x, want %x", got, def|1<<capNetAdmin)
		}
		if got := caps("drop-chown", &runtime.Capability{DropCapabilities: []string{"CAP_CHOWN"}}); got != def&^(1<<capChown) {
			t.Errorf("drop CHOWN: %x, want %x", got, def&^(1<<capChown))
		}
		if got := caps("drop-all", &runtime.Capability{DropCapabilities: []string{"ALL"}}); got != 0 {
			t.Errorf("drop ALL: %x, want 0", got)
		}
		if got := caps("add-all", &runtime.Capability{AddCapabilities: []string{"ALL"}}); got != hostCaps {
			t.Errorf("add ALL: %x, want %x", got, hostCaps)
		}
		if got := caps("drop-all-add-chown", &runtime.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"CHOWN"}}); got != 1<<capChown {
			t.Errorf("drop ALL add CHOWN: %x, want 1", got)
		}
		if got := caps("add-all-drop-chown", &runtime.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"CHOWN"}}); got != hostCaps&^(1<<capChown) {
			t.Errorf("add ALL drop CHOWN: %x, want %x", got, hostCaps&^(1<<capChown))
		}
		// Dropping CHOWN is felt.
		cfg := containerConfig("nochown", "sleep", "1000")
		secCtx(cfg).Capabilities = &runtime.Capability{DropCapabilities: []string{"ALL"}}
		id := createStart(t, podID, pod, cfg)
		fails(t, id, "touch /tmp/f && chown 1:1 /tmp/f")
		cfg = containerConfig("badcap", "true")
		secCtx(cfg).Capabilities = &runtime.Capability{AddCapabilities: []string{"NOT_A_CAP"}}
		wantCode(t, "unknown capability", tryCreate(t, podID, pod, cfg), codes.InvalidArgument)
	})
	t.Run("no_new_privs and read-only rootfs", func(t *testing.T) {
		podID, pod := isoPod(t, nil)
		cfg := containerConfig("nnp", "sleep", "1000")
		secCtx(cfg).NoNewPrivs = true
		secCtx(cfg).ReadonlyRootfs = true
		secCtx(cfg).NamespaceOptions = pidContainer
		id := createStart(t, podID, pod, cfg)
		if st := procStatus(t, id, "1"); st["NoNewPrivs"] != "1" {
			t.Errorf("NoNewPrivs %q, want 1", st["NoNewPrivs"])
		}
		fails(t, id, "touch /rootfs-write")
		fails(t, id, "echo x > /etc/hosts")
		must(t, id, "touch /dev/shm/ok") // tmpfs mounts stay writable
		cfg = containerConfig("nonnp", "sleep", "1000")
		secCtx(cfg).NamespaceOptions = pidContainer
		id = createStart(t, podID, pod, cfg)
		if st := procStatus(t, id, "1"); st["NoNewPrivs"] != "0" {
			t.Errorf("NoNewPrivs %q without no_new_privs, want 0", st["NoNewPrivs"])
		}
		must(t, id, "touch /rootfs-write")
	})
	t.Run("masked and read-only paths", func(t *testing.T) {
		podID, pod := isoPod(t, nil)
		cfg := containerConfig("masked", "sleep", "1000")
		// What kubelet sends for procMount Default.
		secCtx(cfg).MaskedPaths = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/acpi"}
		secCtx(cfg).ReadonlyPaths = []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/bus"}
		id := createStart(t, podID, pod, cfg)
		if code, out, _ := run(t, id, "test -c /proc/timer_list && wc -c < /proc/timer_list"); code != 0 || strings.TrimSpace(out) != "0" {
			_, ls, _ := run(t, id, "ls -l /proc/timer_list; grep /proc /proc/self/mountinfo")
			t.Errorf("masked /proc/timer_list: exit %d, reads %q bytes:\n%s", code, out, ls)
		}
		if got := must(t, id, "ls -A /sys/firmware | wc -l"); got != "0" {
			t.Errorf("masked /sys/firmware lists %s entries", got)
		}
		if m := must(t, id, "grep ' /proc/sys ' /proc/self/mountinfo"); !strings.Contains(m, " ro,") {
			t.Errorf("/proc/sys not read-only: %s", m)
		}
		fails(t, id, "echo 1 > /proc/sys/net/ipv4/ip_forward")
		// procMount Unmasked: kubelet sends no paths at all.
		cfg = containerConfig("unmasked", "sleep", "1000")
		secCtx(cfg).MaskedPaths, secCtx(cfg).ReadonlyPaths = []string{}, []string{}
		id = createStart(t, podID, pod, cfg)
		if got := must(t, id, "test -c /proc/timer_list && echo masked || echo open"); got != "open" {
			t.Errorf("Unmasked: /proc/timer_list is masked")
		}
		if m := must(t, id, "grep ' /proc/sys ' /proc/self/mountinfo || echo none"); m != "none" {
			t.Errorf("Unmasked: /proc/sys remounted: %s", m)
		}
	})
}

// TestIsolationSeccompAppArmor: seccomp RuntimeDefault, Unconfined and
// Localhost profiles; AppArmor on a host without it.
func TestIsolationSeccompAppArmor(t *testing.T) {
	podID, pod := isoPod(t, nil)
	start := func(name string, sp *runtime.SecurityProfile) string {
		cfg := containerConfig(name, "sleep", "1000")
		secCtx(cfg).Seccomp = sp
		secCtx(cfg).NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
		return createStart(t, podID, pod, cfg)
	}
	def := start("default", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault})
	if st := procStatus(t, def, "1"); st["Seccomp"] != "2" {
		t.Errorf("RuntimeDefault: Seccomp %q, want 2 (filter)", st["Seccomp"])
	}
	// The default profile allows unshare only with CAP_SYS_ADMIN.
	fails(t, def, "unshare -U true")
	must(t, def, "mkdir /tmp/allowed")

	unconf := start("unconfined", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined})
	if st := procStatus(t, unconf, "1"); st["Seccomp"] != "0" {
		t.Errorf("Unconfined: Seccomp %q, want 0", st["Seccomp"])
	}
	must(t, unconf, "unshare -U true")

	dir := t.TempDir()
	profile := filepath.Join(dir, "deny-mkdir.json")
	if err := os.WriteFile(profile, []byte(`{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
}`), 0o644); err != nil {
		t.Fatal(err)
	}
	local := start("localhost", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: profile})
	if st := procStatus(t, local, "1"); st["Seccomp"] != "2" {
		t.Errorf("Localhost: Seccomp %q, want 2", st["Seccomp"])
	}
	fails(t, local, "mkdir /tmp/denied")
	must(t, local, "touch /tmp/still-allowed")

	cfg := containerConfig("missing-profile", "true")
	secCtx(cfg).Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: filepath.Join(dir, "nope.json")}
	wantCode(t, "missing Localhost seccomp profile", tryCreate(t, podID, pod, cfg), codes.InvalidArgument)
	cfg = containerConfig("no-ref", "true")
	secCtx(cfg).Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost}
	wantCode(t, "Localhost seccomp profile without a ref", tryCreate(t, podID, pod, cfg), codes.InvalidArgument)

	// AppArmor: this kernel has none, so a named profile is ignored with a
	// log line instead of failing the container.
	if _, err := os.Stat("/sys/kernel/security/apparmor"); err == nil {
		t.Logf("host has AppArmor: the ignore path is not exercised")
		return
	}
	cfg = containerConfig("apparmor", "sleep", "1000")
	secCtx(cfg).Apparmor = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "crid-e2e-not-loaded"}
	id := createStart(t, podID, pod, cfg)
	must(t, id, "true")
	if !logHas("apparmor", "ignor") {
		t.Errorf("no log line about the ignored AppArmor profile")
	}
}

// logHas reports whether one line of crid's log contains all of words.
func logHas(words ...string) bool {
	b, _ := os.ReadFile(h.logPath)
	for _, l := range strings.Split(strings.ToLower(string(b)), "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, strings.ToLower(w))
		}
		if all {
			return true
		}
	}
	return false
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// TestIsolationMounts: bind mounts rw/ro, propagation, recursive read-only
// and host paths that are symlinks.
func TestIsolationMounts(t *testing.T) {
	base, err := os.MkdirTemp("", "crid-iso-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Deepest first: everything this test mounted under base.
		for i := 0; i < 3; i++ {
			out, _ := os.ReadFile("/proc/self/mountinfo")
			var mps []string
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				if f := strings.Fields(sc.Text()); len(f) > 4 && strings.HasPrefix(f[4], base) {
					mps = append(mps, f[4])
				}
			}
			for j := len(mps) - 1; j >= 0; j-- {
				_ = syscall.Unmount(mps[j], syscall.MNT_DETACH)
			}
		}
		_ = os.RemoveAll(base)
	})
	mk := func(p string) string {
		p = filepath.Join(base, p)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("rw ro symlink rro", func(t *testing.T) {
		rw, ro, real := mk("rw"), mk("ro"), mk("real")
		if err := os.WriteFile(filepath.Join(real, "file"), []byte("through-link"), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(base, "link")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		rroDir := mk("rro")
		sub := mk("rro/sub")
		mustRun(t, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", sub)

		st, err := h.rt.Status(ctxT(t), &runtime.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		rroSupported := false
		for _, hd := range st.RuntimeHandlers {
			if hd.Name == "runc" || hd.Name == "" {
				rroSupported = rroSupported || hd.GetFeatures().GetRecursiveReadOnlyMounts()
			}
		}
		if !rroSupported {
			t.Errorf("runc handler does not report recursive read-only mounts (runc %s)", runcVersion())
		}

		podID, pod := isoPod(t, nil)
		cfg := containerConfig("binds", "sleep", "1000")
		cfg.Mounts = []*runtime.Mount{
			{HostPath: rw, ContainerPath: "/mnt/rw"},
			{HostPath: ro, ContainerPath: "/mnt/ro", Readonly: true},
			{HostPath: link, ContainerPath: "/mnt/link", Readonly: true},
			{HostPath: rroDir, ContainerPath: "/mnt/rro", Readonly: true, RecursiveReadOnly: true},
			{HostPath: rroDir, ContainerPath: "/mnt/nonrro", Readonly: true},
		}
		id := createStart(t, podID, pod, cfg)
		must(t, id, "echo from-container > /mnt/rw/out")
		if b, err := os.ReadFile(filepath.Join(rw, "out")); err != nil || string(b) != "from-container\n" {
			t.Errorf("rw bind: host reads %q, %v", b, err)
		}
		fails(t, id, "touch /mnt/ro/x")
		if got := must(t, id, "cat /mnt/link/file"); got != "through-link" {
			t.Errorf("symlinked host path: %q", got)
		}
		fails(t, id, "touch /mnt/rro/x")
		fails(t, id, "touch /mnt/rro/sub/x")
		// A plain read-only bind leaves submounts writable; that is what rro is for.
		fails(t, id, "touch /mnt/nonrro/x")
		must(t, id, "touch /mnt/nonrro/sub/x")

		cfg = containerConfig("rro-not-ro", "true")
		cfg.Mounts = []*runtime.Mount{{HostPath: rroDir, ContainerPath: "/mnt/rro", RecursiveReadOnly: true}}
		wantCode(t, "recursive_read_only without readonly", tryCreate(t, podID, pod, cfg), codes.InvalidArgument)
	})

	t.Run("propagation", func(t *testing.T) {
		shared := mk("shared")
		// A test dir made a shared mount point of its own.
		mustRun(t, "mount", "--bind", shared, shared)
		mustRun(t, "mount", "--make-shared", shared)
		private := mk("private")
		// And one made private: where / is shared (systemd makes it so),
		// a plain directory is on a mount that propagates.
		mustRun(t, "mount", "--bind", private, private)
		mustRun(t, "mount", "--make-private", private)

		podID, pod := isoPod(t, func(p *runtime.PodSandboxConfig) { podSecCtx(p).Privileged = true })
		cfg := containerConfig("prop", "sleep", "1000")
		secCtx(cfg).Privileged = true
		cfg.Mounts = []*runtime.Mount{
			{HostPath: shared, ContainerPath: "/mnt/slave", Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
			{HostPath: shared, ContainerPath: "/mnt/shared", Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL},
			{HostPath: shared, ContainerPath: "/mnt/private"},
		}
		id := createStart(t, podID, pod, cfg)
		// Host to container.
		fromHost := mk("shared/from-host")
		mustRun(t, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", fromHost)
		if err := os.WriteFile(filepath.Join(fromHost, "f"), []byte("host"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := must(t, id, "cat /mnt/slave/from-host/f"); got != "host" {
			t.Errorf("rslave: container reads %q", got)
		}
		if got := must(t, id, "cat /mnt/private/from-host/f 2>/dev/null || echo none"); got != "none" {
			t.Errorf("private mount received a host mount: %q", got)
		}
		// Container to host.
		must(t, id, "mkdir -p /mnt/shared/from-ctr && mount -t tmpfs -o size=1m tmpfs /mnt/shared/from-ctr && echo ctr > /mnt/shared/from-ctr/f")
		if b, err := os.ReadFile(filepath.Join(shared, "from-ctr", "f")); err != nil || string(b) != "ctr\n" {
			t.Errorf("rshared: host reads %q, %v", b, err)
		}
		// A slave mount does not send mounts back.
		must(t, id, "mkdir -p /mnt/slave/from-slave && mount -t tmpfs -o size=1m tmpfs /mnt/slave/from-slave && echo s > /mnt/slave/from-slave/f")
		if _, err := os.Stat(filepath.Join(shared, "from-slave", "f")); err == nil {
			t.Errorf("rslave mount propagated back to the host")
		}

		// Propagation needs a host mount that propagates.
		cfg = containerConfig("prop-private", "true")
		secCtx(cfg).Privileged = true
		cfg.Mounts = []*runtime.Mount{{HostPath: private, ContainerPath: "/mnt/p", Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
		if err := tryCreate(t, podID, pod, cfg); err == nil {
			t.Errorf("rshared on a private host mount accepted")
		}
	})
}

func runcVersion() string {
	out, _ := runOut("runc", "--version")
	return strings.SplitN(out, "\n", 2)[0]
}

// cgroupValue reads a cgroup file of the container from inside it, v1 or v2.
func cgroupValue(t *testing.T, id, v1, v2 string) string {
	t.Helper()
	return must(t, id, fmt.Sprintf("if [ -f /sys/fs/cgroup/cgroup.controllers ]; then cat /sys/fs/cgroup/%s; else cat /sys/fs/cgroup/%s; fi", v2, v1))
}

// TestIsolationResources: cgroup limits, live updates kept across a crid
// restart, oom_score_adj clamping and OOM kills.
func TestIsolationResources(t *testing.T) {
	podID, pod := isoPod(t, nil)
	const mib = 1 << 20
	cfg := containerConfig("limited", "sleep", "1000")
	cfg.Linux = &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 * mib, OomScoreAdj: 500,
	}}
	id := createStart(t, podID, pod, cfg)
	v2 := must(t, id, "test -f /sys/fs/cgroup/cgroup.controllers && echo v2 || echo v1") == "v2"
	if v2 {
		if got := cgroupValue(t, id, "", "cpu.max"); got != "50000 100000" {
			t.Errorf("cpu.max = %q", got)
		}
		if got := cgroupValue(t, id, "", "memory.max"); got != strconv.Itoa(64*mib) {
			t.Errorf("memory.max = %q", got)
		}
	} else {
		for file, want := range map[string]string{
			"cpu/cpu.shares": "512", "cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000",
			"memory/memory.limit_in_bytes": strconv.Itoa(64 * mib),
		} {
			if got := cgroupValue(t, id, file, ""); got != want {
				t.Errorf("%s = %q, want %q", file, got, want)
			}
		}
	}
	if got := must(t, id, "cat /proc/1/oom_score_adj 2>/dev/null; cat /proc/self/oom_score_adj"); !strings.HasSuffix(got, "500") {
		t.Errorf("oom_score_adj = %q, want 500", got)
	}
	// The cgroup is where the status says.
	ctx := ctxT(t)
	vst, err := h.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(vst.Info["info"], "/crid-e2e/") {
		t.Errorf("verbose info lacks the cgroups path under the pod's parent: %s", vst.Info["info"])
	}

	// Live update, reported, and kept across a crash of crid.
	upd := &runtime.LinuxContainerResources{CpuShares: 256, CpuQuota: 20000, CpuPeriod: 100000, MemoryLimitInBytes: 96 * mib, OomScoreAdj: 500}
	if _, err := h.rt.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: id, Linux: upd}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if v2 {
		if got := cgroupValue(t, id, "", "memory.max"); got != strconv.Itoa(96*mib) {
			t.Errorf("after update memory.max = %q", got)
		}
	} else {
		if got := cgroupValue(t, id, "memory/memory.limit_in_bytes", ""); got != strconv.Itoa(96*mib) {
			t.Errorf("after update memory.limit_in_bytes = %q", got)
		}
		if got := cgroupValue(t, id, "cpu/cpu.shares", ""); got != "256" {
			t.Errorf("after update cpu.shares = %q", got)
		}
	}
	check := func(when string) {
		r := containerStatus(t, id).GetResources().GetLinux()
		if r.GetMemoryLimitInBytes() != 96*mib || r.GetCpuShares() != 256 || r.GetCpuQuota() != 20000 {
			t.Errorf("%s: status resources = %v", when, r)
		}
	}
	check("after update")
	h.stop(syscall.SIGKILL)
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	check("after a crid restart")
	if st := containerStatus(t, id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container %v after restart", st.State)
	}

	// oom_score_adj below crid's own is clamped, not refused.
	own, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", h.crid.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	cfg = containerConfig("oom-clamped", "sleep", "1000")
	cfg.Linux = &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{OomScoreAdj: -999}}
	cid := createStart(t, podID, pod, cfg)
	if got := must(t, cid, "cat /proc/self/oom_score_adj"); got != strings.TrimSpace(string(own)) && got != "-999" {
		t.Errorf("oom_score_adj -999 gave %q, want crid's own %s (or -999 with CAP_SYS_RESOURCE)", got, own)
	}

	// A memory hog is OOM-killed and reported so.
	cfg = containerConfig("hog", "tail", "/dev/zero")
	cfg.Linux = &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 20 * mib}}
	hog := createStart(t, podID, pod, cfg)
	st := waitExited(t, hog, 60*time.Second)
	if st.ExitCode != 137 || st.Reason != "OOMKilled" {
		t.Errorf("memory hog: exit %d reason %q, want 137 OOMKilled", st.ExitCode, st.Reason)
	}

	// A child is OOM-killed, the init goes on and exits 3: that exit is
	// an error, not an OOM kill, though the cgroup counted one.
	cfg = containerConfig("child-hog", "sh", "-c", "tail /dev/zero; exit 3")
	cfg.Linux = &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 20 * mib}}
	st = waitExited(t, createStart(t, podID, pod, cfg), 60*time.Second)
	if st.ExitCode != 3 || st.Reason != "Error" {
		t.Errorf("init exiting 3 after its child's OOM kill: exit %d reason %q, want 3 Error", st.ExitCode, st.Reason)
	}
}

// TestIsolationDevices: a host device mapped to another container path.
func TestIsolationDevices(t *testing.T) {
	podID, pod := isoPod(t, nil)
	cfg := containerConfig("dev", "sleep", "1000")
	cfg.Devices = []*runtime.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rwm"}}
	id := createStart(t, podID, pod, cfg)
	if got := must(t, id, "stat -c '%F %t:%T' /dev/mynull"); got != "character special file 1:3" {
		t.Errorf("/dev/mynull: %q", got)
	}
	must(t, id, "echo discard > /dev/mynull")
	if got := must(t, id, "wc -c < /dev/mynull"); got != "0" {
		t.Errorf("reading /dev/mynull gave %s bytes", got)
	}
	for name, d := range map[string]*runtime.Device{
		"bad permissions":  {HostPath: "/dev/null", ContainerPath: "/dev/x", Permissions: "rwx"},
		"missing host dev": {HostPath: "/dev/crid-e2e-missing", ContainerPath: "/dev/x"},
		"relative path":    {HostPath: "/dev/null", ContainerPath: "dev/x"},
	} {
		cfg := containerConfig("baddev-"+strings.ReplaceAll(name, " ", "-"), "true")
		cfg.Devices = []*runtime.Device{d}
		wantCode(t, "device with "+name, tryCreate(t, podID, pod, cfg), codes.InvalidArgument)
	}
}
