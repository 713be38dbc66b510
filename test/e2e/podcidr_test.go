package e2e

// UpdateRuntimeConfig with a pod CIDR (issue 5, kubelet's --pod-cidr flow):
// a crid whose network.conf_template is set and whose CNI dir starts empty
// reports NetworkReady=false, writes the pod network from the template when
// kubelet hands down the CIDR, and then gives pods IPs from it. This runs
// a second crid of its own so the shared harness network is untouched.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// networkReady returns the NetworkReady condition of a crid.
func networkReady(t *testing.T, rt runtime.RuntimeServiceClient) *runtime.RuntimeCondition {
	t.Helper()
	st, err := rt.Status(ctxT(t), &runtime.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, c := range st.Status.Conditions {
		if c.Type == runtime.NetworkReady {
			return c
		}
	}
	t.Fatal("Status has no NetworkReady condition")
	return nil
}

func TestUpdateRuntimeConfigPodCIDR(t *testing.T) {
	tag := randHex(3)
	bridge := "cridc" + tag
	netName := "crid-e2e-cidr-" + tag
	cidr := fmt.Sprintf("10.98.%d.0/24", int(tag[0])*7%200+20)
	_, ipNet, err := net.ParseCIDR(cidr)
	if err != nil {
		t.Fatal(err)
	}
	// The bridge and IPAM state this crid's network makes go when the test
	// ends (registered first: runs after the crid is stopped).
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", bridge).Run()
		_ = os.RemoveAll(filepath.Join("/var/lib/cni/networks", netName))
	})
	c2 := secondHarness(t, "cidr")
	cniDir := filepath.Join(c2.base, "cni")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The template as kubelet-era runtimes shipped it: a bridge whose
	// host-local range is the node's pod CIDR.
	tmpl := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}`, netName, bridge)
	cfg := fmt.Sprintf(`root = %q
state = %q
socket = %q
log_level = "debug"
%s
[network]
conf_dir = %q
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
conf_template = '''%s'''
`, filepath.Join(c2.base, "root"), filepath.Join(c2.base, "state"), c2.socket, mirrorsTOML(h.registry), cniDir, tmpl)
	if err := os.WriteFile(c2.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c2.start(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)

	if c := networkReady(t, c2.rt); c.Status {
		t.Fatalf("NetworkReady true before any CNI config: %+v", c)
	} else if c.Reason == "" {
		t.Errorf("NetworkReady false without a reason: %+v", c)
	}
	update := func(cidr string) error {
		_, err := c2.rt.UpdateRuntimeConfig(ctx, &runtime.UpdateRuntimeConfigRequest{
			RuntimeConfig: &runtime.RuntimeConfig{NetworkConfig: &runtime.NetworkConfig{PodCidr: cidr}},
		})
		return err
	}
	wantCode(t, "invalid pod CIDR", update("10.98.0.0/99"), codes.InvalidArgument)
	if c := networkReady(t, c2.rt); c.Status {
		t.Fatal("an invalid pod CIDR made the network ready")
	}
	if err := update(cidr); err != nil {
		t.Fatalf("UpdateRuntimeConfig: %v\ncrid log:\n%s", err, c2.logTail())
	}
	if c := networkReady(t, c2.rt); !c.Status {
		t.Fatalf("NetworkReady still false after the pod CIDR: %+v\ncrid log:\n%s", c, c2.logTail())
	}
	written, err := os.ReadFile(filepath.Join(cniDir, "10-crid-net.conflist"))
	if err != nil {
		t.Fatalf("rendered config: %v (dir has %v)", err, entries(t, cniDir))
	}
	if !strings.Contains(string(written), `"subnet": "`+cidr+`"`) || !strings.Contains(string(written), bridge) {
		t.Errorf("rendered config does not carry the CIDR and bridge:\n%s", written)
	}
	// kubelet repeats the CIDR on every sync; that must not rewrite the file.
	st1, _ := os.Stat(filepath.Join(cniDir, "10-crid-net.conflist"))
	if err := update(cidr); err != nil {
		t.Fatalf("repeated UpdateRuntimeConfig: %v", err)
	}
	if st2, _ := os.Stat(filepath.Join(cniDir, "10-crid-net.conflist")); st1 == nil || st2 == nil || !st2.ModTime().Equal(st1.ModTime()) || !os.SameFile(st1, st2) {
		t.Error("the same pod CIDR rewrote the config")
	}

	// A pod on the new network gets an IP in the CIDR, on the template's bridge.
	pod := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "cidr", Namespace: "e2e", Uid: randHex(8)},
		Hostname:     "cidr-" + tag,
		LogDirectory: filepath.Join(c2.base, "logs"),
		Linux:        &runtime.LinuxPodSandboxConfig{CgroupParent: "/crid-e2e"},
	}
	rp, err := c2.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\ncrid log:\n%s", err, c2.logTail())
	}
	ps, err := c2.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: rp.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(ps.GetStatus().GetNetwork().GetIp())
	if ip == nil || !ipNet.Contains(ip) {
		t.Fatalf("pod IP %q is not in %s", ps.GetStatus().GetNetwork().GetIp(), cidr)
	}
	if _, err := c2.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	cc := containerConfig("cidr", "sleep", "1000")
	cc.LogPath = ""
	cr, err := c2.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: rp.PodSandboxId, Config: cc, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer: %v\ncrid log:\n%s", err, c2.logTail())
	}
	if _, err := c2.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	ex, err := c2.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"ip", "-4", "-o", "addr", "show", "eth0"}, Timeout: 20})
	if err != nil || ex.ExitCode != 0 {
		t.Fatalf("ip addr in the pod: %v %+v", err, ex)
	}
	if !strings.Contains(string(ex.Stdout), " "+ip.String()+"/24 ") {
		t.Errorf("eth0 in the pod: %q, want %s/24", ex.Stdout, ip)
	}
	if out, err := exec.Command("ip", "-o", "link", "show", "master", bridge).Output(); err != nil || strings.TrimSpace(string(out)) == "" {
		t.Errorf("no veth on bridge %s: %q %v", bridge, out, err)
	}

	// Removing the pod releases its IP; removing the config makes the
	// network not ready again (the dir is re-read on Status).
	if _, err := c2.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: rp.PodSandboxId}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join("/var/lib/cni/networks", netName, ip.String())); err == nil {
		t.Errorf("IP %s still allocated after the pod was removed: %q", ip, b)
	}
	if err := os.Remove(filepath.Join(cniDir, "10-crid-net.conflist")); err != nil {
		t.Fatal(err)
	}
	if c := networkReady(t, c2.rt); c.Status {
		t.Error("NetworkReady still true after the config was removed")
	}
}
