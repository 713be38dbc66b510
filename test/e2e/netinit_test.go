package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNetworkInitAvoidsTakenSubnet: on a host where another bridge already
// has 10.88.0.0/16 (containerd's example network, podman's default),
// `crid network init` writes its network on a subnet nobody uses, and says
// which; a second bridge on the same subnet would break both.
func TestNetworkInitAvoidsTakenSubnet(t *testing.T) {
	other := "cridni" + randHex(2)
	mustRun(t, "ip", "link", "add", other, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", other).Run() })
	mustRun(t, "ip", "addr", "add", "10.88.0.1/16", "dev", other)
	mustRun(t, "ip", "link", "set", other, "up")

	dir := t.TempDir()
	confDir := filepath.Join(dir, "net.d")
	cfg := filepath.Join(dir, "crid.toml")
	if err := os.WriteFile(cfg, []byte("[network]\nconf_dir = \""+confDir+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(h.binDir, "crid"), "--config", cfg, "network", "init").CombinedOutput()
	if err != nil {
		t.Fatalf("crid network init: %v\n%s", err, out)
	}
	written, err := os.ReadFile(filepath.Join(confDir, "10-crid.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(written), "10.88.") {
		t.Fatalf("network init chose the subnet of bridge %s:\n%s", other, written)
	}
	m := regexp.MustCompile(`subnet (10\.\d+\.0\.0/16)`).FindStringSubmatch(string(out))
	if m == nil || !strings.Contains(string(written), `"`+m[1]+`"`) {
		t.Errorf("output %q does not name the subnet written:\n%s", out, written)
	}
}
