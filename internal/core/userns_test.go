package core

import (
	"path/filepath"
	"slices"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestParseOverlayOptions(t *testing.T) {
	for _, tc := range []struct {
		opts        string
		lowers      []string
		upper, work string
		bad         bool
	}{
		{opts: "rw,lowerdir=/s/2/fs:/s/1/fs,upperdir=/c/rw/upper,workdir=/c/rw/work,uuid=on",
			lowers: []string{"/s/2/fs", "/s/1/fs"}, upper: "/c/rw/upper", work: "/c/rw/work"},
		{opts: "rw,lowerdir+=/s/3/fs,lowerdir+=/s/2/fs,lowerdir+=/s/1/fs,upperdir=/u,workdir=/w",
			lowers: []string{"/s/3/fs", "/s/2/fs", "/s/1/fs"}, upper: "/u", work: "/w"},
		{opts: "rw,lowerdir=/a", bad: true},
		{opts: "rw,upperdir=/u,workdir=/w", bad: true},
	} {
		l, u, w, err := parseOverlayOptions(tc.opts)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error", tc.opts)
			}
			continue
		}
		if err != nil || !slices.Equal(l, tc.lowers) || u != tc.upper || w != tc.work {
			t.Errorf("%q: got %v %q %q %v", tc.opts, l, u, w, err)
		}
	}
}

// Pods without a user namespace of their own (including absent options:
// mode POD is the enum's zero value) leave the rootfs alone.
func TestIdmapContainerRootfsWithoutUserns(t *testing.T) {
	s := &Service{}
	for _, cfg := range []*runtime.PodSandboxConfig{
		{},
		{Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{}}}},
		{Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
			UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}}}}},
	} {
		if err := s.idmapContainerRootfs(cfg, 0, "/nonexistent"); err != nil {
			t.Errorf("%v: %v", cfg, err)
		}
	}
	// Mode POD without mappings is refused, not a panic.
	bad := &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{}}}}}
	if err := s.idmapContainerRootfs(bad, 1, "/nonexistent"); err == nil {
		t.Error("mode POD without mappings accepted")
	}
}

// The probe must pass on this host (kernel 6.18) and leave nothing behind.
func TestProbeIdmappedOverlay(t *testing.T) {
	dir := t.TempDir()
	if err := probeIdmappedOverlay(dir); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("probe left %v", left)
	}
}
