package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Options configure a run. Zero values are replaced by defaults in
// (*Options).defaults.
type Options struct {
	N            int      `json:"n"`
	Concurrency  int      `json:"concurrency"`
	Warmup       int      `json:"warmup"`
	Image        string   `json:"image"`
	Command      []string `json:"command"`
	StopTimeout  int64    `json:"stop_timeout"`
	Sizes        []int    `json:"sizes"`
	PerPod       int      `json:"per_pod"`
	ListN        int      `json:"list_n"`
	PullImages   []string `json:"pull_images"`
	PullRepeat   int      `json:"pull_repeat"`
	MemoryPods   int      `json:"memory_pods"`
	DaemonPID    int      `json:"daemon_pid"`
	DaemonName   string   `json:"daemon_name"`
	MonitorNames []string `json:"monitor_names"`
	MonitorMatch string   `json:"monitor_match"`
	PauseName    string   `json:"pause_name"`
	// Floor scenario.
	RuncPath     string   `json:"runc_path"`
	PauseRootfs  string   `json:"pause_rootfs"`
	PauseArgs    []string `json:"pause_args"`
	Rootfs       string   `json:"rootfs"`
	CNIConfDir   string   `json:"cni_conf_dir"`
	CNIBinDirs   []string `json:"cni_bin_dirs"`
	WorkDir      string   `json:"work_dir"`
	KeepImages   bool     `json:"keep_images"`
	SettleMemory Duration `json:"settle_memory"`
	// Density scenario (density.go).
	DensityPods  int      `json:"density_pods"`
	DensityIdle  Duration `json:"density_idle"`
	DensityBurst int      `json:"density_burst"`
	DensityChurn int      `json:"density_churn"`
	// Pull-size scenario (pullsize.go): generated images of PullSizes MiB
	// in each of PullLayers layer counts, each compression of PullCompressions, pushed
	// to the test registry at Registry; StoreDirs hold the runtime's
	// blobs and layers (to wait until a removed image is gone).
	PullSizes            []int    `json:"pull_sizes"`
	PullLayers           []int    `json:"pull_layers"`
	PullCompressions     []string `json:"pull_compressions"`
	PullFloorConcurrency int      `json:"pull_floor_concurrency"`
	Registry             string   `json:"registry"`
	StoreDirs            []string `json:"store_dirs"`
	// Churn scenario (churn.go). MetricsURL is the daemon's Prometheus
	// endpoint, for go_goroutines; empty leaves goroutines unmeasured.
	ChurnCycles      int    `json:"churn_cycles"`
	ChurnSampleEvery int    `json:"churn_sample_every"`
	MetricsURL       string `json:"metrics_url"`
	// Leak is a crid's host objects (test/e2e/leakcheck) for the churn
	// scenario to check at the end; zero for another runtime.
	Leak LeakTarget `json:"leak"`
	// ReplayExe, when set, is run with ReplayCommand to measure the list
	// scenario's floor (see replay.go); crid-bench passes itself.
	ReplayExe string `json:"replay_exe,omitempty"`
}

// Duration marshals as a Go duration string.
type Duration struct{ time.Duration }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// DefaultImage is the container image of the benchmark pods.
const DefaultImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

func (o *Options) defaults() {
	if o.N <= 0 {
		o.N = 20
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if len(o.Command) == 0 {
		o.Command = []string{"sleep", "3600"}
	}
	if len(o.Sizes) == 0 {
		o.Sizes = []int{10, 100, 300}
	}
	if o.PerPod <= 0 {
		o.PerPod = 10
	}
	if o.ListN <= 0 {
		o.ListN = 20
	}
	if o.PullRepeat <= 0 {
		o.PullRepeat = 3
	}
	if o.MemoryPods <= 0 {
		o.MemoryPods = 10
	}
	if o.PauseName == "" {
		o.PauseName = "pause"
	}
	if o.RuncPath == "" {
		o.RuncPath = "/usr/sbin/runc"
	}
	if len(o.CNIBinDirs) == 0 {
		o.CNIBinDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}
	}
	if o.CNIConfDir == "" {
		o.CNIConfDir = "/etc/cni/net.d"
	}
	if o.SettleMemory.Duration == 0 {
		o.SettleMemory.Duration = 2 * time.Second
	}
	if o.DensityPods <= 0 {
		o.DensityPods = 250
	}
	if o.DensityIdle.Duration == 0 {
		o.DensityIdle.Duration = time.Minute
	}
	if o.DensityBurst <= 0 {
		o.DensityBurst = 50
	}
	if o.DensityChurn < 0 {
		o.DensityChurn = 0
	}
	if len(o.PullSizes) == 0 {
		o.PullSizes = []int{64, 256, 1024}
	}
	if len(o.PullLayers) == 0 {
		o.PullLayers = []int{20}
	}
	if len(o.PullCompressions) == 0 {
		o.PullCompressions = []string{"gzip", "zstd"}
	}
	if o.PullFloorConcurrency <= 0 {
		o.PullFloorConcurrency = 3
	}
	if o.ChurnCycles <= 0 {
		o.ChurnCycles = 2000
	}
	if o.ChurnSampleEvery <= 0 {
		o.ChurnSampleEvery = 100
	}
}

// Scenarios lists the scenario names in the order they run.
var scenarioOrder = []string{"floor", "pod-lifecycle", "exec-sync", "list", "pull", "pull-size", "memory", "density", "churn"}

// ScenarioNames returns every scenario name.
func ScenarioNames() []string { return append([]string(nil), scenarioOrder...) }

// Bench runs scenarios against one CRI endpoint.
type Bench struct {
	rt       runtimeapi.RuntimeServiceClient
	is       runtimeapi.ImageServiceClient
	opts     Options
	tr       *Tracker
	progress io.Writer
	logDir   string

	mu      sync.Mutex
	metrics []Metric
}

// New returns a Bench. progress receives human progress lines (stderr); it
// may be nil. The run's logs live under opts.WorkDir (a temp dir if empty),
// which Close removes.
func New(rt runtimeapi.RuntimeServiceClient, is runtimeapi.ImageServiceClient, tr *Tracker, opts Options, progress io.Writer) (*Bench, error) {
	opts.defaults()
	if progress == nil {
		progress = io.Discard
	}
	if opts.WorkDir == "" {
		d, err := os.MkdirTemp("", "crid-bench-"+tr.RunID()+"-")
		if err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
		opts.WorkDir = d
	}
	logDir := filepath.Join(opts.WorkDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	return &Bench{rt: rt, is: is, opts: opts, tr: tr, progress: progress, logDir: logDir}, nil
}

// Options returns the effective options.
func (b *Bench) Options() Options { return b.opts }

// Metrics returns what was measured so far.
func (b *Bench) Metrics() []Metric {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Metric(nil), b.metrics...)
}

func (b *Bench) add(ms ...Metric) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.metrics = append(b.metrics, ms...)
}

func (b *Bench) progressf(format string, args ...any) {
	fmt.Fprintf(b.progress, "[crid-bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Cleanup removes every object the run created and the work dir.
func (b *Bench) Cleanup(ctx context.Context, settle time.Duration) error {
	err := b.tr.Cleanup(ctx, b.rt, b.is, CleanupOptions{KeepImages: b.opts.KeepImages, Settle: settle})
	if rmErr := os.RemoveAll(b.opts.WorkDir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("remove work dir: %w", rmErr))
	}
	return err
}

// Run runs the named scenarios in the canonical order. It stops at the
// first failing scenario; metrics measured so far stay available.
func (b *Bench) Run(ctx context.Context, names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		known := false
		for _, s := range scenarioOrder {
			known = known || s == n
		}
		if !known {
			return fmt.Errorf("unknown scenario %q (known: %s)", n, strings.Join(scenarioOrder, ", "))
		}
		want[n] = true
	}
	needsImage := want["pod-lifecycle"] || want["exec-sync"] || want["list"] || want["memory"] || want["density"] || want["churn"]
	if needsImage {
		if err := b.ensureImage(ctx, b.opts.Image); err != nil {
			return err
		}
	}
	for _, s := range scenarioOrder {
		if !want[s] {
			continue
		}
		b.progressf("scenario %s", s)
		var err error
		switch s {
		case "floor":
			err = b.floor(ctx)
		case "pod-lifecycle":
			err = b.podLifecycle(ctx)
		case "exec-sync":
			err = b.execSync(ctx)
		case "list":
			err = b.list(ctx)
		case "pull":
			err = b.pull(ctx)
		case "memory":
			err = b.memory(ctx)
		case "density":
			err = b.density(ctx)
		case "pull-size":
			err = b.pullSize(ctx)
		case "churn":
			err = b.churn(ctx)
		}
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s, err)
		}
	}
	return nil
}

// ensureImage pulls ref unless present, outside any measurement.
func (b *Bench) ensureImage(ctx context.Context, ref string) error {
	present, err := b.imagePresent(ctx, ref)
	if err != nil {
		return err
	}
	if present {
		return nil
	}
	b.progressf("pulling %s", ref)
	if _, err := b.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	b.tr.AddImage(ref)
	return nil
}

func (b *Bench) imagePresent(ctx context.Context, ref string) (bool, error) {
	st, err := b.is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("image status %s: %w", ref, err)
	}
	return st.GetImage() != nil, nil
}

func (b *Bench) podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name:      name,
			Uid:       name,
			Namespace: Namespace,
		},
		Hostname:     "bench",
		LogDirectory: filepath.Join(b.logDir, name),
		Labels:       b.tr.Labels(),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

func (b *Bench) containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: b.opts.Image},
		Command:  b.opts.Command,
		LogPath:  name + ".log",
		Labels:   b.tr.Labels(),
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

// runPod creates and tracks a pod sandbox.
func (b *Bench) runPod(ctx context.Context, name string) (string, *runtimeapi.PodSandboxConfig, error) {
	cfg := b.podConfig(name)
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return "", nil, fmt.Errorf("pod log dir: %w", err)
	}
	r, err := b.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", nil, fmt.Errorf("run pod sandbox %s: %w", name, err)
	}
	b.tr.AddPod(r.GetPodSandboxId())
	return r.GetPodSandboxId(), cfg, nil
}

func (b *Bench) createContainer(ctx context.Context, podID string, podCfg *runtimeapi.PodSandboxConfig, name string) (string, error) {
	r, err := b.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: b.containerConfig(name), SandboxConfig: podCfg})
	if err != nil {
		return "", fmt.Errorf("create container %s in %s: %w", name, podID, err)
	}
	b.tr.AddContainer(r.GetContainerId())
	return r.GetContainerId(), nil
}

func (b *Bench) startContainer(ctx context.Context, id string) error {
	if _, err := b.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// teardownPod stops and removes a pod with its containers, untimed.
func (b *Bench) teardownPod(ctx context.Context, podID string, ctrIDs []string) error {
	for _, c := range ctrIDs {
		if err := removeContainer(ctx, b.rt, c); err != nil {
			return err
		}
		b.tr.ContainerRemoved(c)
	}
	if err := removePod(ctx, b.rt, podID); err != nil {
		return err
	}
	b.tr.PodRemoved(podID)
	return nil
}

// timed runs fn and returns its duration.
func timed(fn func() error) (time.Duration, error) {
	t := time.Now()
	err := fn()
	return time.Since(t), err
}

// parallel runs fn(i) for i in [0,n) on c workers, stopping handing out work
// at the first error or when ctx ends.
func parallel(ctx context.Context, n, c int, fn func(ctx context.Context, i int) error) error {
	if c < 1 {
		c = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// collect runs fn n times on c workers, ticking tk after each, and returns
// the results (in completion order) and the wall time of the whole batch.
func collect[T any](ctx context.Context, tk *progressTicker, n, c int, fn func(ctx context.Context, i int) (T, error)) ([]T, time.Duration, error) {
	var mu sync.Mutex
	out := make([]T, 0, n)
	start := time.Now()
	err := parallel(ctx, n, c, func(ctx context.Context, i int) error {
		v, err := fn(ctx, i)
		if err != nil {
			return err
		}
		mu.Lock()
		out = append(out, v)
		mu.Unlock()
		tk.inc()
		return nil
	})
	return out, time.Since(start), err
}

// progressTicker reports done/total at most every interval.
type progressTicker struct {
	b     *Bench
	what  string
	total int
	mu    sync.Mutex
	done  int
	last  time.Time
}

func (b *Bench) ticker(what string, total int) *progressTicker {
	return &progressTicker{b: b, what: what, total: total, last: time.Now()}
}

func (p *progressTicker) inc() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if p.done == p.total || time.Since(p.last) >= 3*time.Second {
		p.last = time.Now()
		p.b.progressf("%s: %d/%d", p.what, p.done, p.total)
	}
}

func sortedInts(in []int) []int {
	out := append([]int(nil), in...)
	sort.Ints(out)
	return out
}
