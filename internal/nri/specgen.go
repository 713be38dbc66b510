package nri

import (
	"fmt"
	"slices"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// specGen is the small OCI spec editor NRI's adjustment code drives (its
// generate.UnderlyingGenerator): the methods NRI calls to apply a
// ContainerAdjustment, over crid's own spec, so crid needs no
// runtime-tools. Each method changes only what its name says.
type specGen struct{ s *rspec.Spec }

func (g *specGen) Spec() *rspec.Spec { return g.s }

func (g *specGen) linux() *rspec.Linux {
	if g.s.Linux == nil {
		g.s.Linux = &rspec.Linux{}
	}
	return g.s.Linux
}

func (g *specGen) resources() *rspec.LinuxResources {
	l := g.linux()
	if l.Resources == nil {
		l.Resources = &rspec.LinuxResources{}
	}
	return l.Resources
}

func (g *specGen) cpu() *rspec.LinuxCPU {
	r := g.resources()
	if r.CPU == nil {
		r.CPU = &rspec.LinuxCPU{}
	}
	return r.CPU
}

func (g *specGen) memory() *rspec.LinuxMemory {
	r := g.resources()
	if r.Memory == nil {
		r.Memory = &rspec.LinuxMemory{}
	}
	return r.Memory
}

func (g *specGen) process() *rspec.Process {
	if g.s.Process == nil {
		g.s.Process = &rspec.Process{}
	}
	return g.s.Process
}

func (g *specGen) hooks() *rspec.Hooks {
	if g.s.Hooks == nil {
		g.s.Hooks = &rspec.Hooks{}
	}
	return g.s.Hooks
}

func (g *specGen) AddAnnotation(key, value string) {
	if g.s.Annotations == nil {
		g.s.Annotations = map[string]string{}
	}
	g.s.Annotations[key] = value
}

func (g *specGen) RemoveAnnotation(key string) { delete(g.s.Annotations, key) }

func (g *specGen) AddDevice(d rspec.LinuxDevice) {
	l := g.linux()
	for i := range l.Devices {
		if l.Devices[i].Path == d.Path {
			l.Devices[i] = d
			return
		}
	}
	l.Devices = append(l.Devices, d)
}

func (g *specGen) RemoveDevice(path string) {
	l := g.linux()
	l.Devices = slices.DeleteFunc(l.Devices, func(d rspec.LinuxDevice) bool { return d.Path == path })
}

func (g *specGen) AddOrReplaceLinuxNamespace(ns, path string) error {
	l := g.linux()
	t := rspec.LinuxNamespaceType(ns)
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == t {
			l.Namespaces[i].Path = path
			return nil
		}
	}
	l.Namespaces = append(l.Namespaces, rspec.LinuxNamespace{Type: t, Path: path})
	return nil
}

func (g *specGen) RemoveLinuxNamespace(ns string) error {
	l := g.linux()
	t := rspec.LinuxNamespaceType(ns)
	l.Namespaces = slices.DeleteFunc(l.Namespaces, func(n rspec.LinuxNamespace) bool { return n.Type == t })
	return nil
}

func (g *specGen) AddPostStartHook(h rspec.Hook) {
	g.hooks().Poststart = append(g.hooks().Poststart, h)
}
func (g *specGen) AddPostStopHook(h rspec.Hook) { g.hooks().Poststop = append(g.hooks().Poststop, h) }

//lint:ignore SA1019 NRI still adjusts the deprecated prestart hooks
func (g *specGen) AddPreStartHook(h rspec.Hook) { g.hooks().Prestart = append(g.hooks().Prestart, h) }

// AddProcessEnv sets name, replacing an earlier value of it.
func (g *specGen) AddProcessEnv(name, value string) {
	p := g.process()
	kv := name + "=" + value
	for i, e := range p.Env {
		if k, _, _ := strings.Cut(e, "="); k == name {
			p.Env[i] = kv
			return
		}
	}
	p.Env = append(p.Env, kv)
}

func (g *specGen) ClearProcessEnv()            { g.process().Env = nil }
func (g *specGen) SetProcessArgs(a []string)   { g.process().Args = a }
func (g *specGen) SetProcessOOMScoreAdj(n int) { g.process().OOMScoreAdj = &n }

func (g *specGen) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := g.resources()
	r.Devices = append(r.Devices, rspec.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

func (g *specGen) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := g.resources()
	for i := range r.HugepageLimits {
		if r.HugepageLimits[i].Pagesize == pageSize {
			r.HugepageLimits[i].Limit = limit
			return
		}
	}
	r.HugepageLimits = append(r.HugepageLimits, rspec.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (g *specGen) AddLinuxResourcesUnified(key, val string) {
	r := g.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (g *specGen) AddMount(m rspec.Mount) { g.s.Mounts = append(g.s.Mounts, m) }
func (g *specGen) ClearMounts()           { g.s.Mounts = nil }
func (g *specGen) Mounts() []rspec.Mount  { return g.s.Mounts }

func (g *specGen) RemoveMount(dest string) {
	g.s.Mounts = slices.DeleteFunc(g.s.Mounts, func(m rspec.Mount) bool { return m.Destination == dest })
}

func (g *specGen) AddLinuxSysctl(key, value string) {
	l := g.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (g *specGen) RemoveLinuxSysctl(key string) { delete(g.linux().Sysctl, key) }

func (g *specGen) SetLinuxCgroupsPath(p string)                { g.linux().CgroupsPath = p }
func (g *specGen) SetLinuxResourcesCPUCpus(c string)           { g.cpu().Cpus = c }
func (g *specGen) SetLinuxResourcesCPUMems(m string)           { g.cpu().Mems = m }
func (g *specGen) SetLinuxResourcesCPUPeriod(p uint64)         { g.cpu().Period = &p }
func (g *specGen) SetLinuxResourcesCPUQuota(q int64)           { g.cpu().Quota = &q }
func (g *specGen) SetLinuxResourcesCPURealtimePeriod(p uint64) { g.cpu().RealtimePeriod = &p }
func (g *specGen) SetLinuxResourcesCPURealtimeRuntime(t int64) { g.cpu().RealtimeRuntime = &t }
func (g *specGen) SetLinuxResourcesCPUShares(s uint64)         { g.cpu().Shares = &s }
func (g *specGen) SetLinuxResourcesMemoryLimit(l int64)        { g.memory().Limit = &l }
func (g *specGen) SetLinuxResourcesMemorySwap(s int64)         { g.memory().Swap = &s }

func (g *specGen) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
		g.linux().RootfsPropagation = rp
		return nil
	}
	return fmt.Errorf("rootfs propagation %q is not valid", rp)
}
