package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"syscall"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/core"
	"github.com/crid-dev/crid/internal/fault"
	"github.com/crid-dev/crid/internal/image"
	"github.com/crid-dev/crid/internal/network"
	"github.com/crid-dev/crid/internal/server"
	"github.com/crid-dev/crid/internal/store"
	"github.com/crid-dev/crid/internal/streaming"
	"google.golang.org/grpc"
)

type daemonOptions struct {
	configPath     string
	configExplicit bool
	logLevel       string
}

func loadConfig(o *daemonOptions) (*config.Config, error) {
	cfg, err := config.Load(o.configPath, o.configExplicit)
	if err != nil {
		return nil, err
	}
	if o.logLevel != "" {
		cfg.LogLevel = o.logLevel
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
	}
	return cfg, nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// adminSocket serves crid's own (non-CRI) operations such as image import.
func adminSocket(cfg *config.Config) string { return filepath.Join(cfg.State, "admin.sock") }

func runDaemon(ctx context.Context, o daemonOptions) error {
	cfg, err := loadConfig(&o)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	// First: no process crid starts may inherit NOTIFY_SOCKET, and a
	// SIGHUP during a long start must not kill crid.
	svc := newService(log)
	hup, stopHUP := watchReload()
	defer stopHUP()
	go releaseMemory(ctx)
	// Flushed last, after the server and the core stopped (tracing.go).
	tp, stopTracing, err := newTracing(ctx, cfg.Tracing, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	if err := core.CheckCgroupDriver(cfg.CgroupDriver); err != nil {
		return err
	}
	if err := cfg.CheckRuntimePaths(); err != nil {
		return err
	}
	for _, d := range []string{cfg.Root, cfg.State, filepath.Dir(cfg.Socket)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	// nil without `[metrics] address`: nothing is recorded (metrics.go).
	promMetrics := newMetrics(cfg)
	metricsSrv, err := listenMetrics(cfg, promMetrics)
	if err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(cfg.Root, "meta.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	// Tests only: nil unless built with the faultinject tag (internal/fault).
	faults, err := fault.FromEnv(log)
	if err != nil {
		return err
	}
	st.SetFaults(faults)
	pendingTimeout, err := fault.PendingTimeout() // 0 in a default build
	if err != nil {
		return err
	}
	st.SetLogger(log.With("component", "store"))
	images, err := image.New(cfg.Images, cfg.Root, st, image.WithOnFreed(promMetrics.BytesFreed), image.WithFaults(faults))
	if err != nil {
		return fmt.Errorf("image service: %w", err)
	}
	images.SetMetrics(promMetrics)
	images.SetLogger(log.With("component", "image"))
	go images.RunCollector(ctx)
	netMgr, err := network.New(cfg.Network, cfg.State, network.WithLogger(log), network.WithMetrics(promMetrics))
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	defer netMgr.Close()
	c, err := core.New(ctx, core.Options{Config: cfg, Store: st, Images: images, Network: netMgr, Log: log, Version: version,
		Metrics: promMetrics, RecoveryProgress: svc.recoveryProgress, Faults: faults,
		PendingTimeout: pendingTimeout})
	if err != nil {
		return err
	}
	defer c.Close()
	logRuntimeHandlers(log, c.HandlerInfos(ctx))
	stream, err := streaming.NewWithLogger(cfg.Streaming, c, log.With("component", "streaming"))
	if err != nil {
		return fmt.Errorf("streaming server: %w", err)
	}
	go func() {
		if err := stream.Start(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("streaming server stopped", "error", err)
		}
	}()
	defer stream.Stop()

	lists := server.NewListCache()
	g := grpc.NewServer(
		lists.Codec(),
		tracingServerOption(cfg.Tracing, tp),
		grpc.UnaryInterceptor(server.UnaryInterceptor(log)),
		grpc.StreamInterceptor(server.StreamInterceptor(log)),
		server.MetricsUnary(promMetrics), server.MetricsStream(promMetrics),
		grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20),
		// Handlers run on long-lived workers instead of a fresh goroutine
		// per call: no stack growth on every call, ~5% off the round trip
		// of kubelet's cheap polls here.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	)
	server.RegisterCached(g, lists, c, images, stream, log)
	stopMetrics, err := serveMetrics(metricsSrv, promMetrics, c, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	lis, err := listenUnix(cfg.Socket)
	if err != nil {
		return err
	}
	admin, err := listenUnix(adminSocket(cfg))
	if err != nil {
		return err
	}
	adminSrv := &http.Server{Handler: adminHandler(images, log), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = adminSrv.Serve(admin) }()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	log.Info("crid started", "version", version, "socket", cfg.Socket, "root", cfg.Root, "state", cfg.State)
	svc.ready(ctx, cfg.Socket)
	reloadCtx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	go (&reloader{opts: o, svc: svc, images: images, log: log, running: cfg}).run(reloadCtx, hup)
	select {
	case sig := <-sigs:
		svc.stop(sig)
		log.Info("shutting down; containers keep running", "signal", sig.String())
		boundShutdown(log, shutdownBound)
	case err := <-errc:
		return fmt.Errorf("grpc server: %w", err)
	}
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.Stop()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = adminSrv.Shutdown(shutdownCtx)
	_ = os.Remove(cfg.Socket)
	_ = os.Remove(adminSocket(cfg))
	return nil
}

// shutdownBound is how long a stop may take from the signal on: within
// systemd's TimeoutStopSec (30 s, contrib/systemd/crid.service), past the
// 10 s the gRPC server gives calls in flight.
const shutdownBound = 20 * time.Second

// boundShutdown makes crid exit once bound has passed, whatever the
// shutdown still waits on. After the server stops, the core waits for its
// goroutines and the store's close for its writer, and a write the disk
// never finishes (a stalled disk) holds both for ever: without a bound
// crid would never stop on SIGTERM, and would keep the store's lock from
// the crid that replaces it. Exiting then is a crash as far as state goes,
// which crid is made to survive: bbolt keeps what was committed and the
// next start's recovery finishes or undoes the rest.
func boundShutdown(log *slog.Logger, bound time.Duration) {
	time.AfterFunc(bound, func() {
		log.Error("shutdown did not finish in time; exiting without it (a store write or a container's exit recording may be hung; the next start recovers)",
			"bound", bound)
		os.Exit(1)
	})
}

// listenUnix listens on path, replacing a stale socket left by a crash.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, err
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("socket %s is in use: is another crid running?", path)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return listenPrivate(path)
}

// listenPrivate listens on a new socket at path that is 0660 before anyone
// can connect: bind creates the file with the umask's mode, so the mode is
// set between bind and listen (a connect before listen is refused), not
// after the socket already serves as net.Listen would leave it.
func listenPrivate(path string) (net.Listener, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // net.FileListener holds its own dup
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := syscall.Listen(fd, syscall.SOMAXCONN); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	lis, err := net.FileListener(f)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// Like net.Listen's: the socket file goes when the listener closes.
	if ul, ok := lis.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	return lis, nil
}

// releaseMemory keeps crid's footprint on the node small: memory freed by
// a burst (hundreds of containers listed or removed, a big pull) is handed
// back to the kernel within seconds once crid goes quiet, instead of staying
// charged to the node until the runtime's own scavenger gets to it. A
// runtime/metrics read (microseconds) decides; a busy crid is left to its
// regular GC and scavenger, and an idle one with nothing to give back is not
// made to collect. The GC target stays Go's default: a smaller one (50 was
// tried) collects twice as often while kubelet polls, which showed as ~30%
// on the p99 of the cheap calls, for under 1 MiB less at idle.
func releaseMemory(ctx context.Context) {
	t := time.NewTicker(releaseInterval)
	defer t.Stop()
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/free:bytes"},    // free, not yet returned
		{Name: "/memory/classes/heap/objects:bytes"}, // live + dead not yet swept
		{Name: "/gc/heap/live:bytes"},                // live at the last GC
	}
	var lastCycles uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			metrics.Read(samples)
			cycles := samples[0].Value.Uint64()
			quiet := cycles == lastCycles
			lastCycles = cycles
			if quiet && shouldRelease(samples[1].Value.Uint64(), samples[2].Value.Uint64(), samples[3].Value.Uint64()) {
				// Collects first, so the burst's garbage is freed too.
				debug.FreeOSMemory()
				metrics.Read(samples[:1])
				lastCycles = samples[0].Value.Uint64()
			}
		}
	}
}

const (
	releaseInterval = 2 * time.Second
	// releaseSlack is what may stay unreturned (or uncollected) without
	// forcing a collection: below it the collection costs more than it gives.
	releaseSlack = 2 << 20
)

// shouldRelease says whether a forced collection and release would give
// back more than releaseSlack: freed heap not yet returned, or heap
// allocated since the last GC beyond what was live then (garbage, on a
// quiet daemon).
func shouldRelease(free, objects, live uint64) bool {
	return free > releaseSlack || (objects > live && objects-live > releaseSlack)
}
