// Package nri runs crid's side of the Node Resource Interface
// (github.com/containerd/nri): external plugins connect to a socket (or are
// started from a directory), see pod and container lifecycle events and
// adjust containers before they are created. The core calls one method
// per CRI event; this package relays it to the plugins and hands the
// core their adjustments and the updates they ask for. docs/nri.md.
package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/containerd/nri/pkg/runtime-tools/generate"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-dev/crid/internal/config"
)

// Domain is what NRI needs from the runtime: the current pods and
// containers (to synchronize a plugin that connects) and a way to apply
// the updates and evictions plugins ask for.
type Domain interface {
	ListPodSandboxes() []*api.PodSandbox
	ListContainers() []*api.Container
	// UpdateContainer applies u's resources to a running or created container.
	UpdateContainer(ctx context.Context, u *api.ContainerUpdate) error
	// EvictContainer stops a container a plugin wants gone.
	EvictContainer(ctx context.Context, id, reason string) error
}

// NRI is crid's NRI adaptation. A nil *NRI is valid and does nothing, so
// the core calls it unconditionally.
type NRI struct {
	cfg    config.NRI
	log    *slog.Logger
	domain Domain
	a      *adaptation.Adaptation
	// injectCDI resolves the CDI devices a plugin adds into a spec.
	injectCDI CDIInjector

	// mu serializes requests to the plugins (the adaptation does too) so
	// failures counts the plugin failures of one request only.
	mu       sync.Mutex
	failures *failureRecorder
}

var _ generate.UnderlyingGenerator = (*specGen)(nil)

// CDIInjector applies the named CDI devices to a spec, as the runtime does
// for the CDI devices of a CRI request.
type CDIInjector func(spec *rspec.Spec, devices []string) error

// New creates the adaptation; Start makes it listen. name and version are
// the runtime's, reported to plugins.
func New(cfg config.NRI, name, version string, domain Domain, injectCDI CDIInjector, log *slog.Logger) (*NRI, error) {
	if !cfg.Enable {
		return nil, nil
	}
	n := &NRI{cfg: cfg, log: log.With("subsystem", "nri"), domain: domain, injectCDI: injectCDI, failures: &failureRecorder{}}
	nrilog.Set(slogAdapter{n.log})
	// The timeouts are package settings of the NRI library: one
	// adaptation per process, so setting them here is enough.
	adaptation.SetPluginRegistrationTimeout(cfg.PluginRegistrationTimeout.Duration)
	adaptation.SetPluginRequestTimeout(cfg.PluginRequestTimeout.Duration)
	opts := []adaptation.Option{
		adaptation.WithSocketPath(cfg.SocketPath),
		adaptation.WithPluginPath(cfg.PluginPath),
		adaptation.WithPluginConfigPath(cfg.PluginConfigPath),
		adaptation.WithMetrics(n.failures),
	}
	a, err := adaptation.New(name, version, n.synchronize, n.updateFromPlugin, opts...)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	n.a = a
	return n, nil
}

// Start starts the plugins in plugin_path and listens on socket_path.
func (n *NRI) Start() error {
	if n == nil {
		return nil
	}
	if err := n.a.Start(); err != nil {
		return fmt.Errorf("nri: start on %s: %w", n.cfg.SocketPath, err)
	}
	n.log.Info("NRI listening", "socket", n.cfg.SocketPath, "pluginPath", n.cfg.PluginPath)
	return nil
}

// Stop disconnects the plugins and closes the socket.
func (n *NRI) Stop() {
	if n == nil {
		return
	}
	n.a.Stop()
}

// BlockSync holds off the synchronization of plugins that connect until
// the returned func is called. The core holds it while it creates a pod or
// container: a plugin then either sees the finished object in its
// Synchronize or is registered in time to get its create event, never
// neither.
func (n *NRI) BlockSync() (unblock func()) {
	if n == nil {
		return func() {}
	}
	return n.a.BlockPluginSync().Unblock
}

// synchronize hands a newly connected plugin every pod and container and
// applies the updates it asks for.
func (n *NRI) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	pods, ctrs := n.domain.ListPodSandboxes(), n.domain.ListContainers()
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return fmt.Errorf("nri: synchronize: %w", err)
	}
	if failed := n.applyUpdates(ctx, updates); len(failed) > 0 {
		return fmt.Errorf("nri: synchronize: %d container updates failed", len(failed))
	}
	return nil
}

// updateFromPlugin applies updates a plugin sends on its own.
func (n *NRI) updateFromPlugin(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return n.applyUpdates(ctx, updates), nil
}

// applyUpdates applies updates and returns the ones that failed; a
// failure of an update a plugin marked IgnoreFailure is only logged.
func (n *NRI) applyUpdates(ctx context.Context, updates []*api.ContainerUpdate) []*api.ContainerUpdate {
	var failed []*api.ContainerUpdate
	for _, u := range updates {
		if u == nil {
			continue // NRI's answer to an UpdateContainer no plugin changed
		}
		if err := n.domain.UpdateContainer(ctx, u); err != nil {
			n.log.Warn("NRI container update failed", "container", u.GetContainerId(), "error", err)
			if !u.GetIgnoreFailure() {
				failed = append(failed, u)
			}
		}
	}
	return failed
}

// evict stops the containers plugins asked to evict.
func (n *NRI) evict(ctx context.Context, evictions []*api.ContainerEviction) {
	for _, e := range evictions {
		if err := n.domain.EvictContainer(ctx, e.GetContainerId(), e.GetReason()); err != nil {
			n.log.Warn("NRI container eviction failed", "container", e.GetContainerId(), "error", err)
		}
	}
}

// call runs one request to the plugins. A plugin that timed out or crashed
// during it has been disconnected by the adaptation; with
// fail_on_plugin_error that fails the request, else it is logged and the
// request goes on without the plugin.
func (n *NRI) call(event string, f func() error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failures.reset()
	err := f()
	failed := n.failures.take()
	for _, fl := range failed {
		n.log.Warn("NRI plugin failed", "event", event, "plugin", fl.plugin, "error", fl.err)
	}
	if err != nil {
		return fmt.Errorf("nri %s: %w", event, err)
	}
	if n.cfg.FailOnPluginError && len(failed) > 0 {
		return fmt.Errorf("nri %s: plugin %s failed: %w", event, failed[0].plugin, failed[0].err)
	}
	return nil
}

// RunPodSandbox tells plugins a pod started.
func (n *NRI) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if n == nil {
		return nil
	}
	return n.call("RunPodSandbox", func() error {
		return n.a.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod})
	})
}

// StopPodSandbox tells plugins a pod stopped.
func (n *NRI) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if n == nil {
		return nil
	}
	return n.call("StopPodSandbox", func() error {
		return n.a.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod})
	})
}

// RemovePodSandbox tells plugins a pod is gone.
func (n *NRI) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if n == nil {
		return nil
	}
	return n.call("RemovePodSandbox", func() error {
		return n.a.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod})
	})
}

// UpdatePodSandbox tells plugins a pod's resources are about to change;
// their failure fails the update.
func (n *NRI) UpdatePodSandbox(ctx context.Context, pod *api.PodSandbox, overhead, res *api.LinuxResources) error {
	if n == nil {
		return nil
	}
	return n.call("UpdatePodSandbox", func() error {
		_, err := n.a.UpdatePodSandbox(ctx, &api.UpdatePodSandboxRequest{Pod: pod, OverheadLinuxResources: overhead, LinuxResources: res})
		return err
	})
}

// PostUpdatePodSandbox tells plugins a pod's resources changed.
func (n *NRI) PostUpdatePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if n == nil {
		return nil
	}
	return n.call("PostUpdatePodSandbox", func() error {
		return n.a.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: pod})
	})
}

// CreateContainer asks plugins to adjust ctr and applies their adjustment
// to spec, which must describe ctr; the updates they ask for on other
// containers are applied and evictions carried out. On error spec may be
// partly adjusted: the caller discards it.
func (n *NRI) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, spec *rspec.Spec) error {
	if n == nil {
		return nil
	}
	var rpl *api.CreateContainerResponse
	err := n.call("CreateContainer", func() error {
		var err error
		rpl, err = n.a.CreateContainer(ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr})
		return err
	})
	if err != nil {
		return err
	}
	if err := AdjustSpec(spec, rpl.GetAdjust(), n.injectCDI); err != nil {
		return fmt.Errorf("nri CreateContainer: %w", err)
	}
	if failed := n.applyUpdates(ctx, rpl.GetUpdate()); len(failed) > 0 {
		return fmt.Errorf("nri CreateContainer: update of container %s failed", failed[0].GetContainerId())
	}
	n.evict(ctx, rpl.GetEvict())
	return nil
}

// AdjustSpec applies a plugin adjustment to spec, as containerd does: NRI's
// own generator over crid's spec. CDI devices a plugin adds go through
// injectCDI; without one they are refused.
func AdjustSpec(spec *rspec.Spec, adj *api.ContainerAdjustment, injectCDI CDIInjector) error {
	if adj == nil {
		return nil
	}
	if injectCDI == nil {
		injectCDI = func(*rspec.Spec, []string) error {
			return errors.New("no CDI device injector: CDI devices from NRI plugins are refused")
		}
	}
	g := generate.SpecGenerator(&specGen{s: spec}, generate.WithCDIDeviceInjector(injectCDI))
	if err := g.Adjust(adj); err != nil {
		return fmt.Errorf("apply adjustment: %w", err)
	}
	return nil
}

// PostCreateContainer tells plugins a container was created.
func (n *NRI) PostCreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if n == nil {
		return nil
	}
	return n.call("PostCreateContainer", func() error {
		return n.a.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: pod, Container: ctr})
	})
}

// StartContainer tells plugins a container is about to start.
func (n *NRI) StartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if n == nil {
		return nil
	}
	return n.call("StartContainer", func() error {
		return n.a.StartContainer(ctx, &api.StartContainerRequest{Pod: pod, Container: ctr})
	})
}

// PostStartContainer tells plugins a container started.
func (n *NRI) PostStartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if n == nil {
		return nil
	}
	return n.call("PostStartContainer", func() error {
		return n.a.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: pod, Container: ctr})
	})
}

// UpdateContainer asks plugins to adjust a resource update of ctr and
// returns the resources to apply (res with the plugins' changes), nil
// when no plugin changed anything.
func (n *NRI) UpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, res *api.LinuxResources) (*api.LinuxResources, error) {
	if n == nil {
		return nil, nil
	}
	var rpl *api.UpdateContainerResponse
	err := n.call("UpdateContainer", func() error {
		var err error
		rpl, err = n.a.UpdateContainer(ctx, &api.UpdateContainerRequest{Pod: pod, Container: ctr, LinuxResources: res})
		return err
	})
	if err != nil {
		return nil, err
	}
	var out *api.LinuxResources
	var others []*api.ContainerUpdate
	for _, u := range rpl.GetUpdate() {
		if u == nil {
			continue
		}
		if u.GetContainerId() == ctr.GetId() {
			out = u.GetLinux().GetResources()
			continue
		}
		others = append(others, u)
	}
	if failed := n.applyUpdates(ctx, others); len(failed) > 0 {
		return nil, fmt.Errorf("nri UpdateContainer: update of container %s failed", failed[0].GetContainerId())
	}
	n.evict(ctx, rpl.GetEvict())
	return out, nil
}

// PostUpdateContainer tells plugins a container's resources changed.
func (n *NRI) PostUpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if n == nil {
		return nil
	}
	return n.call("PostUpdateContainer", func() error {
		return n.a.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: pod, Container: ctr})
	})
}

// StopContainer tells plugins a container stopped and applies the updates
// they ask for on the others.
func (n *NRI) StopContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if n == nil {
		return nil
	}
	var rpl *api.StopContainerResponse
	err := n.call("StopContainer", func() error {
		var err error
		rpl, err = n.a.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: ctr})
		return err
	})
	if err != nil {
		return err
	}
	// The stopped container itself is left alone: updating it is
	// meaningless, and the caller holds its lock.
	var others []*api.ContainerUpdate
	for _, u := range rpl.GetUpdate() {
		if u.GetContainerId() != ctr.GetId() {
			others = append(others, u)
		}
	}
	n.applyUpdates(ctx, others)
	return nil
}

// RemoveContainer tells plugins a container is gone.
func (n *NRI) RemoveContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if n == nil {
		return nil
	}
	return n.call("RemoveContainer", func() error {
		return n.a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: ctr})
	})
}

// pluginFailure is one plugin call that returned an error.
type pluginFailure struct {
	plugin string
	err    error
}

// failureRecorder collects the failed plugin calls of the current request
// through the adaptation's metrics hooks, the one place it reports a
// plugin it disconnected.
type failureRecorder struct {
	mu     sync.Mutex
	failed []pluginFailure
}

var _ adaptation.Metrics = (*failureRecorder)(nil)

func (f *failureRecorder) RecordPluginInvocation(plugin, op string, err error) {
	// Synchronize runs on the plugin's own connection, outside requests.
	if err == nil || strings.EqualFold(op, "Synchronize") {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, pluginFailure{plugin: plugin, err: err})
}

func (f *failureRecorder) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = nil
}

func (f *failureRecorder) take() []pluginFailure {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.failed
	f.failed = nil
	return out
}

func (*failureRecorder) RecordPluginLatency(string, string, time.Duration) {}
func (*failureRecorder) RecordPluginAdjustments(string, string, *api.ContainerAdjustment, int, int) {
}
func (*failureRecorder) UpdatePluginCount(int) {}

// slogAdapter sends the NRI library's log lines to crid's logger.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Debugf(ctx context.Context, f string, args ...any) {
	a.l.DebugContext(ctx, fmt.Sprintf(f, args...))
}
func (a slogAdapter) Infof(ctx context.Context, f string, args ...any) {
	a.l.InfoContext(ctx, fmt.Sprintf(f, args...))
}
func (a slogAdapter) Warnf(ctx context.Context, f string, args ...any) {
	a.l.WarnContext(ctx, fmt.Sprintf(f, args...))
}
func (a slogAdapter) Errorf(ctx context.Context, f string, args ...any) {
	a.l.ErrorContext(ctx, fmt.Sprintf(f, args...))
}
