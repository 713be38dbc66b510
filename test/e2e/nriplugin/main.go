// Command nriplugin is the NRI plugin the e2e tests run against crid
// (nri_test.go): it records the events it gets, one line each, adjusts the
// containers it creates with an env var and a bind mount, and on request
// hangs in CreateContainer to show that a stuck plugin cannot wedge crid.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// plugin records events for pods whose name starts with prefix (other
// tests' pods run on the same crid only in the shared harness, but the
// filter keeps the record to this test's objects anyway).
type plugin struct {
	prefix   string
	env      string // KEY=VALUE added to each container
	mountSrc string // host directory bind-mounted read-only ...
	mountDst string // ... at this container path
	hang     bool   // never answer CreateContainer
	cdi      string // fully qualified CDI device added to each container
	// startHook, when set, is a shell command added to each container as
	// an OCI startContainer hook (run in the container, between the init's
	// release and its exec).
	startHook string
	// updateMem, when set, replaces the memory limit of every
	// UpdateContainer with this many bytes.
	updateMem int64
	// unsolicitedMem, when set, is the memory limit the plugin sets on
	// each container it saw start, on its own (UpdateContainers).
	unsolicitedMem int64
	stub           stub.Stub

	mu     sync.Mutex
	events *os.File
}

func (p *plugin) record(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.events, format+"\n", args...)
}

func (p *plugin) ours(pod *api.PodSandbox) bool { return strings.HasPrefix(pod.GetName(), p.prefix) }

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	for _, pod := range pods {
		if p.ours(pod) {
			p.record("Synchronize pod %s", pod.GetName())
		}
	}
	for _, c := range ctrs {
		if strings.HasPrefix(c.GetName(), p.prefix) {
			p.record("Synchronize container %s %s", c.GetName(), c.GetState())
		}
	}
	return nil, nil
}

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	if p.ours(pod) {
		p.record("RunPodSandbox %s", pod.GetName())
	}
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	if p.ours(pod) {
		p.record("StopPodSandbox %s", pod.GetName())
	}
	return nil
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	if p.ours(pod) {
		p.record("RemovePodSandbox %s", pod.GetName())
	}
	return nil
}

func (p *plugin) UpdatePodSandbox(_ context.Context, pod *api.PodSandbox, _, res *api.LinuxResources) error {
	if p.ours(pod) {
		p.record("UpdatePodSandbox %s memory %d", pod.GetName(), res.GetMemory().GetLimit().GetValue())
	}
	return nil
}

func (p *plugin) PostUpdatePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	if p.ours(pod) {
		p.record("PostUpdatePodSandbox %s", pod.GetName())
	}
	return nil
}

func (p *plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if !p.ours(pod) {
		return nil, nil, nil
	}
	p.record("CreateContainer %s", c.GetName())
	if p.hang {
		<-ctx.Done()
		select {} // a plugin stuck for good, not one that notices the deadline
	}
	adj := &api.ContainerAdjustment{}
	if k, v, ok := strings.Cut(p.env, "="); ok {
		adj.AddEnv(k, v)
	}
	if p.cdi != "" {
		adj.AddCDIDevice(&api.CDIDevice{Name: p.cdi})
	}
	if p.startHook != "" {
		adj.AddHooks(&api.Hooks{StartContainer: []*api.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", p.startHook}}}})
	}
	if p.mountSrc != "" {
		adj.AddMount(&api.Mount{Source: p.mountSrc, Destination: p.mountDst, Type: "bind", Options: []string{"rbind", "ro"}})
	}
	return adj, nil, nil
}

func (p *plugin) event(name string) func(context.Context, *api.PodSandbox, *api.Container) error {
	return func(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
		if p.ours(pod) {
			p.record("%s %s", name, c.GetName())
		}
		return nil
	}
}

func (p *plugin) PostCreateContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) error {
	return p.event("PostCreateContainer")(ctx, pod, c)
}

func (p *plugin) StartContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) error {
	return p.event("StartContainer")(ctx, pod, c)
}

func (p *plugin) PostStartContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) error {
	if p.ours(pod) && p.unsolicitedMem != 0 {
		// Later, from outside the event: the runtime is still starting it.
		go func() {
			u := &api.ContainerUpdate{}
			u.SetContainerId(c.GetId())
			u.SetLinuxMemoryLimit(p.unsolicitedMem)
			if failed, err := p.stub.UpdateContainers([]*api.ContainerUpdate{u}); err != nil || len(failed) > 0 {
				log.Printf("UpdateContainers %s: failed %v, %v", c.GetId(), failed, err)
			}
		}()
	}
	return p.event("PostStartContainer")(ctx, pod, c)
}

func (p *plugin) StopContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	return nil, p.event("StopContainer")(ctx, pod, c)
}

func (p *plugin) UpdateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	if !p.ours(pod) {
		return nil, nil
	}
	p.record("UpdateContainer %s", c.GetName())
	if p.updateMem == 0 {
		return nil, nil
	}
	u := &api.ContainerUpdate{}
	u.SetContainerId(c.GetId())
	u.SetLinuxMemoryLimit(p.updateMem)
	return []*api.ContainerUpdate{u}, nil
}

func (p *plugin) PostUpdateContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) error {
	return p.event("PostUpdateContainer")(ctx, pod, c)
}

func (p *plugin) RemoveContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) error {
	return p.event("RemoveContainer")(ctx, pod, c)
}

func main() {
	var (
		socket = flag.String("socket", "", "NRI socket of the runtime (none: the connection NRI hands a plugin it starts)")
		name   = flag.String("name", "", "plugin name (none: the one NRI gives a plugin it starts)")
		idx    = flag.String("idx", "", "plugin index, its place in the invocation order (none: as for name)")
		events = flag.String("events", "", "file the events are appended to")
		mount  = flag.String("mount", "", "SRC:DST bind mount added to each container")
	)
	p := &plugin{}
	flag.StringVar(&p.prefix, "prefix", "", "record only pods whose name starts with this")
	flag.StringVar(&p.env, "env", "", "KEY=VALUE added to each container's environment")
	flag.BoolVar(&p.hang, "hang", false, "never answer CreateContainer")
	flag.Int64Var(&p.unsolicitedMem, "unsolicited-mem", 0, "memory limit (bytes) set on each started container on the plugin's own initiative")
	flag.StringVar(&p.cdi, "cdi", "", "CDI device (vendor.com/class=name) added to each container")
	flag.StringVar(&p.startHook, "start-hook", "", "shell command added to each container as a startContainer hook")
	flag.Int64Var(&p.updateMem, "update-mem", 0, "memory limit (bytes) UpdateContainer sets instead of the requested one")
	flag.Parse()
	if *mount != "" {
		p.mountSrc, p.mountDst, _ = strings.Cut(*mount, ":")
	}
	f, err := os.OpenFile(*events, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	p.events = f
	// The tests find a plugin that crid started by this pid.
	if err := os.WriteFile(*events+".pid", []byte(fmt.Sprint(os.Getpid())), 0o644); err != nil {
		log.Fatal(err)
	}
	opts := []stub.Option{stub.WithOnClose(func() { p.record("closed"); os.Exit(0) })}
	if *name != "" {
		opts = append(opts, stub.WithPluginName(*name))
	}
	if *idx != "" {
		opts = append(opts, stub.WithPluginIdx(*idx))
	}
	if *socket != "" {
		opts = append(opts, stub.WithSocketPath(*socket))
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		log.Fatal(err)
	}
	p.stub = s
	if err := s.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}
