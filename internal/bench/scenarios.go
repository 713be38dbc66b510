package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// lifecyclePhases are the CRI calls of one pod cycle, in call order.
var lifecyclePhases = []string{"runp", "create", "start", "stop", "stopp", "rm", "rmp"}

type cycleTimes [7]time.Duration

// timedCycles runs n full pod cycles (pods named churn-1..churn-n),
// reporting progress as what, and returns each cycle's total time. after,
// if set, runs after cycle i (1-based), e.g. to sample the daemon.
func (b *Bench) timedCycles(ctx context.Context, what string, n int, after func(i int) error) ([]time.Duration, error) {
	tk := b.ticker(what, n)
	cycles := make([]time.Duration, 0, n)
	for i := 1; i <= n; i++ {
		t, err := b.cycle(ctx, b.tr.Name("churn", i))
		if err != nil {
			return nil, err
		}
		var tot time.Duration
		for _, d := range t {
			tot += d
		}
		cycles = append(cycles, tot)
		tk.inc()
		if after != nil {
			if err := after(i); err != nil {
				return nil, err
			}
		}
	}
	return cycles, nil
}

// cycle runs one full pod lifecycle and times each call.
func (b *Bench) cycle(ctx context.Context, name string) (cycleTimes, error) {
	var t cycleTimes
	var podID, ctrID string
	var podCfg *runtimeapi.PodSandboxConfig
	steps := []func() error{
		func() (err error) { podID, podCfg, err = b.runPod(ctx, name); return },
		func() (err error) { ctrID, err = b.createContainer(ctx, podID, podCfg, "c"); return },
		func() error { return b.startContainer(ctx, ctrID) },
		func() error {
			_, err := b.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: b.opts.StopTimeout})
			return wrap(err, "stop container %s", ctrID)
		},
		func() error {
			_, err := b.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
			return wrap(err, "stop pod sandbox %s", podID)
		},
		func() error {
			_, err := b.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID})
			if err == nil {
				b.tr.ContainerRemoved(ctrID)
			}
			return wrap(err, "remove container %s", ctrID)
		},
		func() error {
			_, err := b.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
			if err == nil {
				b.tr.PodRemoved(podID)
			}
			return wrap(err, "remove pod sandbox %s", podID)
		},
	}
	for i, s := range steps {
		d, err := timed(s)
		if err != nil {
			return t, err
		}
		t[i] = d
	}
	return t, nil
}

func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

func (b *Bench) podLifecycle(ctx context.Context) error {
	o := b.opts
	for i := 0; i < o.Warmup; i++ {
		if _, err := b.cycle(ctx, b.tr.Name("warm", i)); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	run := func(group string, c int) error {
		all, wall, err := collect(ctx, b.ticker("pod-lifecycle "+group, o.N), o.N, c, func(ctx context.Context, i int) (cycleTimes, error) {
			return b.cycle(ctx, b.tr.Name(fmt.Sprintf("lc%d", c), i))
		})
		if err != nil {
			return err
		}
		b.add(lifecycleMetrics(group, all, wall)...)
		return nil
	}
	if err := run("sequential", 1); err != nil {
		return err
	}
	if o.Concurrency > 1 {
		return run(fmt.Sprintf("concurrency=%d", o.Concurrency), o.Concurrency)
	}
	return nil
}

// lifecycleMetrics turns per-cycle phase times into the scenario's metrics.
func lifecycleMetrics(group string, all []cycleTimes, wall time.Duration) []Metric {
	var ms []Metric
	per := make([][]time.Duration, len(lifecyclePhases))
	var startup, total []time.Duration
	for _, t := range all {
		var tot time.Duration
		for i, d := range t {
			per[i] = append(per[i], d)
			tot += d
		}
		startup = append(startup, t[0]+t[1]+t[2])
		total = append(total, tot)
	}
	for i, p := range lifecyclePhases {
		ms = append(ms, latencyMetrics("pod-lifecycle", group, p, Summarize(per[i]))...)
	}
	ms = append(ms, latencyMetrics("pod-lifecycle", group, "startup(runp+create+start)", Summarize(startup))...)
	ms = append(ms, latencyMetrics("pod-lifecycle", group, "cycle", Summarize(total))...)
	tp := 0.0
	if wall > 0 {
		tp = float64(len(all)) / wall.Seconds()
	}
	ms = append(ms, Metric{"pod-lifecycle", group, "throughput", "pods/s", tp})
	return ms
}

func (b *Bench) execSync(ctx context.Context) error {
	o := b.opts
	podID, podCfg, err := b.runPod(ctx, b.tr.Name("exec", 0))
	if err != nil {
		return err
	}
	ctrID, err := b.createContainer(ctx, podID, podCfg, "c")
	if err != nil {
		return err
	}
	if err := b.startContainer(ctx, ctrID); err != nil {
		return err
	}
	exec := func(ctx context.Context) (time.Duration, error) {
		var r *runtimeapi.ExecSyncResponse
		d, err := timed(func() (err error) {
			r, err = b.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"true"}, Timeout: 30})
			return err
		})
		if err != nil {
			return d, fmt.Errorf("exec sync in %s: %w", ctrID, err)
		}
		if r.GetExitCode() != 0 {
			return d, fmt.Errorf("exec sync `true` in %s exited %d: %s", ctrID, r.GetExitCode(), r.GetStderr())
		}
		return d, nil
	}
	for i := 0; i < o.Warmup; i++ {
		if _, err := exec(ctx); err != nil {
			return err
		}
	}
	run := func(group string, c int) error {
		ds, wall, err := collect(ctx, b.ticker("exec-sync "+group, o.N), o.N, c, func(ctx context.Context, _ int) (time.Duration, error) {
			return exec(ctx)
		})
		if err != nil {
			return err
		}
		b.add(latencyMetrics("exec-sync", group, "execsync", Summarize(ds))...)
		b.add(Metric{"exec-sync", group, "throughput", "execs/s", float64(len(ds)) / wall.Seconds()})
		return nil
	}
	if err := run("sequential", 1); err != nil {
		return err
	}
	if o.Concurrency > 1 {
		if err := run(fmt.Sprintf("concurrency=%d", o.Concurrency), o.Concurrency); err != nil {
			return err
		}
	}
	return b.teardownPod(ctx, podID, []string{ctrID})
}

type listPod struct {
	id   string
	ctrs []string
}

func (b *Bench) list(ctx context.Context) error {
	o := b.opts
	var mu sync.Mutex
	var pods []*listPod
	var ctrs []string
	defer func() {
		// Tear down untimed; on error the tracker's cleanup catches the rest.
		for _, p := range pods {
			_ = b.teardownPod(ctx, p.id, p.ctrs)
		}
	}()
	podN := 0
	for _, size := range sortedInts(o.Sizes) {
		need := size - len(ctrs)
		if need > 0 {
			b.progressf("list: creating %d containers (%d per pod)", need, o.PerPod)
			npods := (need + o.PerPod - 1) / o.PerPod
			tk := b.ticker("list setup", npods)
			base := podN
			podN += npods
			err := parallel(ctx, npods, max(o.Concurrency, 1), func(ctx context.Context, i int) error {
				k := min(o.PerPod, need-i*o.PerPod)
				id, cfg, err := b.runPod(ctx, b.tr.Name("list", base+i))
				if err != nil {
					return err
				}
				p := &listPod{id: id}
				mu.Lock()
				pods = append(pods, p)
				mu.Unlock()
				for j := 0; j < k; j++ {
					cid, err := b.createContainer(ctx, id, cfg, fmt.Sprintf("c%d", j))
					if err != nil {
						return err
					}
					mu.Lock()
					p.ctrs = append(p.ctrs, cid)
					ctrs = append(ctrs, cid)
					mu.Unlock()
					if err := b.startContainer(ctx, cid); err != nil {
						return err
					}
				}
				tk.inc()
				return nil
			})
			if err != nil {
				return err
			}
		}
		group := fmt.Sprintf("containers=%d", len(ctrs))
		if err := b.measureList(ctx, "list", group, ctrs); err != nil {
			return err
		}
		b.progressf("list: measured with %d containers", len(ctrs))
	}
	return nil
}

func (b *Bench) removeImageIfPresent(ctx context.Context, ref string) error {
	present, err := b.imagePresent(ctx, ref)
	if err != nil || !present {
		return err
	}
	if _, err := b.is.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

func (b *Bench) timedPull(ctx context.Context, ref string) (time.Duration, error) {
	d, err := timed(func() error {
		_, err := b.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err
	})
	if err != nil {
		return d, fmt.Errorf("pull %s: %w", ref, err)
	}
	return d, nil
}

func (b *Bench) pull(ctx context.Context) error {
	o := b.opts
	if len(o.PullImages) == 0 {
		return fmt.Errorf("no --pull-image given")
	}
	// Images present before the run are left present after it; others are
	// removed by the cleanup.
	wasPresent := map[string]bool{}
	for _, ref := range o.PullImages {
		p, err := b.imagePresent(ctx, ref)
		if err != nil {
			return err
		}
		wasPresent[ref] = p
		if !p {
			b.tr.AddImage(ref)
		}
	}
	for _, ref := range o.PullImages {
		var ds []time.Duration
		for i := 0; i < o.PullRepeat; i++ {
			for _, r := range o.PullImages {
				if err := b.removeImageIfPresent(ctx, r); err != nil {
					return err
				}
			}
			d, err := b.timedPull(ctx, ref)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		s := Summarize(ds)
		b.add(Metric{"pull", "cold", shortRef(ref) + " p50", "ms", Ms(s.P50)}, Metric{"pull", "cold", shortRef(ref) + " max", "ms", Ms(s.Max)})
		b.progressf("pull: %s cold p50 %s", ref, s.P50)
	}
	if len(o.PullImages) >= 2 {
		first, second := o.PullImages[0], o.PullImages[1]
		var ds []time.Duration
		for i := 0; i < o.PullRepeat; i++ {
			for _, r := range o.PullImages {
				if err := b.removeImageIfPresent(ctx, r); err != nil {
					return err
				}
			}
			if _, err := b.timedPull(ctx, first); err != nil {
				return err
			}
			d, err := b.timedPull(ctx, second)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		s := Summarize(ds)
		b.add(Metric{"pull", "shared-layers", shortRef(second) + " after " + shortRef(first) + " p50", "ms", Ms(s.P50)})
	}
	// Leave images that existed before the run in place.
	for ref, p := range wasPresent {
		if p {
			if _, err := b.timedPull(ctx, ref); err != nil {
				return err
			}
		}
	}
	return nil
}

// shortRef keeps the last path element of an image reference
// (registry.k8s.io/e2e-test-images/busybox:1.29-2 -> busybox:1.29-2) to keep
// tables narrow; the full references are in the report's options.
func shortRef(ref string) string {
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

// listCall is one call of the list scenario. fn makes it on any client so
// that it can be repeated against the replay server.
type listCall struct {
	name  string
	path  string // gRPC method, for the replay server
	cheap bool
	fn    func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) (proto.Message, error)
}

// listWarmup is how many untimed calls of each kind come first: enough for
// both ends of a fresh connection to reach their steady state (flow-control
// windows grown, buffers and goroutines allocated).
const listWarmup = 50

// cheapListN multiplies --list-n for the cheap calls: their p99 is
// otherwise the slowest of a handful, which on a shared machine is noise.
const cheapListN = 50

// measureList times each list call (metrics of scenario) with the containers ctrs present, then
// the same cheap calls answered by a replay server with the runtime's own
// response bytes: the floor no server can go below with this client.
func (b *Bench) measureList(ctx context.Context, scenario, group string, ctrs []string) error {
	const svc = "/runtime.v1.RuntimeService/"
	calls := []listCall{
		// Version does no work in either runtime: it is the round trip.
		{"Version (round trip)", svc + "Version", true, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) (proto.Message, error) {
			return rt.Version(ctx, &runtimeapi.VersionRequest{})
		}},
		{"ListContainers", svc + "ListContainers", true, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) (proto.Message, error) {
			r, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			if err == nil && len(r.GetContainers()) < len(ctrs) {
				err = fmt.Errorf("ListContainers returned %d containers, want at least %d", len(r.GetContainers()), len(ctrs))
			}
			return r, err
		}},
		{"ListPodSandbox", svc + "ListPodSandbox", true, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) (proto.Message, error) {
			return rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		}},
		{"ContainerStatus", svc + "ContainerStatus", true, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) (proto.Message, error) {
			return rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrs[rand.IntN(len(ctrs))]})
		}},
		{"ListContainerStats", svc + "ListContainerStats", false, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) (proto.Message, error) {
			return rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
		}},
	}
	recorded := map[string][]byte{}
	for _, c := range calls {
		n, warm := b.opts.ListN, b.opts.Warmup
		if c.cheap {
			n, warm = cheapListN*n, max(warm, listWarmup)
		}
		s, last, err := timeCalls(ctx, b.rt, c, warm, n)
		if err != nil {
			return fmt.Errorf("%s with %s: %w", c.name, group, err)
		}
		b.add(Metric{scenario, group, c.name + " p50", "ms", Ms(s.P50)},
			Metric{scenario, group, c.name + " p99", "ms", Ms(s.P99)})
		if c.cheap {
			if recorded[c.path], err = proto.Marshal(last); err != nil {
				return fmt.Errorf("record %s response: %w", c.name, err)
			}
		}
	}
	if b.opts.ReplayExe == "" {
		return nil
	}
	rp, err := startReplay(ctx, b.opts.ReplayExe, recorded)
	if err != nil {
		return err
	}
	defer rp.stop()
	conn, err := Dial(rp.Endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	replay := runtimeapi.NewRuntimeServiceClient(conn)
	for _, c := range calls {
		if !c.cheap {
			continue
		}
		s, _, err := timeCalls(ctx, replay, c, max(b.opts.Warmup, listWarmup), cheapListN*b.opts.ListN)
		if err != nil {
			return fmt.Errorf("%s replayed: %w", c.name, err)
		}
		b.add(Metric{scenario, group, c.name + " replayed p50", "ms", Ms(s.P50)})
	}
	return nil
}

// timeCalls makes warm untimed calls, then times n; it returns the
// summary and the last response.
func timeCalls(ctx context.Context, rt runtimeapi.RuntimeServiceClient, c listCall, warm, n int) (Summary, proto.Message, error) {
	var last proto.Message
	for i := 0; i < warm; i++ {
		if _, err := c.fn(ctx, rt); err != nil {
			return Summary{}, nil, err
		}
	}
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		var resp proto.Message
		d, err := timed(func() (err error) { resp, err = c.fn(ctx, rt); return err })
		if err != nil {
			return Summary{}, nil, err
		}
		ds = append(ds, d)
		last = resp
	}
	return Summarize(ds), last, nil
}
