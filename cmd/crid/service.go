package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/image"
	"github.com/crid-dev/crid/internal/sdnotify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// How crid keeps systemd's start timeout from firing while recovery makes
// progress: every message grants recoveryExtend more, and one goes out at
// most every recoveryNotifyEvery. The grant is long enough for the slowest
// single step of recovery (cleaning up a half-created pod: runc kill and
// delete, a CNI DEL with its plugin timeouts); a recovery stuck in one
// step longer than that is a hang, and systemd restarts crid.
const (
	recoveryExtend      = 2 * time.Minute
	recoveryNotifyEvery = time.Second
	// readyProbeTimeout bounds crid's own call on its CRI socket before it
	// reports ready.
	readyProbeTimeout = 10 * time.Second
)

// service is crid's side of the service manager: the sd_notify messages
// of start, recovery, reload and stop, in an order that never reports a
// stopping crid ready again.
type service struct {
	notify *sdnotify.Notifier
	log    *slog.Logger

	mu       sync.Mutex
	stopping bool
	// lastProgress is when recovery last reported progress.
	lastProgress time.Time
}

// newService reads $NOTIFY_SOCKET and removes it from crid's environment
// before crid starts any process. A socket crid cannot use is logged and
// ignored: crid runs as it would without systemd.
func newService(log *slog.Logger) *service {
	n, err := sdnotify.FromEnv()
	if err != nil {
		log.Warn("not notifying the service manager", "error", err)
	}
	return &service{notify: n, log: log}
}

// send sends a message unless crid is stopping (stop may pass force),
// logging a failure: the service manager's view is advisory to crid.
func (s *service) send(force bool, what string, msg func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping && !force {
		return
	}
	if err := msg(); err != nil {
		s.log.Warn("sd_notify failed", "message", what, "error", err)
	}
}

// recoveryProgress is core.Options.RecoveryProgress: done of total pods
// and containers are recovered. It extends the start timeout as long as
// recovery moves, throttled; nothing is sent when there is nothing to
// recover.
func (s *service) recoveryProgress(done, total int) {
	if total == 0 || !s.notify.Enabled() {
		return
	}
	now := time.Now()
	s.mu.Lock()
	due := done == 0 || done == total || now.Sub(s.lastProgress) >= recoveryNotifyEvery
	if due {
		s.lastProgress = now
	}
	s.mu.Unlock()
	if !due {
		return
	}
	status := fmt.Sprintf("recovering state: %d of %d pods and containers", done, total)
	s.send(false, "EXTEND_TIMEOUT_USEC", func() error { return s.notify.Extend(recoveryExtend, status) })
}

// ready reports crid ready once a CRI call on socket succeeds: the socket
// is bound before the gRPC server serves it, and kubelet (ordered after
// crid) must find it answering. Without a service manager it does nothing.
func (s *service) ready(ctx context.Context, socket string) {
	if !s.notify.Enabled() {
		return
	}
	if err := probeCRI(ctx, socket); err != nil {
		s.log.Error("not reporting ready: the CRI socket does not answer", "socket", socket, "error", err)
		return
	}
	s.send(false, "READY=1", func() error { return s.notify.Ready("serving CRI on " + socket) })
}

// stop reports that crid is shutting down.
func (s *service) stop(sig os.Signal) {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.send(true, "STOPPING=1", func() error {
		return s.notify.Stopping("stopping on " + sig.String() + "; containers keep running")
	})
}

// probeCRI calls Version on the CRI socket.
func probeCRI(ctx context.Context, socket string) error {
	ctx, cancel := context.WithTimeout(ctx, readyProbeTimeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if _, err := runtime.NewRuntimeServiceClient(conn).Version(ctx, &runtime.VersionRequest{}, grpc.WaitForReady(true)); err != nil {
		return fmt.Errorf("CRI call: %w", err)
	}
	return nil
}

// reloader applies the config file again on SIGHUP: the keys
// config.LiveKeys names go to the image service; other changes are logged
// as waiting for a restart; a file that does not load is refused and the
// running config kept. Connections, the gRPC server and running pulls are
// not touched.
type reloader struct {
	opts    daemonOptions
	svc     *service
	images  *image.Service
	log     *slog.Logger
	running *config.Config
}

// watchReload registers for SIGHUP at once, so that one sent during a long
// start neither kills crid (SIGHUP's default action) nor is lost; the
// reloads run in run.
func watchReload() (hup chan os.Signal, stop func()) {
	hup = make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// run reloads on each signal on hup until ctx ends.
func (r *reloader) run(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload()
		}
	}
}

// reload reads the config file once and applies what it can.
func (r *reloader) reload() {
	r.svc.send(false, "RELOADING=1", func() error { return r.svc.notify.Reloading("reloading " + r.opts.configPath) })
	status := r.apply()
	r.svc.send(false, "READY=1", func() error { return r.svc.notify.Ready(status) })
}

// apply loads the file and swaps in its live keys; it returns the status
// line for the service manager.
func (r *reloader) apply() string {
	next, err := loadConfig(&r.opts)
	if err != nil {
		r.log.Error("config reload refused; keeping the running config", "config", r.opts.configPath, "error", err)
		return "config reload refused (see the log); running with the previous config"
	}
	live, restart := config.ChangedKeys(r.running, next)
	if len(restart) > 0 {
		r.log.Warn("config keys changed that take effect only when crid restarts", "config", r.opts.configPath, "keys", restart)
	}
	r.images.Reload(next.Images)
	r.running = config.WithLive(r.running, next)
	r.log.Info("config reloaded", "config", r.opts.configPath, "applied", live, "restart_needed", restart)
	if len(restart) > 0 {
		return fmt.Sprintf("config reloaded; %d changed key(s) wait for a restart", len(restart))
	}
	return "config reloaded"
}
