package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The churn scenario: ChurnCycles pod cycles one after the other (the
// pod-lifecycle cycle: RunPodSandbox, CreateContainer, StartContainer,
// StopContainer, StopPodSandbox, RemoveContainer, RemovePodSandbox) on an
// otherwise empty node, sampling the daemon's RSS, open fds, threads and
// goroutines every ChurnSampleEvery cycles. A leak is a slope: the
// scenario reports each figure's first and last sample and the
// least-squares slope per 1000 cycles, and at the end checks that no pod,
// container or monitor/shim process of the run is left.

// churnSample is the daemon's footprint after some cycles.
type churnSample struct {
	cycles int
	fp     daemonFootprint
	// goroutines is -1 without --metrics-url.
	goroutines int
}

func (b *Bench) churn(ctx context.Context) error {
	o := b.opts
	sel, err := b.treeSelector()
	if err != nil {
		return err
	}
	// One untimed cycle first: lazily started parts of the daemon (the
	// pause image, CNI, caches) are not growth.
	if _, err := b.cycle(ctx, b.tr.Name("churn-warm", 0)); err != nil {
		return err
	}
	monitors0, err := countMonitors("/proc", sel)
	if err != nil {
		return err
	}
	leak, err := b.leakBaseline(ctx, sel.daemonPID)
	if err != nil {
		return err
	}
	var samples []churnSample
	sample := func(n int) error {
		s, err := b.churnSample(ctx, sel.daemonPID, n)
		if err == nil {
			samples = append(samples, s)
		}
		return err
	}
	if err := sample(0); err != nil {
		return err
	}
	cycles, err := b.timedCycles(ctx, "churn", o.ChurnCycles, func(i int) error {
		if i%o.ChurnSampleEvery == 0 || i == o.ChurnCycles {
			return sample(i)
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.add(churnMetrics(o.ChurnCycles, samples, cycles)...)
	if err := b.churnLeftovers(ctx, sel, monitors0); err != nil {
		return err
	}
	return b.leakCheck(ctx, leak)
}

// churnSample reads the daemon's footprint and goroutines.
func (b *Bench) churnSample(ctx context.Context, pid, cycles int) (churnSample, error) {
	fp, err := readFootprint("/proc", pid)
	if err != nil {
		return churnSample{}, fmt.Errorf("churn sample at %d cycles: %w", cycles, err)
	}
	s := churnSample{cycles: cycles, fp: fp, goroutines: -1}
	if b.opts.MetricsURL != "" {
		if s.goroutines, err = scrapeGoroutines(ctx, b.opts.MetricsURL); err != nil {
			return s, fmt.Errorf("churn sample at %d cycles: %w", cycles, err)
		}
	}
	return s, nil
}

// scrapeGoroutines reads go_goroutines (the Go client's standard gauge,
// which crid's and containerd's metrics endpoints both export) from a
// Prometheus text endpoint.
func scrapeGoroutines(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if n, ok := parseGoroutines(sc.Text()); ok {
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	return 0, fmt.Errorf("scrape %s: no go_goroutines", url)
}

// parseGoroutines reads a "go_goroutines N" sample line.
func parseGoroutines(line string) (int, bool) {
	v, ok := strings.CutPrefix(line, "go_goroutines ")
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return 0, false
	}
	return int(f), true
}

// slopePer1000 is the least-squares slope of ys over xs, per 1000 x.
func slopePer1000(xs, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den * 1000
}

// churnMetrics: per sample (group cycles=N, for the curves), and per
// figure its first and last sample and slope (group churn=N).
func churnMetrics(n int, samples []churnSample, cycles []time.Duration) []Metric {
	type figure struct {
		name, unit string
		get        func(churnSample) float64
	}
	figs := []figure{
		{"daemon RSS", "MiB", func(s churnSample) float64 { return float64(s.fp.rssKiB) / 1024 }},
		{"daemon fds", "", func(s churnSample) float64 { return float64(s.fp.fds) }},
		{"daemon threads", "", func(s churnSample) float64 { return float64(s.fp.threads) }},
	}
	if len(samples) > 0 && samples[0].goroutines >= 0 {
		figs = append(figs, figure{"daemon goroutines", "", func(s churnSample) float64 { return float64(s.goroutines) }})
	}
	g := fmt.Sprintf("churn=%d", n)
	var ms []Metric
	if half := len(cycles) / 2; half > 0 {
		ms = append(ms, latencyMetrics("churn", g, "cycle, first half", Summarize(cycles[:half]))...)
		ms = append(ms, latencyMetrics("churn", g, "cycle, second half", Summarize(cycles[half:]))...)
	}
	for _, f := range figs {
		xs, ys := make([]float64, len(samples)), make([]float64, len(samples))
		for i, s := range samples {
			xs[i], ys[i] = float64(s.cycles), f.get(s)
			ms = append(ms, Metric{"churn", fmt.Sprintf("cycles=%d", s.cycles), f.name, f.unit, ys[i]})
		}
		if len(samples) == 0 {
			continue
		}
		unit := f.unit
		if unit != "" {
			unit += " "
		}
		// The second half's slope leaves out what the first cycles grow
		// once (code paths paged in, caches, the Go heap's first growth):
		// a leak keeps its slope there.
		h := len(xs) / 2
		ms = append(ms,
			Metric{"churn", g, f.name + ", first sample", f.unit, ys[0]},
			Metric{"churn", g, f.name + ", last sample", f.unit, ys[len(ys)-1]},
			Metric{"churn", g, f.name + " slope", unit + "per 1000 cycles", slopePer1000(xs, ys)},
			Metric{"churn", g, f.name + " slope, second half", unit + "per 1000 cycles", slopePer1000(xs[h:], ys[h:])})
	}
	return ms
}

// churnLeftovers checks that the run left no pod, container or monitor
// (shim) process behind: the CRI lists nothing labelled with the run,
// and the monitors are as many as before the churn.
func (b *Bench) churnLeftovers(ctx context.Context, sel treeSelector, monitors0 int) error {
	g := fmt.Sprintf("churn=%d", b.opts.ChurnCycles)
	filter := b.tr.Labels()
	pods, err := b.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: filter}})
	if err != nil {
		return fmt.Errorf("churn: list pods: %w", err)
	}
	ctrs, err := b.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: filter}})
	if err != nil {
		return fmt.Errorf("churn: list containers: %w", err)
	}
	// Monitors and shims exit shortly after their container is removed.
	var monitors int
	for deadline := time.Now().Add(10 * time.Second); ; {
		if monitors, err = countMonitors("/proc", sel); err != nil {
			return err
		}
		if monitors <= monitors0 || time.Now().After(deadline) {
			break
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	b.add(Metric{"churn", g, "pods left", "", float64(len(pods.GetItems()))},
		Metric{"churn", g, "containers left", "", float64(len(ctrs.GetContainers()))},
		Metric{"churn", g, "monitor/shim processes left", "", float64(monitors - monitors0)})
	if n := len(pods.GetItems()) + len(ctrs.GetContainers()); n > 0 || monitors > monitors0 {
		return fmt.Errorf("churn: left %d pods, %d containers and %d monitor/shim processes more than before", len(pods.GetItems()), len(ctrs.GetContainers()), monitors-monitors0)
	}
	return nil
}

// countMonitors counts the runtime's monitor (shim) processes.
func countMonitors(procRoot string, sel treeSelector) (int, error) {
	procs, err := readProcs(procRoot)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, role := range classify(procs, sel) {
		if role == "monitor" {
			n++
		}
	}
	return n, nil
}
