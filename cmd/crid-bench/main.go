// Command crid-bench measures a CRI runtime over its gRPC socket: pod
// lifecycle latency, ExecSync, list calls, image pulls (also of generated
// images up to gigabytes, against a download-and-unpack floor), memory per
// pod, a node full of pods, the daemon's footprint over a long churn, and
// the bare runc+CNI floor, and compares runs of two runtimes.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bench.ReplayCommand {
		if err := bench.ReplayMain(os.Args[2:], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "crid-bench replay server:", err)
			os.Exit(1)
		}
		return
	}
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "crid-bench:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "crid-bench",
		Short:         "Measure a CRI runtime's performance over its socket",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newCompareCmd(), newPlotCmd(), newCleanupCmd())
	return root
}

func parseSizes(flag, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--%s: %q is not a positive number", flag, f)
		}
		out = append(out, n)
	}
	return out, nil
}

func newRunCmd() *cobra.Command {
	var (
		endpoint, jsonOut, sizes, command, pullSizes, pullLayers string
		opts                                                     bench.Options
		settle, densityIdle                                      time.Duration
		timeout                                                  time.Duration
		replay                                                   bool
	)
	cmd := &cobra.Command{
		Use:   "run SCENARIO...",
		Short: "Run scenarios against a CRI endpoint",
		Long: "Scenarios: " + strings.Join(bench.ScenarioNames(), ", ") + ` (or "all" = every scenario except density, and floor and pull unless their inputs are given).

Every pod and container is labelled ` + bench.LabelRun + `=<run id> and named cb-<run id>-…;
all are removed at the end, also after Ctrl-C (a second Ctrl-C aborts the cleanup).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Sizes, err = parseSizes("sizes", sizes); err != nil {
				return err
			}
			if opts.PullSizes, err = parseSizes("pull-sizes", pullSizes); err != nil {
				return err
			}
			if opts.PullLayers, err = parseSizes("pull-layers", pullLayers); err != nil {
				return err
			}
			if command != "" {
				opts.Command = strings.Fields(command)
			}
			opts.SettleMemory.Duration = settle
			opts.DensityIdle.Duration = densityIdle
			if replay {
				if opts.ReplayExe, err = os.Executable(); err != nil {
					return fmt.Errorf("--replay: %w", err)
				}
			}
			if len(args) == 1 && args[0] == "all" {
				args = []string{"pod-lifecycle", "exec-sync", "list", "memory"}
				if opts.PauseRootfs != "" && opts.Rootfs != "" {
					args = append(args, "floor")
				}
				if len(opts.PullImages) > 0 {
					args = append(args, "pull")
				}
			}
			return runBench(endpoint, jsonOut, args, opts, timeout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&endpoint, "endpoint", "unix:///run/crid/crid.sock", "CRI endpoint (unix:///path)")
	f.StringVar(&jsonOut, "json", "", "also write the metrics as JSON to this file")
	f.IntVar(&opts.N, "n", 20, "cycles / calls per measurement")
	f.IntVar(&opts.Concurrency, "concurrency", 4, "workers of the concurrent measurements (1 disables them)")
	f.IntVar(&opts.Warmup, "warmup", 1, "untimed warm-up iterations before each measurement")
	f.StringVar(&opts.Image, "image", bench.DefaultImage, "container image of the benchmark pods (pulled once, untimed)")
	f.StringVar(&command, "command", "sleep 3600", "container command")
	f.Int64Var(&opts.StopTimeout, "stop-timeout", 0, "StopContainer timeout in seconds (sleep ignores SIGTERM as pid 1)")
	f.StringVar(&sizes, "sizes", "10,100,300", "list: container counts to measure at")
	f.IntVar(&opts.PerPod, "per-pod", 10, "list: containers per pod")
	f.IntVar(&opts.ListN, "list-n", 20, "list: ListContainerStats calls per measurement; the cheap calls (Version, ListContainers, ListPodSandbox, ContainerStatus) run 50x as many")
	f.StringSliceVar(&opts.PullImages, "pull-image", nil, "pull: image(s) to pull cold; a second one sharing the first's base also measures a pull with shared layers present")
	f.BoolVar(&replay, "replay", true, "list: also time the cheap calls against a replay server answering with the runtime's own response bytes (the floor of any server)")
	f.IntVar(&opts.PullRepeat, "pull-repeat", 3, "pull: repetitions")
	f.IntVar(&opts.MemoryPods, "memory-pods", 10, "memory: pods (one container each) to measure with")
	f.IntVar(&opts.DaemonPID, "daemon-pid", 0, "memory: runtime daemon pid")
	f.StringVar(&opts.DaemonName, "daemon-name", "", "memory: find the daemon by process name (e.g. containerd, crid)")
	f.StringSliceVar(&opts.MonitorNames, "monitor-name", nil, "memory: per-container monitor/shim process name(s) (containerd-shim-runc-v2, crid-monitor)")
	f.StringVar(&opts.MonitorMatch, "monitor-match", "", "memory: count only monitors whose command line contains this (e.g. the runtime's socket or state dir), to skip another runtime's same-named shims")
	f.StringVar(&opts.PauseName, "pause-name", "pause", "memory: pause process name")
	f.DurationVar(&settle, "memory-settle", 2*time.Second, "memory: wait before measuring the loaded tree")
	f.IntVar(&opts.DensityPods, "density-pods", 250, "density: pods (two containers each) to fill the node with")
	f.DurationVar(&densityIdle, "density-idle", time.Minute, "density: how long to measure the runtime's CPU with the node full and idle")
	f.IntVar(&opts.DensityBurst, "density-burst", 50, "density: pods started at once on top of the full node")
	f.IntVar(&opts.DensityChurn, "density-churn", 200, "density: pod cycles with the node full, the daemon's RSS, fds and threads compared before and after (0: none)")
	f.StringVar(&pullSizes, "pull-sizes", "64,256,1024", "pull-size: uncompressed image sizes in MiB")
	f.StringVar(&pullLayers, "pull-layers", "20", "pull-size: layers per image; several (with one size) draw the curve over the layer count")
	f.StringSliceVar(&opts.PullCompressions, "pull-compressions", []string{"gzip", "zstd"}, "pull-size: layer compressions (gzip, zstd), one image each per size")
	f.IntVar(&opts.PullFloorConcurrency, "pull-floor-concurrency", 3, "pull-size: layers the floor fetches at once (crid's and containerd's default max_concurrent_downloads)")
	f.StringVar(&opts.Registry, "registry", "", "pull-size: the test registry (host:port, plain HTTP) to push the generated images to; the runtime must pull registry.k8s.io through it")
	f.StringSliceVar(&opts.StoreDirs, "store-dir", nil, "pull-size: the runtime's blob and layer dirs; a removed image counts as gone once they are back to their size before its first pull")
	f.IntVar(&opts.ChurnCycles, "churn-cycles", 2000, "churn: pod cycles")
	f.IntVar(&opts.ChurnSampleEvery, "churn-sample-every", 100, "churn: cycles between two samples of the daemon's RSS, fds, threads and goroutines")
	f.StringVar(&opts.MetricsURL, "metrics-url", "", "churn: the daemon's Prometheus endpoint (go_goroutines); empty: goroutines not measured")
	f.StringVar(&opts.Leak.Root, "leakcheck-root", "", "churn: crid's root dir, to check with test/e2e/leakcheck at the end (crid only)")
	f.StringVar(&opts.Leak.State, "leakcheck-state", "", "churn: crid's state dir (with --leakcheck-root)")
	f.StringVar(&opts.Leak.Network, "leakcheck-network", "", "churn: the CNI network name of the pods (host-local IP allocations)")
	f.StringVar(&opts.Leak.Bridge, "leakcheck-bridge", "", "churn: the CNI bridge of the pods (veths)")
	f.StringVar(&opts.RuncPath, "runc", "/usr/sbin/runc", "floor: runc binary")
	f.StringVar(&opts.PauseRootfs, "floor-pause-rootfs", "", "floor: unpacked pause image root filesystem")
	f.StringSliceVar(&opts.PauseArgs, "floor-pause-args", []string{"/pause"}, "floor: pause command")
	f.StringVar(&opts.Rootfs, "floor-rootfs", "", "floor: unpacked container image root filesystem (runs --command)")
	f.StringVar(&opts.CNIConfDir, "cni-conf-dir", "/etc/cni/net.d", "floor: CNI config dir (first file is used)")
	f.StringSliceVar(&opts.CNIBinDirs, "cni-bin-dir", []string{"/usr/lib/cni", "/opt/cni/bin"}, "floor: CNI plugin dirs")
	f.StringVar(&opts.WorkDir, "work-dir", "", "scratch dir for pod logs and floor bundles (default: a new temp dir); removed at the end")
	f.BoolVar(&opts.KeepImages, "keep-images", false, "leave images the run pulled in place")
	f.DurationVar(&timeout, "timeout", 2*time.Hour, "abort the run after this long (cleanup still runs)")
	return cmd
}

func runBench(endpoint, jsonOut string, scenarios []string, opts bench.Options, timeout time.Duration) error {
	conn, err := bench.Dial(endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	is := runtimeapi.NewImageServiceClient(conn)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	vctx, vcancel := context.WithTimeout(ctx, 10*time.Second)
	ver, err := rt.Version(vctx, &runtimeapi.VersionRequest{})
	vcancel()
	if err != nil {
		return fmt.Errorf("CRI Version on %s: %w", endpoint, err)
	}
	tr := bench.NewTracker(bench.NewRunID())
	b, err := bench.New(rt, is, tr, opts, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "[crid-bench] run %s against %s %s at %s\n", tr.RunID(), ver.GetRuntimeName(), ver.GetRuntimeVersion(), endpoint)
	report := &bench.Report{Meta: bench.Meta{
		Endpoint: endpoint, RuntimeName: ver.GetRuntimeName(), RuntimeVersion: ver.GetRuntimeVersion(),
		Image: b.Options().Image, Started: time.Now().UTC(), RunID: tr.RunID(),
		Machine: bench.DescribeMachine(), Options: b.Options(),
	}}
	runErr := b.Run(ctx, scenarios)
	interrupted := ctx.Err() != nil
	// Restore default signal handling: a second Ctrl-C now kills the tool
	// (abandoning cleanup) instead of being swallowed.
	stop()
	if interrupted {
		fmt.Fprintln(os.Stderr, "[crid-bench] interrupted; cleaning up (Ctrl-C again to abort)")
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer ccancel()
	settle := time.Duration(0)
	if interrupted || runErr != nil {
		settle = 2 * time.Second
	}
	cleanErr := b.Cleanup(cctx, settle)
	if cleanErr != nil {
		fmt.Fprintln(os.Stderr, "[crid-bench] cleanup:", cleanErr)
	}

	report.Metrics = b.Metrics()
	for _, t := range bench.MetricsTables(report.Metrics) {
		if err := t.Render(os.Stdout); err != nil {
			return err
		}
		fmt.Println()
	}
	if jsonOut != "" {
		if err := report.WriteJSON(jsonOut); err != nil {
			return err
		}
	}
	return errors.Join(runErr, cleanErr)
}

func newCompareCmd() *cobra.Command {
	var baseName, targetName, out string
	var baseFiles, targetFiles []string
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Combine repeated runs (median per figure) and render baseline vs target with ratios as Markdown",
		RunE: func(cmd *cobra.Command, args []string) error {
			read := func(files []string) ([]*bench.Report, error) {
				var rs []*bench.Report
				for _, f := range files {
					r, err := bench.ReadReport(f)
					if err != nil {
						return nil, err
					}
					rs = append(rs, r)
				}
				return rs, nil
			}
			base, err := read(baseFiles)
			if err != nil {
				return err
			}
			if len(base) == 0 {
				return errors.New("give at least one --baseline report")
			}
			target, err := read(targetFiles)
			if err != nil {
				return err
			}
			w := os.Stdout
			if out != "" {
				fh, err := os.Create(out)
				if err != nil {
					return err
				}
				defer fh.Close()
				w = fh
			}
			for _, t := range bench.ComparisonTables(baseName, bench.CombineRuns(base), targetName, bench.CombineRuns(target)) {
				if err := t.RenderMarkdown(w); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&baseName, "baseline-name", "containerd", "column name of the baseline")
	f.StringSliceVar(&baseFiles, "baseline", nil, "baseline JSON report(s), one per run")
	f.StringVar(&targetName, "target-name", "crid", "column name of the target")
	f.StringSliceVar(&targetFiles, "target", nil, "target JSON report(s), one per run")
	f.StringVar(&out, "out", "", "write Markdown here instead of stdout")
	return cmd
}

func newPlotCmd() *cobra.Command {
	var baseName, targetName, scenario, metric, out string
	var baseFiles, targetFiles []string
	cmd := &cobra.Command{
		Use:   "plot",
		Short: "Draw how one figure grows along a scenario's sizes (groups key=N) as an SVG line chart, baseline and target on the same axes",
		RunE: func(cmd *cobra.Command, args []string) error {
			if scenario == "" || metric == "" || out == "" {
				return errors.New("give --scenario, --metric and --out")
			}
			var series []bench.Series
			xKey, unit := "", ""
			for _, side := range []struct {
				name  string
				files []string
			}{{baseName, baseFiles}, {targetName, targetFiles}} {
				if len(side.files) == 0 {
					continue
				}
				var rs []*bench.Report
				for _, f := range side.files {
					r, err := bench.ReadReport(f)
					if err != nil {
						return err
					}
					rs = append(rs, r)
				}
				combined := bench.CombineRuns(rs)
				k, pts := bench.Curve(combined, scenario, metric)
				if len(pts) == 0 {
					return fmt.Errorf("%s: no %s %q along a key=N group", side.name, scenario, metric)
				}
				for _, c := range combined {
					if c.Scenario == scenario && c.Name == metric {
						unit = c.Unit
					}
				}
				xKey = k
				series = append(series, bench.Series{Name: side.name, Points: pts})
			}
			fh, err := os.Create(out)
			if err != nil {
				return err
			}
			if err := bench.PlotSVG(fh, scenario+": "+metric, xKey, unit, series); err != nil {
				fh.Close()
				return err
			}
			return fh.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&baseName, "baseline-name", "containerd", "name of the baseline series")
	f.StringSliceVar(&baseFiles, "baseline", nil, "baseline JSON report(s), one per run")
	f.StringVar(&targetName, "target-name", "crid", "name of the target series")
	f.StringSliceVar(&targetFiles, "target", nil, "target JSON report(s), one per run")
	f.StringVar(&scenario, "scenario", "", "scenario, e.g. list")
	f.StringVar(&metric, "metric", "", `metric name, e.g. "ListContainers p50"`)
	f.StringVar(&out, "out", "", "SVG file to write")
	return cmd
}

func newCleanupCmd() *cobra.Command {
	var endpoint, runID string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove pods and containers left by crid-bench runs (all runs, or --run-id)",
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := bench.Dial(endpoint)
			if err != nil {
				return err
			}
			defer conn.Close()
			sel := map[string]string{bench.LabelTool: "crid-bench"}
			if runID != "" {
				sel = map[string]string{bench.LabelRun: runID}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			return bench.Sweep(ctx, runtimeapi.NewRuntimeServiceClient(conn), sel, 4)
		},
	}
	cmd.Flags().StringVar(&endpoint, "endpoint", "unix:///run/crid/crid.sock", "CRI endpoint (unix:///path)")
	cmd.Flags().StringVar(&runID, "run-id", "", "only this run's objects")
	return cmd
}
