package core

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestValidateSandboxSecurity(t *testing.T) {
	cfg := func(sysctls map[string]string, ns *runtime.NamespaceOption) *runtime.PodSandboxConfig {
		return &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
			Sysctls: sysctls, SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: ns},
		}}
	}
	hostNet := &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}
	for _, tc := range []struct {
		name string
		cfg  *runtime.PodSandboxConfig
		ok   bool
	}{
		{"no linux config", &runtime.PodSandboxConfig{}, true},
		{"namespaced", cfg(map[string]string{"net.core.somaxconn": "1024", "kernel.shm_rmid_forced": "1"}, nil), true},
		{"node-wide", cfg(map[string]string{"kernel.panic": "1"}, nil), false},
		{"net in host network", cfg(map[string]string{"net.core.somaxconn": "1024"}, hostNet), false},
	} {
		err := validateSandboxSecurity(tc.cfg)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestValidatePIDTarget(t *testing.T) {
	target := func(id string) *runtime.NamespaceOption {
		return &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: id}
	}
	for _, tc := range []struct {
		name           string
		ns             *runtime.NamespaceOption
		pod, targetPod string
		ok             bool
	}{
		{"not target", &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}, "a", "", true},
		{"same pod", target("c1"), "a", "a", true},
		{"no target id", target(""), "a", "", false},
		{"other pod", target("c1"), "a", "b", false},
	} {
		err := validatePIDTarget(tc.ns, tc.pod, tc.targetPod)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestIgnoredAppArmorProfile(t *testing.T) {
	local := &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "localhost/my-prof"}
	for _, tc := range []struct {
		name    string
		sp      *runtime.SecurityProfile
		legacy  string
		enabled bool
		want    string
	}{
		{"none", nil, "", false, ""},
		{"localhost without apparmor", local, "", false, "my-prof"},
		{"localhost with apparmor", local, "", true, ""},
		{"runtime default", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}, "", false, "runtime/default"},
		{"unconfined", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}, "", false, ""},
		{"legacy", nil, "localhost/p", false, "localhost/p"},
		{"legacy unconfined", nil, "unconfined", false, ""},
	} {
		if got := ignoredAppArmorProfile(tc.sp, tc.legacy, tc.enabled); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
