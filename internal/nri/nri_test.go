package nri

import (
	"slices"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

func baseSpec() *rspec.Spec {
	return &rspec.Spec{
		Process: &rspec.Process{Args: []string{"sleep", "1"}, Env: []string{"PATH=/bin", "KEEP=1"}},
		Mounts:  []rspec.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux:   &rspec.Linux{Resources: &rspec.LinuxResources{}},
	}
}

func TestAdjustSpecAppliesAdjustment(t *testing.T) {
	spec := baseSpec()
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("NRI", "yes")
	adj.AddEnv("PATH", "/usr/bin")
	adj.AddMount(&api.Mount{Source: "/host", Destination: "/data", Type: "bind", Options: []string{"rbind", "ro"}})
	adj.AddAnnotation("example.com/nri", "x")
	adj.SetArgs([]string{"sh", "-c", "true"})
	adj.SetLinuxMemoryLimit(64 << 20)
	adj.SetLinuxCPUShares(512)
	adj.SetLinuxOomScoreAdj(func(n int) *int { return &n }(500))
	adj.AddRlimit("RLIMIT_NOFILE", 1024, 512)
	adj.AddHooks(&api.Hooks{CreateRuntime: []*api.Hook{{Path: "/bin/true"}}})
	adj.AddDevice(&api.LinuxDevice{Path: "/dev/nri0", Type: "c", Major: 1, Minor: 3})
	if err := AdjustSpec(spec, adj, nil); err != nil {
		t.Fatal(err)
	}
	env := spec.Process.Env
	for _, want := range []string{"NRI=yes", "PATH=/usr/bin", "KEEP=1"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %q lacks %s", env, want)
		}
	}
	if slices.Contains(env, "PATH=/bin") {
		t.Errorf("env %q keeps the replaced PATH", env)
	}
	if !slices.Equal(spec.Process.Args, []string{"sh", "-c", "true"}) {
		t.Errorf("args %q", spec.Process.Args)
	}
	if !slices.ContainsFunc(spec.Mounts, func(m rspec.Mount) bool { return m.Destination == "/data" && m.Source == "/host" }) {
		t.Errorf("mounts %+v lack /data", spec.Mounts)
	}
	if spec.Annotations["example.com/nri"] != "x" {
		t.Errorf("annotations %v", spec.Annotations)
	}
	r := spec.Linux.Resources
	if r.Memory == nil || r.Memory.Limit == nil || *r.Memory.Limit != 64<<20 {
		t.Errorf("memory %+v", r.Memory)
	}
	if r.CPU == nil || r.CPU.Shares == nil || *r.CPU.Shares != 512 {
		t.Errorf("cpu %+v", r.CPU)
	}
	if spec.Process.OOMScoreAdj == nil || *spec.Process.OOMScoreAdj != 500 {
		t.Errorf("oom score %v", spec.Process.OOMScoreAdj)
	}
	if !slices.ContainsFunc(spec.Process.Rlimits, func(l rspec.POSIXRlimit) bool { return l.Type == "RLIMIT_NOFILE" && l.Hard == 1024 && l.Soft == 512 }) {
		t.Errorf("rlimits %+v", spec.Process.Rlimits)
	}
	if spec.Hooks == nil || len(spec.Hooks.CreateRuntime) != 1 {
		t.Errorf("hooks %+v", spec.Hooks)
	}
	if !slices.ContainsFunc(spec.Linux.Devices, func(d rspec.LinuxDevice) bool { return d.Path == "/dev/nri0" }) {
		t.Errorf("devices %+v", spec.Linux.Devices)
	}
}

func TestAdjustSpecRemovals(t *testing.T) {
	spec := baseSpec()
	spec.Annotations = map[string]string{"drop": "1"}
	adj := &api.ContainerAdjustment{}
	adj.RemoveEnv("KEEP")
	adj.RemoveMount("/proc")
	adj.RemoveAnnotation("drop")
	if err := AdjustSpec(spec, adj, nil); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(spec.Process.Env, func(e string) bool { return strings.HasPrefix(e, "KEEP=") }) {
		t.Errorf("env %q keeps KEEP", spec.Process.Env)
	}
	if len(spec.Mounts) != 0 {
		t.Errorf("mounts %+v keep /proc", spec.Mounts)
	}
	if _, ok := spec.Annotations["drop"]; ok {
		t.Errorf("annotations %v keep drop", spec.Annotations)
	}
}

func TestAdjustSpecCDI(t *testing.T) {
	adj := &api.ContainerAdjustment{}
	adj.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/dev=x"})
	err := AdjustSpec(baseSpec(), adj, nil)
	if err == nil || !strings.Contains(err.Error(), "CDI") {
		t.Fatalf("CDI adjustment without an injector: err %v, want an error naming CDI", err)
	}
	var got []string
	spec := baseSpec()
	inject := func(s *rspec.Spec, devices []string) error {
		got = devices
		s.Process.Env = append(s.Process.Env, "CDI=injected")
		return nil
	}
	if err := AdjustSpec(spec, adj, inject); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"vendor.com/dev=x"}) || !slices.Contains(spec.Process.Env, "CDI=injected") {
		t.Errorf("injector got %q, env %q", got, spec.Process.Env)
	}
}

func TestNilNRIDoesNothing(t *testing.T) {
	var n *NRI
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n.BlockSync()()
	res, err := n.UpdateContainer(t.Context(), nil, nil, &api.LinuxResources{})
	if err != nil || res != nil {
		t.Fatalf("UpdateContainer on nil: %v %v", res, err)
	}
	n.Stop()
}
