package core

import (
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestValidatePodResources(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *runtime.LinuxContainerResources
		ok   bool
	}{
		{"none", nil, true},
		{"typical", &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 128 << 20}, true},
		{"no cpu limit", &runtime.LinuxContainerResources{CpuQuota: -1}, true},
		{"negative shares", &runtime.LinuxContainerResources{CpuShares: -2}, false},
		{"negative memory", &runtime.LinuxContainerResources{MemoryLimitInBytes: -1}, false},
		{"negative period", &runtime.LinuxContainerResources{CpuPeriod: -100}, false},
		{"quota below -1", &runtime.LinuxContainerResources{CpuQuota: -2}, false},
	} {
		err := validatePodResources(tc.r)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: got %v, want InvalidArgument", tc.name, err)
		}
	}
}
