// Package network gives pods their network: namespaces pinned by bind
// mount, and CNI ADD/DEL through libcni with the standard plugins.
package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/metrics"
	"github.com/crid-dev/crid/internal/tracing"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod identifies a pod to the CNI plugins.
type Pod struct {
	ID, Name, Namespace, UID string
	NetNSPath                string
	PortMappings             []*runtime.PortMapping
	CgroupParent             string
}

// Result is what the network gave the pod.
type Result struct {
	IP            string   // primary IP
	AdditionalIPs []string // e.g. the IPv6 of a dual-stack pod
}

const (
	// podIfName is the pod's interface on the pod network.
	podIfName = "eth0"
	// teardownAttempts bounds CNI DEL retries: a plugin may fail transiently
	// (iptables lock contention, a busy netlink socket) and a DEL that never
	// succeeds leaves kubelet's pod Terminating.
	teardownAttempts = 4
	teardownBackoff  = 250 * time.Millisecond
	// rollbackTimeout bounds the DEL run after a failed ADD, which must run
	// even when the ADD failed because its context was cancelled.
	rollbackTimeout = time.Minute
)

// Manager owns the CNI configuration and network namespaces.
type Manager struct {
	cfg      config.Network
	netnsDir string
	log      *slog.Logger
	cni      *libcni.CNIConfig
	loopback *libcni.NetworkConfigList
	// ipForward is the sysctl Setup turns on for IPv4 pods; a field so
	// tests can point it elsewhere.
	ipForward string
	// metrics times CNI ADD and DEL (WithMetrics); nil: nothing.
	metrics *metrics.Metrics

	mu      sync.Mutex
	state   dirState
	scanned bool
	list    *libcni.NetworkConfigList // nil when no usable config
	file    string                    // where list came from
	reason  error                     // why list is nil
}

// Option configures a Manager.
type Option func(*Manager)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(m *Manager) { m.log = l }
}

// WithCacheDir sets where libcni caches ADD results for DEL (default
// /var/lib/cni, shared with other CNI runtimes' tooling).
func WithCacheDir(dir string) Option {
	return func(m *Manager) { m.cni = libcni.NewCNIConfigWithCacheDir(m.cfg.BinDirs, dir, nil) }
}

// New loads the CNI config from cfg.ConfDir (watching it for changes); netns
// pins live under stateDir/netns.
//
// The config dir is re-read (when its files changed) on every Ready, Setup
// and Teardown rather than watched by a goroutine: kubelet polls Status
// every few seconds, which is soon enough, and nothing runs in between.
func New(cfg config.Network, stateDir string, opts ...Option) (*Manager, error) {
	if cfg.ConfDir == "" {
		return nil, fmt.Errorf("network: conf dir is empty: %w", errdefs.ErrInvalidArgument)
	}
	lo, err := loopbackList()
	if err != nil {
		return nil, fmt.Errorf("network: loopback config: %w", err)
	}
	m := &Manager{
		cfg:       cfg,
		netnsDir:  filepath.Join(stateDir, "netns"),
		log:       slog.New(slog.DiscardHandler),
		cni:       libcni.NewCNIConfig(cfg.BinDirs, nil),
		loopback:  lo,
		ipForward: "/proc/sys/net/ipv4/ip_forward",
	}
	for _, o := range opts {
		o(m)
	}
	if err := SharedPinDir(m.netnsDir); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if _, err := m.current(); err != nil {
		m.log.Warn("CNI network not ready", "reason", err.Error())
	}
	return m, nil
}

// Close stops watching the config dir. Pinned namespaces stay: they belong
// to pods that outlive a crid restart.
func (m *Manager) Close() error { return nil }

// Ready returns nil when a CNI network config is loaded, else the reason.
func (m *Manager) Ready() error {
	_, err := m.current()
	return err
}

// NetworkName is the name of the loaded pod network ("" when not ready).
func (m *Manager) NetworkName() string {
	l, err := m.current()
	if err != nil {
		return ""
	}
	return l.Name
}

// current reloads the config if the dir changed and returns the pod network.
func (m *Manager) current() (*libcni.NetworkConfigList, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := statConfDir(m.cfg.ConfDir)
	if err != nil {
		// Keep what was loaded: a transient read error is no reason to
		// declare a working network broken.
		if m.list != nil {
			return m.list, nil
		}
		return nil, err
	}
	if m.scanned && st.equal(m.state) {
		return m.list, m.reason
	}
	m.state, m.scanned = st, true
	list, file, skipped, err := loadNetwork(m.cfg.ConfDir, st)
	for _, s := range skipped {
		m.log.Warn("skipping invalid CNI network config", "error", s)
	}
	m.list, m.file, m.reason = list, file, err
	if err != nil {
		m.log.Warn("no CNI pod network", "reason", err.Error())
		return nil, err
	}
	m.log.Info("loaded CNI pod network", "name", list.Name, "file", file, "plugins", len(list.Plugins))
	return list, nil
}

// runtimeConf is what every plugin of the pod's networks receives.
func (m *Manager) runtimeConf(pod Pod, netns, ifName string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: pod.ID,
		NetNS:       netns,
		IfName:      ifName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", pod.Namespace},
			{"K8S_POD_NAME", pod.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", pod.ID},
			{"K8S_POD_UID", pod.UID},
		},
		CapabilityArgs: map[string]any{},
	}
	if pm := portMappings(pod.PortMappings); len(pm) > 0 {
		rt.CapabilityArgs["portMappings"] = pm
	}
	if pod.CgroupParent != "" {
		rt.CapabilityArgs["cgroupPath"] = pod.CgroupParent
	}
	return rt
}

// Setup runs CNI ADD for the pod.
func (m *Manager) Setup(ctx context.Context, pod Pod) (*Result, error) {
	if pod.ID == "" || pod.NetNSPath == "" {
		return nil, fmt.Errorf("setup network for sandbox %q: sandbox id and netns path are required: %w", pod.ID, errdefs.ErrInvalidArgument)
	}
	list, err := m.current()
	if err != nil {
		return nil, fmt.Errorf("setup network for sandbox %s: network not ready: %w: %w", pod.ID, err, errdefs.ErrFailedPrecondition)
	}
	res, err := m.add(ctx, list, pod)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		if derr := m.del(rctx, list, pod, pod.NetNSPath); derr != nil {
			m.log.Error("rollback of failed CNI ADD failed", "sandbox", pod.ID, "error", derr)
		}
		return nil, fmt.Errorf("setup network for sandbox %s: %w", pod.ID, err)
	}
	if res.IP != "" && !strings.Contains(res.IP, ":") {
		m.ensureIPForward()
	}
	m.log.Debug("pod network set up", "sandbox", pod.ID, "network", list.Name, "ip", res.IP, "additional", res.AdditionalIPs)
	return res, nil
}

func (m *Manager) add(ctx context.Context, list *libcni.NetworkConfigList, pod Pod) (_ *Result, err error) {
	defer m.observe(metrics.CNIAdd, time.Now(), &err)
	ctx, span := tracing.Start(ctx, "cni.add", tracing.PodID.String(pod.ID), tracing.Network.String(list.Name))
	defer func() { tracing.End(span, err) }()
	// lo only needs to be up, which a netlink call does in microseconds;
	// the loopback plugin would cost a process on the pod startup path.
	loErr := make(chan error, 1)
	go func() { loErr <- loopbackUp(pod.NetNSPath) }()
	actx, cancel := m.bounded(ctx, "ADD", list.Name)
	r, err := m.cni.AddNetworkList(actx, withoutIdlePortmap(list, pod), m.runtimeConf(pod, pod.NetNSPath, podIfName))
	err = whyEnded(actx, err)
	cancel()
	if lerr := <-loErr; lerr != nil && err == nil {
		err = fmt.Errorf("loopback: %w", lerr)
	}
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", list.Name, err)
	}
	res, err := podIPs(r, podIfName)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", list.Name, err)
	}
	span.SetAttributes(tracing.PodIP.String(res.IP))
	return res, nil
}

// ensureIPForward turns on IPv4 forwarding, without which a bridged pod
// reaches nothing beyond its host. The bridge plugin does it when it acts as
// gateway; other configs may not, and the kernel default is off.
func (m *Manager) ensureIPForward() {
	b, err := os.ReadFile(m.ipForward)
	if err != nil || strings.TrimSpace(string(b)) == "1" {
		return
	}
	if err := os.WriteFile(m.ipForward, []byte("1"), 0o644); err != nil {
		m.log.Warn("cannot enable IPv4 forwarding; pods may not reach other hosts", "error", err)
		return
	}
	m.log.Info("enabled IPv4 forwarding for pod traffic", "sysctl", m.ipForward)
}

// Teardown runs CNI DEL for the pod, retried; idempotent, and tolerant of a
// namespace that is already gone.
func (m *Manager) Teardown(ctx context.Context, pod Pod) error {
	if pod.ID == "" {
		return fmt.Errorf("teardown network: sandbox id is required: %w", errdefs.ErrInvalidArgument)
	}
	list, cfgErr := m.current()
	// A pin that is gone or no longer a namespace is passed as "": the spec
	// lets DEL run without a netns, and the standard plugins then release
	// IPAM and host-side state without entering it.
	netns := pod.NetNSPath
	if netns != "" && !IsNSMount(netns) {
		netns = ""
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = m.del(ctx, list, pod, netns)
		if err == nil || attempt == teardownAttempts {
			break
		}
		m.log.Warn("CNI DEL failed; retrying", "sandbox", pod.ID, "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("teardown network for sandbox %s: %w (last error: %w)", pod.ID, ctx.Err(), err)
		case <-time.After(teardownBackoff << (attempt - 1)):
		}
	}
	if err != nil {
		return fmt.Errorf("teardown network for sandbox %s: %w", pod.ID, err)
	}
	if list == nil {
		m.log.Info("no CNI network config; pod network teardown skipped", "sandbox", pod.ID, "reason", cfgErr)
	}
	return nil
}

// del runs DEL for every network the pod may be attached to: those libcni
// cached at ADD time (with the config they were added with, so a config
// changed since still tears down correctly), the current pod network if it
// has no cache entry (e.g. the cache was wiped), and loopback.
func (m *Manager) del(ctx context.Context, list *libcni.NetworkConfigList, pod Pod, netns string) (err error) {
	defer m.observe(metrics.CNIDel, time.Now(), &err)
	ctx, span := tracing.Start(ctx, "cni.del", tracing.PodID.String(pod.ID))
	defer func() { tracing.End(span, err) }()
	var errs []error
	done := map[string]bool{m.loopback.Name: true}
	atts, err := m.cni.GetCachedAttachments(pod.ID)
	if err != nil {
		m.log.Warn("cannot read CNI result cache", "sandbox", pod.ID, "error", err)
	}
	for _, a := range atts {
		if done[a.Network+"/"+a.IfName] || a.Network == m.loopback.Name {
			continue
		}
		cached, err := libcni.NetworkConfFromBytes(a.Config)
		if err != nil || len(cached.Plugins) == 0 {
			m.log.Warn("unusable cached CNI config; using current one", "sandbox", pod.ID, "network", a.Network, "error", err)
			continue
		}
		rt := m.runtimeConf(pod, netns, a.IfName)
		if len(pod.PortMappings) == 0 && a.CapabilityArgs != nil {
			// The caller may not know the mappings any more; the plugins
			// get the ones they were given on ADD.
			rt.CapabilityArgs = a.CapabilityArgs
		}
		if err := m.delList(ctx, cached, rt); err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", a.Network, err))
		}
		done[a.Network+"/"+a.IfName] = true
	}
	if list != nil && !done[list.Name+"/"+podIfName] {
		if err := m.delList(ctx, list, m.runtimeConf(pod, netns, podIfName)); err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", list.Name, err))
		}
	}
	// lo holds no host-side state (no address lease, no rules) and goes
	// away with the namespace: there is nothing to DEL there.
	return errors.Join(errs...)
}

// delList is one DEL of a network, bounded by the plugin timeout.
func (m *Manager) delList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	ctx, cancel := m.bounded(ctx, "DEL", list.Name)
	defer cancel()
	return whyEnded(ctx, m.cni.DelNetworkList(ctx, list, rt))
}

// bounded gives one CNI operation on a network network.plugin_timeout: a
// plugin that hangs is killed then (libcni runs each under the context)
// instead of holding the pod's create or teardown until an outer bound.
func (m *Manager) bounded(ctx context.Context, op, network string) (context.Context, context.CancelFunc) {
	d := m.cfg.PluginTimeout.Duration
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("CNI %s of network %s did not finish within %s (network.plugin_timeout) and was killed: %w",
		op, network, d, context.DeadlineExceeded))
}

// whyEnded adds to err, when ctx had ended, why: libcni reports a killed
// plugin as its exit status only.
func whyEnded(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	cause := context.Cause(ctx)
	if errors.Is(err, cause) {
		return err
	}
	return fmt.Errorf("%w (%v)", cause, err)
}

// loopbackUp brings lo up inside the namespace at nsPath.
func loopbackUp(nsPath string) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", nsPath, err)
	}
	return h.LinkSetUp(lo)
}

// withoutIdlePortmap drops portmap plugins from the chain of a pod that
// maps no host ports: they would only exec to do nothing, on the pod
// startup path. DEL still runs the full cached chain, where portmap's
// removal of nothing is harmless.
func withoutIdlePortmap(list *libcni.NetworkConfigList, pod Pod) *libcni.NetworkConfigList {
	for _, pm := range pod.PortMappings {
		if pm.GetHostPort() > 0 {
			return list
		}
	}
	trimmed := *list
	trimmed.Plugins = nil
	for _, p := range list.Plugins {
		if p.Network.Type != "portmap" {
			trimmed.Plugins = append(trimmed.Plugins, p)
		}
	}
	if len(trimmed.Plugins) == 0 {
		return list
	}
	return &trimmed
}
