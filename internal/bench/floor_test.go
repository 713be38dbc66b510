package bench

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestFloorSpecNamespaces(t *testing.T) {
	nsOf := func(s *specs.Spec) map[specs.LinuxNamespaceType]string {
		m := map[specs.LinuxNamespaceType]string{}
		for _, n := range s.Linux.Namespaces {
			m[n.Type] = n.Path
		}
		return m
	}
	pause := nsOf(floorSpec("p", "/r", []string{"/pause"}, "/var/run/netns/x", 0))
	if pause[specs.NetworkNamespace] != "/var/run/netns/x" {
		t.Errorf("pause netns = %q", pause[specs.NetworkNamespace])
	}
	for _, typ := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		if p, ok := pause[typ]; !ok || p != "" {
			t.Errorf("pause %s namespace: present %v path %q, want a new one", typ, ok, p)
		}
	}
	ctr := nsOf(floorSpec("c", "/r", []string{"sleep", "1"}, "", 42))
	for typ, f := range map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"} {
		if ctr[typ] != "/proc/42/ns/"+f {
			t.Errorf("container %s namespace = %q, want pause's", typ, ctr[typ])
		}
	}
	if ctr[specs.PIDNamespace] != "" || ctr[specs.MountNamespace] != "" {
		t.Errorf("container must get its own pid and mount namespaces: %v", ctr)
	}
	if s := floorSpec("abc", "/r", nil, "", 0); s.Linux.CgroupsPath != "/abc" {
		t.Errorf("cgroups path = %q", s.Linux.CgroupsPath)
	}
}

func TestLoadCNIConf(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadCNIConf(dir); err == nil {
		t.Fatal("empty dir accepted")
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("20-second.conflist", `{"cniVersion":"1.0.0","name":"second","plugins":[{"type":"bridge"}]}`)
	write("10-first.conf", `{"cniVersion":"1.0.0","name":"first","type":"bridge","bridge":"b0"}`)
	l, err := loadCNIConf(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.Name != "first" || len(l.Plugins) != 1 || l.Plugins[0].Network.Type != "bridge" {
		t.Fatalf("loaded %+v, want the lexically first (single-plugin) config", l)
	}
}
