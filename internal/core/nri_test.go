package core

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestMergeResourcesKeepsWhatPluginsLeave(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	base := &specs.LinuxResources{
		CPU:     &specs.LinuxCPU{Shares: u64(1024), Quota: i64(50000), Period: u64(100000), Cpus: "0-1"},
		Memory:  &specs.LinuxMemory{Limit: i64(256 << 20), Swap: i64(256 << 20)},
		Unified: map[string]string{"memory.high": "max"},
	}
	over := &specs.LinuxResources{
		CPU:     &specs.LinuxCPU{Cpus: "1"},
		Memory:  &specs.LinuxMemory{Limit: i64(128 << 20)},
		Unified: map[string]string{"memory.min": "0"},
	}
	got := mergeResources(base, over)
	if *got.Memory.Limit != 128<<20 || *got.Memory.Swap != 256<<20 {
		t.Errorf("memory %+v: want the plugin's limit and the request's swap", got.Memory)
	}
	if got.CPU.Cpus != "1" || *got.CPU.Shares != 1024 || *got.CPU.Quota != 50000 || *got.CPU.Period != 100000 {
		t.Errorf("cpu %+v: want the plugin's cpus and the request's shares, quota, period", got.CPU)
	}
	if got.Unified["memory.high"] != "max" || got.Unified["memory.min"] != "0" {
		t.Errorf("unified %v", got.Unified)
	}
	if *base.Memory.Limit != 256<<20 || base.CPU.Cpus != "0-1" || len(base.Unified) != 1 {
		t.Errorf("base was modified: %+v %+v %v", base.Memory, base.CPU, base.Unified)
	}
}
