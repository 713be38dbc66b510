package e2e

// CDI devices (issue 5, "Device mapping"): cdi_devices and the
// cdi.k8s.io/ annotation form resolved from the spec dir the harness
// configures (runtime.cdi_spec_dirs = <base>/cdi), checked from inside the
// container.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// entries lists a directory's names (nil if it does not exist).
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// mountCount counts the mounts under the harness's base dir.
func mountCount(t *testing.T) int {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(h.base))
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func TestCDIDevices(t *testing.T) {
	kind := "e2e.crid.dev/null" + randHex(2)
	device := kind + "=dev"
	specDir := filepath.Join(h.base, "cdi")
	dataDir := filepath.Join(h.base, "cdi-data-"+randHex(3))
	hookOut := filepath.Join(h.base, "cdi-hook-"+randHex(3))
	for _, d := range []string{specDir, dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dataDir, "hello"), []byte("from-cdi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A createRuntime hook runs on the host with the container's state on
	// stdin: its output file proves the hook edit reached runc.
	spec := fmt.Sprintf(`{
  "cdiVersion": "0.6.0",
  "kind": %q,
  "devices": [{
    "name": "dev",
    "containerEdits": {
      "env": ["CDI_E2E=yes"],
      "deviceNodes": [{"path": "/dev/cdi-null", "hostPath": "/dev/null"}],
      "mounts": [{"hostPath": %q, "containerPath": "/cdi-data", "options": ["ro", "bind"]}],
      "hooks": [{"hookName": "createRuntime", "path": "/bin/sh", "args": ["sh", "-c", "cat >> %s; echo >> %s"]}]
    }
  }]
}`, kind, dataDir, hookOut, hookOut)
	specFile := filepath.Join(specDir, "e2e-"+randHex(3)+".json")
	if err := os.WriteFile(specFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(specFile); os.RemoveAll(dataDir); os.Remove(hookOut) })

	podID, pod := isoPod(t, nil)

	t.Run("field", func(t *testing.T) {
		cfg := containerConfig("cdi-field", "sleep", "1000")
		cfg.CDIDevices = []*runtime.CDIDevice{{Name: device}}
		id := createStart(t, podID, pod, cfg)
		if got := must(t, id, "stat -c '%F %t:%T' /dev/cdi-null"); got != "character special file 1:3" {
			t.Errorf("/dev/cdi-null: %q", got)
		}
		must(t, id, "echo discard > /dev/cdi-null")
		if got := must(t, id, "echo $CDI_E2E"); got != "yes" {
			t.Errorf("CDI_E2E = %q", got)
		}
		if got := must(t, id, "cat /cdi-data/hello"); got != "from-cdi" {
			t.Errorf("/cdi-data/hello = %q", got)
		}
		fails(t, id, "touch /cdi-data/new")
		if b, err := os.ReadFile(hookOut); err != nil || !strings.Contains(string(b), id) {
			t.Errorf("createRuntime hook output %q (%v) does not name container %s", b, err, id)
		}
	})

	t.Run("annotation", func(t *testing.T) {
		cfg := containerConfig("cdi-annotation", "sleep", "1000")
		cfg.Annotations = map[string]string{"cdi.k8s.io/e2e_dev": device}
		id := createStart(t, podID, pod, cfg)
		if got := must(t, id, "stat -c '%t:%T' /dev/cdi-null; echo $CDI_E2E"); got != "1:3\nyes" {
			t.Errorf("device and env from annotation: %q", got)
		}
	})

	t.Run("unknown device leaves nothing", func(t *testing.T) {
		ctx := ctxT(t)
		list := func() []string {
			resp, err := h.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range resp.Containers {
				ids = append(ids, c.Id)
			}
			slices.Sort(ids)
			return ids
		}
		stateDir := filepath.Join(h.base, "state", "containers")
		rootDir := filepath.Join(h.base, "root", "containers")
		before, stateBefore, rootBefore := list(), entries(t, stateDir), entries(t, rootDir)
		mountsBefore := mountCount(t)
		runcBefore, _ := runOut("runc", "--root", filepath.Join(h.base, "state", "runtime", "runc"), "list", "-q")

		for name, mutate := range map[string]func(*runtime.ContainerConfig){
			"unknown name":       func(c *runtime.ContainerConfig) { c.CDIDevices = []*runtime.CDIDevice{{Name: kind + "=nope"}} },
			"unknown kind":       func(c *runtime.ContainerConfig) { c.CDIDevices = []*runtime.CDIDevice{{Name: "nobody.example/none=x"}} },
			"unqualified":        func(c *runtime.ContainerConfig) { c.CDIDevices = []*runtime.CDIDevice{{Name: "dev"}} },
			"unknown annotation": func(c *runtime.ContainerConfig) { c.Annotations = map[string]string{"cdi.k8s.io/x": kind + "=nope"} },
		} {
			cfg := containerConfig("cdi-bad", "sleep", "1000")
			mutate(cfg)
			err := tryCreate(t, podID, pod, cfg)
			wantCode(t, name, err, codes.InvalidArgument)
			if name == "unknown name" && (err == nil || !strings.Contains(err.Error(), kind+"=nope")) {
				t.Errorf("error does not name the device: %v", err)
			}
		}
		if got := list(); !slices.Equal(got, before) {
			t.Errorf("containers after refused creates: %v, before %v", got, before)
		}
		if got := entries(t, stateDir); !slices.Equal(got, stateBefore) {
			t.Errorf("state dirs left behind: %v, before %v", got, stateBefore)
		}
		if got := entries(t, rootDir); !slices.Equal(got, rootBefore) {
			t.Errorf("root dirs left behind: %v, before %v", got, rootBefore)
		}
		if got, _ := runOut("runc", "--root", filepath.Join(h.base, "state", "runtime", "runc"), "list", "-q"); got != runcBefore {
			t.Errorf("runc containers %q, before %q", got, runcBefore)
		}
		if got := mountCount(t); got != mountsBefore {
			t.Errorf("mounts under %s: %d, before %d", h.base, got, mountsBefore)
		}
		// The refused creates released the name.
		cfg := containerConfig("cdi-bad", "true")
		cfg.CDIDevices = []*runtime.CDIDevice{{Name: device}}
		createStart(t, podID, pod, cfg)
	})
}
