// Package conformance holds the critest conformance harness for crid
// (run.sh, build-tools.sh, templates); this test checks the templates
// against crid's config schema and libcni.
package conformance

import (
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/crid-dev/crid/internal/config"
)

// render does what run.sh's sed does.
func render(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "@WORK@", "/tmp/crid-conformance")
	s = strings.ReplaceAll(s, "@REGISTRY@", "127.0.0.1:5000")
	if strings.Contains(s, "@") {
		t.Fatalf("%s: unreplaced placeholder left:\n%s", file, s)
	}
	return []byte(s)
}

func TestCridConfigTemplate(t *testing.T) {
	cfg := config.Default()
	if err := config.Parse(render(t, "crid-config.toml.tmpl"), cfg); err != nil {
		t.Fatalf("template does not parse: %v", err)
	}
	if cfg.Socket != "/tmp/crid-conformance/state/crid.sock" || cfg.Root != "/tmp/crid-conformance/root" ||
		cfg.State != "/tmp/crid-conformance/state" || cfg.Network.ConfDir != "/tmp/crid-conformance/cni/net.d" {
		t.Errorf("paths not private: %+v", cfg)
	}
	if cfg.Images.SandboxImage != "registry.k8s.io/pause:3.10" {
		t.Errorf("sandbox image %q", cfg.Images.SandboxImage)
	}
	want := map[string]string{
		"registry.k8s.io": "http://127.0.0.1:5000/registry.k8s.io",
		"k8s.gcr.io":      "http://127.0.0.1:5000/k8s.gcr.io",
		"gcr.io":          "http://127.0.0.1:5000/gcr.io",
		"docker.io":       "http://127.0.0.1:5000/docker.io",
	}
	for _, r := range cfg.Images.Registries {
		if m, ok := want[r.Host]; !ok || len(r.Mirrors) != 1 || r.Mirrors[0] != m {
			t.Errorf("registry %s: mirrors %v, want [%s]", r.Host, r.Mirrors, m)
		}
		if r.AllowFallback() {
			t.Errorf("registry %s may fall back to the internet", r.Host)
		}
		delete(want, r.Host)
	}
	if len(want) > 0 {
		t.Errorf("registries not configured: %v", want)
	}
}

func TestCNITemplate(t *testing.T) {
	list, err := libcni.ConfListFromBytes(render(t, "cni.conflist.tmpl"))
	if err != nil {
		t.Fatalf("conflist: %v", err)
	}
	if len(list.Plugins) != 2 || list.Plugins[0].Network.Type != "bridge" || list.Plugins[1].Network.Type != "portmap" {
		t.Errorf("plugins %+v", list.Plugins)
	}
}
