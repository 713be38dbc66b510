// Package core is crid's container runtime core: pod sandboxes and
// containers, their lifecycle, state, and recovery after restart. It speaks
// CRI message types but knows nothing of gRPC; errors are errdefs errors
// that the server package maps to status codes.
//
// Concurrency: s.mu guards the indexes (maps, name reservations) and is held
// only for map access. Each sandbox and container has its own opMu that
// serialises lifecycle operations on it, and a state mutex for the fields
// that status and list calls read, so kubelet's polls never wait behind a
// slow stop or CNI call.
package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/apparmor"
	"github.com/crid-dev/crid/internal/checkpoint"
	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/fault"
	"github.com/crid-dev/crid/internal/image"
	"github.com/crid-dev/crid/internal/metrics"
	"github.com/crid-dev/crid/internal/network"
	"github.com/crid-dev/crid/internal/nri"
	"github.com/crid-dev/crid/internal/nsexec"
	"github.com/crid-dev/crid/internal/runc"
	"github.com/crid-dev/crid/internal/store"
	"github.com/crid-dev/crid/internal/tracing"
)

// Options are the core's collaborators.
type Options struct {
	Config  *config.Config
	Store   *store.Store
	Images  *image.Service
	Network *network.Manager
	Log     *slog.Logger
	// Version is crid's own version, reported by Version.
	Version string
	// Metrics records the core's work (instrument.go); nil records nothing.
	Metrics *metrics.Metrics
	// RecoveryProgress, when set, is told how far recovery is: done of
	// total recorded pods and containers (crid extends systemd's start
	// timeout with it).
	RecoveryProgress func(done, total int)
	// Faults injects failures at named steps (tests only: nil unless crid
	// was built with the faultinject tag; see internal/fault).
	Faults *fault.Injector
	// PendingTimeout bounds a create that outlived its caller (0: 4
	// minutes, pending.go). Tests only: fault.PendingTimeout, which a
	// default build never sets.
	PendingTimeout time.Duration
}

// Service is the runtime core.
type Service struct {
	cfg      *config.Config
	st       *store.Store
	images   *image.Service
	net      *network.Manager
	log      *slog.Logger
	version  string
	runtimes map[string]*runc.Runtime
	monitor  string // crid-monitor binary
	// nsexec runs exec without the runtime's CLI; nil if not installed.
	nsexec *nsexec.Helper
	minOOM int
	events *eventHub
	// idmapProbe caches whether idmapped overlays work here; the kernel
	// does not change under a running crid, and Status is polled.
	idmapProbe func() error
	// criu answers whether checkpointing can work here, asked once.
	criu   *checkpoint.Probe
	faults *fault.Injector

	// ctx lives as long as the service; watchers run under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.RWMutex
	sandboxes  map[string]*sandbox
	containers map[string]*container
	names      map[string]string // reserved name -> id

	// pending are creates that may outlive their caller (pending.go).
	pending *pendingOps
	// trash deletes removed containers' files in the background (trash.go).
	trash *trash
	// metrics records runtime calls, execs and OOM kills; nil: nothing.
	metrics *metrics.Metrics
	// nri relays lifecycle events to NRI plugins (nri.go); nil: NRI is off.
	nri *nri.NRI
	// apparmor loads crid's default AppArmor profile (apparmor.go).
	apparmor *apparmor.Loader
}

// pinDir holds the IPC and UTS pins of pods without a pause (podns.go):
// a shared mount point of its own, like the netns dir, so that unpinning
// frees the namespaces in every mount namespace that copied it.
func (s *Service) pinDir() string { return filepath.Join(s.cfg.State, "nspins") }

// New creates the core and recovers every sandbox and container recorded
// in the store.
func New(ctx context.Context, o Options) (*Service, error) {
	cfg := o.Config
	s := &Service{
		cfg:        cfg,
		st:         o.Store,
		images:     o.Images,
		net:        o.Network,
		log:        o.Log,
		version:    o.Version,
		faults:     o.Faults,
		runtimes:   map[string]*runc.Runtime{},
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
		names:      map[string]string{},
		pending:    newPendingOps(o.PendingTimeout, o.Log),
		events:     newEventHub(),
		metrics:    o.Metrics,
		apparmor:   apparmor.NewLoader(cfg.State, o.Log),
	}
	s.trash = newTrash(o.Log, cfg.Root)
	if err := network.SharedPinDir(s.pinDir()); err != nil {
		return nil, err
	}
	if err := CheckCgroupDriver(cfg.CgroupDriver); err != nil {
		return nil, err
	}
	s.idmapProbe = sync.OnceValue(func() error { return probeIdmappedOverlay(cfg.Root) })
	s.criu = checkpoint.NewProbe("")
	s.ctx, s.cancel = context.WithCancel(context.Background())
	mon, err := findMonitor(cfg.Runtime.MonitorPath)
	if err != nil {
		return nil, err
	}
	s.monitor = mon
	if s.nsexec, err = loadNsexec(cfg.Runtime.NsexecPath, s.log); err != nil {
		return nil, err
	}
	if s.nsexec == nil {
		s.log.Warn("crid-nsexec not found: exec goes through the OCI runtime's CLI (slower)")
	}
	for name, h := range cfg.Runtime.Handlers {
		path, err := exec.LookPath(h.Path)
		if err != nil {
			return nil, fmt.Errorf("runtime handler %s: %w", name, err)
		}
		root := cfg.HandlerRoot(name)
		if err := ensureDir(root, modePrivate); err != nil {
			return nil, fmt.Errorf("runtime handler %s: %w", name, err)
		}
		// The monitor binary doubles as the exec helper that reaps exec'd
		// processes, so a background child cannot hold ExecSync open.
		s.runtimes[name] = &runc.Runtime{Name: name, Path: path, Root: root, ExecHelper: mon, Observe: tracing.RuntimeCall(name),
			Timeout: cfg.Runtime.CommandTimeout.Duration,
			// The specs' cgroupsPath follows cgroup_driver (oci.CgroupsPath).
			SystemdCgroup: cfg.CgroupDriver == "systemd"}
	}
	s.instrument()
	s.minOOM = -1000
	if cfg.Runtime.RestrictOOMScoreAdj {
		if v, err := readOOMScoreAdj(); err == nil {
			s.minOOM = v
		} else {
			return nil, fmt.Errorf("read own oom_score_adj: %w", err)
		}
	}
	for _, d := range []string{
		filepath.Join(cfg.Root, "sandboxes"), filepath.Join(cfg.Root, "containers"),
		filepath.Join(cfg.State, "sandboxes"), filepath.Join(cfg.State, "containers"),
	} {
		if err := ensureDir(d, modeCollection); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	// NRI exists before recovery starts the exit watchers that use it,
	// and listens only after it, so that a plugin is synchronized with
	// every recovered pod and container.
	if s.nri, err = nri.New(cfg.NRI, "crid", s.version, nriDomain{s}, s.nriInjectCDI, s.log); err != nil {
		return nil, err
	}
	if err := s.removeStaleCheckpoints(); err != nil {
		return nil, err
	}
	s.loadAppArmorAtStart(ctx)
	if err := s.recover(ctx, o.RecoveryProgress); err != nil {
		return nil, fmt.Errorf("recover state: %w", err)
	}
	if err := s.nri.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops the watchers. Containers and their monitors keep running.
func (s *Service) Close() {
	s.nri.Stop()
	s.cancel()
	s.wg.Wait()
	if s.nsexec != nil {
		s.nsexec.Close()
	}
}

func findMonitor(configured string) (string, error) {
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("monitor binary: %w", err)
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "crid-monitor")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("crid-monitor")
	if err != nil {
		return "", fmt.Errorf("monitor binary crid-monitor not found next to crid nor in $PATH: %w", err)
	}
	return p, nil
}

// loadNsexec loads the exec helper: the configured path (an error if it is
// missing), or next to crid, or from $PATH; nil if none is installed or
// the config says "none".
func loadNsexec(configured string, log *slog.Logger) (*nsexec.Helper, error) {
	if configured == "none" {
		return nil, nil
	}
	path := configured
	if path == "" {
		if self, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(self), nsexec.BinaryName); fileExists(p) {
				path = p
			}
		}
		if path == "" {
			p, err := exec.LookPath(nsexec.BinaryName)
			if err != nil {
				return nil, nil
			}
			path = p
		}
	}
	h, err := nsexec.Load(path, log)
	if err != nil {
		return nil, fmt.Errorf("nsexec_path: %w", err)
	}
	return h, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// runtimeFor returns the OCI runtime of a handler ("" = default).
func (s *Service) runtimeFor(handler string) (*runc.Runtime, error) {
	if handler == "" {
		handler = s.cfg.Runtime.DefaultHandler
	}
	r, ok := s.runtimes[handler]
	if !ok {
		return nil, fmt.Errorf("runtime handler %q is not configured: %w", handler, errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// handlerConfig is the configuration of a handler ("" = default).
func (s *Service) handlerConfig(handler string) config.Handler {
	if handler == "" {
		handler = s.cfg.Runtime.DefaultHandler
	}
	return s.cfg.Runtime.Handlers[handler]
}

// reserveName reserves name for id; AlreadyExists if another id holds it.
func (s *Service) reserveName(name, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.names[name]; ok && other != id {
		return fmt.Errorf("name %q is reserved for %s: %w", name, other, errdefs.ErrAlreadyExists)
	}
	s.names[name] = id
	return nil
}

func (s *Service) releaseName(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names[name] == id {
		delete(s.names, name)
	}
}

// ImageInUse reports whether a container (as its rootfs or an image
// volume) or sandbox uses the image.
func (s *Service) ImageInUse(imageID string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.containers {
		if c.rec.usesImage(imageID) {
			return true
		}
	}
	for _, sb := range s.sandboxes {
		if sb.rec.ImageID == imageID {
			return true
		}
	}
	return false
}

// cleanupCtx gives rollback and teardown their own deadline, so that a
// request cancelled by its client still cleans up what it created.
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// undo collects rollback steps and runs them in reverse on failure.
type undo struct {
	log   *slog.Logger
	steps []func(context.Context) error
}

func (u *undo) add(f func(context.Context) error) { u.steps = append(u.steps, f) }

func (u *undo) run() {
	ctx, cancel := cleanupCtx()
	defer cancel()
	for i := len(u.steps) - 1; i >= 0; i-- {
		if err := u.steps[i](ctx); err != nil {
			u.log.Error("rollback step failed", "error", err)
		}
	}
}

// specVersion is the ociVersion written into specs for rt. Older runtimes
// (crun 1.8 in Debian 12) refuse specs newer than they know although
// nothing crid writes needs a newer version, so crid writes the newest
// version the runtime reports, or 1.0.2 when it reports none.
func (s *Service) specVersion(ctx context.Context, rt *runc.Runtime) string {
	if f, err := rt.Features(ctx); err == nil && f.OCIVersionMax != "" {
		return f.OCIVersionMax
	}
	return "1.0.2"
}

// CheckCgroupDriver fails when the configured cgroup driver cannot work on
// this host. The daemon calls it before touching anything.
func CheckCgroupDriver(driver string) error {
	if driver != "systemd" {
		return nil
	}
	if err := systemdAvailable(); err != nil {
		return fmt.Errorf("key cgroup_driver: systemd cgroup driver unavailable: %w; use cgroup_driver = \"cgroupfs\"", err)
	}
	return nil
}

// systemdAvailable reports why the systemd cgroup driver cannot work: it
// needs systemd as PID 1 to create scopes and slices.
func systemdAvailable() error {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		comm, _ := os.ReadFile("/proc/1/comm")
		return fmt.Errorf("systemd is not running as PID 1 (PID 1 is %q)", strings.TrimSpace(string(comm)))
	}
	return nil
}

// lookupID finds an object by full id or unique id prefix, as crictl lets
// users type. The caller holds s.mu.
func lookupID[T any](objs map[string]T, id, kind string) (T, error) {
	var zero T
	if id == "" {
		return zero, fmt.Errorf("%s id is required: %w", kind, errdefs.ErrInvalidArgument)
	}
	if o, ok := objs[id]; ok {
		return o, nil
	}
	found, n := zero, 0
	for k, o := range objs {
		if hasPrefix(k, id) {
			found, n = o, n+1
		}
	}
	switch n {
	case 0:
		return zero, fmt.Errorf("%s %q: %w", kind, id, errdefs.ErrNotFound)
	case 1:
		return found, nil
	}
	return zero, fmt.Errorf("%s id prefix %q is ambiguous: %w", kind, id, errdefs.ErrInvalidArgument)
}

// fault is a fault-injection point named op/step (internal/fault): it does
// nothing unless crid was built with the faultinject tag and CRID_FAULTS
// names the point.
func (s *Service) fault(ctx context.Context, op, step string) error {
	if s.faults == nil {
		return nil
	}
	return s.faults.At(ctx, op+"/"+step)
}
