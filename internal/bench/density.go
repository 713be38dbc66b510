package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The density scenario: a node full of pods, as kubelet fills it.
//   - DensityPods pods of 2 containers each are started one after the
//     other: the startup latency as the node fills, and then the memory
//     each pod costs (the memory scenario's tree accounting);
//   - the runtime's CPU use while those pods just run (DensityIdle);
//   - the list calls kubelet makes every second or so, at that size;
//   - a burst of DensityBurst RunPodSandbox+CreateContainer+StartContainer
//     at once on top (p50/p99; a failure fails the scenario);
//   - DensityChurn pod cycles, with the daemon's RSS, fds and threads
//     before and after (growth is a leak).

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// treeCPU returns the CPU time the runtime's tree (daemon, monitors or
// shims, their children but not the workload's processes) has used.
func treeCPU(procRoot string, sel treeSelector) (time.Duration, error) {
	procs, err := readProcs(procRoot)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for pid, role := range classify(procs, sel) {
		if role != "daemon" && role != "monitor" && role != "pause" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		t, ok := statCPUTicks(data)
		if ok {
			ticks += t
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// statCPUTicks returns utime+stime from a /proc/<pid>/stat line (fields
// 14 and 15, counted after the parenthesised command name).
func statCPUTicks(data []byte) (int64, bool) {
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, false
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + st, true
}

// daemonFootprint is what a leak grows: resident memory, open fds and
// threads of the daemon process.
type daemonFootprint struct {
	rssKiB  int64
	fds     int
	threads int
}

func readFootprint(procRoot string, pid int) (daemonFootprint, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	rss, _, err := readRollup(filepath.Join(dir, "smaps_rollup"))
	if err != nil {
		return daemonFootprint{}, err
	}
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return daemonFootprint{}, err
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return daemonFootprint{}, err
	}
	threads := 0
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return daemonFootprint{rssKiB: rss, fds: len(fds), threads: threads}, nil
}

// densityPod is one pod of the scenario with its containers.
type densityPod struct {
	id   string
	ctrs []string
}

// startDensityPod runs a pod with two containers and returns how long
// the three kinds of call took together.
func (b *Bench) startDensityPod(ctx context.Context, name string) (densityPod, time.Duration, error) {
	start := time.Now()
	id, cfg, err := b.runPod(ctx, name)
	if err != nil {
		return densityPod{}, 0, err
	}
	p := densityPod{id: id}
	for _, c := range []string{"a", "b"} {
		cid, err := b.createContainer(ctx, id, cfg, c)
		if err != nil {
			return p, 0, err
		}
		p.ctrs = append(p.ctrs, cid)
		if err := b.startContainer(ctx, cid); err != nil {
			return p, 0, err
		}
	}
	return p, time.Since(start), nil
}

func (b *Bench) density(ctx context.Context) error {
	o := b.opts
	sel, err := b.treeSelector()
	if err != nil {
		return err
	}
	idle, err := measureTree("/proc", sel)
	if err != nil {
		return err
	}
	var pods []densityPod
	defer func() {
		for _, p := range pods {
			_ = b.teardownPod(ctx, p.id, p.ctrs)
		}
	}()
	group := fmt.Sprintf("pods=%d", o.DensityPods)

	// Fill the node.
	tk := b.ticker("density fill", o.DensityPods)
	var fill []time.Duration
	for i := 0; i < o.DensityPods; i++ {
		p, d, err := b.startDensityPod(ctx, b.tr.Name("dens", i))
		pods = append(pods, p)
		if err != nil {
			return err
		}
		fill = append(fill, d)
		tk.inc()
	}
	half := len(fill) / 2
	b.add(latencyMetrics("density", group, "pod startup, first half (runp+2×create+start)", Summarize(fill[:half]))...)
	b.add(latencyMetrics("density", group, "pod startup, second half", Summarize(fill[half:]))...)

	// Memory and idle CPU with the node full.
	if err := sleepCtx(ctx, o.SettleMemory.Duration); err != nil {
		return err
	}
	loaded, err := measureTree("/proc", sel)
	if err != nil {
		return err
	}
	b.add(densityMemoryMetrics(group, idle, loaded, len(pods))...)
	cpu0, err := treeCPU("/proc", sel)
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, o.DensityIdle.Duration); err != nil {
		return err
	}
	cpu1, err := treeCPU("/proc", sel)
	if err != nil {
		return err
	}
	perMin := (cpu1 - cpu0).Seconds() * 60 / o.DensityIdle.Seconds()
	b.add(Metric{"density", group, "idle CPU of the runtime (daemon+monitors+pause)", "s/min", perMin})

	// The list calls at this size.
	var ctrs []string
	for _, p := range pods {
		ctrs = append(ctrs, p.ctrs...)
	}
	if err := b.measureList(ctx, "density", fmt.Sprintf("containers=%d", len(ctrs)), ctrs); err != nil {
		return err
	}

	// A burst on top.
	burst, err := b.densityBurst(ctx, &pods)
	if err != nil {
		return err
	}
	b.add(latencyMetrics("density", fmt.Sprintf("burst=%d", o.DensityBurst), "pod startup (runp+2×create+start at once)", Summarize(burst))...)

	// Churn, with the full node still there.
	return b.densityChurn(ctx, sel.daemonPID)
}

// densityBurst starts DensityBurst pods at once and returns each one's
// startup time; every one must succeed.
func (b *Bench) densityBurst(ctx context.Context, pods *[]densityPod) ([]time.Duration, error) {
	n := b.opts.DensityBurst
	type res struct {
		p densityPod
		d time.Duration
	}
	var failed atomic.Int32
	out, _, err := collect(ctx, b.ticker("density burst", n), n, n, func(ctx context.Context, i int) (res, error) {
		p, d, err := b.startDensityPod(ctx, b.tr.Name("burst", i))
		if err != nil {
			failed.Add(1)
		}
		return res{p, d}, err
	})
	ds := make([]time.Duration, 0, len(out))
	for _, r := range out {
		*pods = append(*pods, r.p)
		ds = append(ds, r.d)
	}
	if err != nil {
		return nil, fmt.Errorf("burst of %d pods: %d failed: %w", n, failed.Load(), err)
	}
	return ds, nil
}

// densityChurn runs DensityChurn full pod cycles and reports the daemon's
// footprint before and after.
func (b *Bench) densityChurn(ctx context.Context, daemon int) error {
	n := b.opts.DensityChurn
	if n == 0 {
		return nil
	}
	before, err := readFootprint("/proc", daemon)
	if err != nil {
		return err
	}
	cycles, err := b.timedCycles(ctx, "density churn", n, nil)
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, b.opts.SettleMemory.Duration); err != nil {
		return err
	}
	after, err := readFootprint("/proc", daemon)
	if err != nil {
		return err
	}
	g := fmt.Sprintf("churn=%d", n)
	half := len(cycles) / 2
	b.add(latencyMetrics("density", g, "cycle, first half", Summarize(cycles[:half]))...)
	b.add(latencyMetrics("density", g, "cycle, second half", Summarize(cycles[half:]))...)
	b.add(Metric{"density", g, "daemon RSS growth", "MiB", float64(after.rssKiB-before.rssKiB) / 1024},
		Metric{"density", g, "daemon fd growth", "", float64(after.fds - before.fds)},
		Metric{"density", g, "daemon thread growth", "", float64(after.threads - before.threads)})
	return nil
}

// densityMemoryMetrics: the runtime's memory with the node full, and per
// pod (daemon growth, monitors or shims, pauses; the workload excluded).
func densityMemoryMetrics(group string, idle, loaded MemoryUsage, n int) []Metric {
	mib := func(k int64) float64 { return float64(k) / 1024 }
	ms := []Metric{
		{"density", group, "daemon RSS", "MiB", mib(loaded.DaemonRSS)},
		{"density", group, "runtime tree PSS (daemon+monitors+pause)", "MiB", mib(loaded.DaemonPSS + loaded.MonitorPSS + loaded.PausePSS)},
	}
	if n > 0 {
		per := (loaded.DaemonPSS - idle.DaemonPSS) + (loaded.MonitorPSS - idle.MonitorPSS) + (loaded.PausePSS - idle.PausePSS)
		ms = append(ms, Metric{"density", group, "memory per pod (PSS, runtime only)", "MiB", mib(per) / float64(n)})
	}
	return ms
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
