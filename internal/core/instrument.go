package core

import (
	"context"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/crid-dev/crid/internal/metrics"
	"github.com/crid-dev/crid/internal/monitor"
	"github.com/crid-dev/crid/internal/runc"
)

// instrument hooks the core's collaborators up to s.metrics: every
// runtime invocation is timed (on top of the observer already set, which
// traces it), and the trash reports what it frees. Without metrics it
// changes nothing.
func (s *Service) instrument() {
	if s.metrics == nil {
		return
	}
	for name, rt := range s.runtimes {
		rt.Observe = runtimeObserver(s.metrics, name, rt.Observe)
	}
	s.trash.freed = func(n int64) { s.metrics.BytesFreed(metrics.FreedTrash, n) }
}

// runtimeObserver times each invocation of handler's runtime into m, and
// hands it on to next (nil: none) as it is. A kill or delete of a
// container the runtime no longer has is no failure in m: runc.Kill and
// runc.Delete return nil for it.
func runtimeObserver(m *metrics.Metrics, handler string, next runc.Observer) runc.Observer {
	return func(ctx context.Context, op string, args []string) (context.Context, func(error)) {
		start := time.Now()
		done := func(error) {}
		if next != nil {
			ctx, done = next(ctx, op, args)
		}
		return ctx, func(err error) {
			failed := err
			if runc.IsGone(op, err) {
				failed = nil
			}
			m.RuntimeOperation(handler, op, time.Since(start), failed)
			done(err)
		}
	}
}

// MetricsState counts the pods and containers by state and the live
// monitors, for the metrics endpoint at scrape time. It reads the same
// records the CRI list calls do, so the gauges cannot drift from them.
func (s *Service) MetricsState() metrics.State {
	st := metrics.State{Pods: map[string]int{}, Containers: map[string]int{}}
	s.mu.RLock()
	sandboxes := make([]*sandbox, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		sandboxes = append(sandboxes, sb)
	}
	containers := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		containers = append(containers, c)
	}
	s.mu.RUnlock()
	for _, sb := range sandboxes {
		st.Pods[podMetricsState(sb)]++
	}
	for _, c := range containers {
		rec := c.snapshot()
		st.Containers[containerMetricsState(rec.State)]++
		// Only a created or running container has a monitor; the check
		// reads the monitor's pid file and command line, so a dead
		// monitor whose pid was reused is not counted.
		if (rec.State == containerCreated || rec.State == containerRunning) && monitor.Alive(s.containerBundle(rec.ID)) {
			st.Monitors++
		}
	}
	return st
}

// podMetricsState is the pod's state as PodSandboxStatus reports it, with
// "creating" for one RunPodSandbox has not finished.
func podMetricsState(sb *sandbox) string {
	rec := sb.snapshot()
	switch rec.State {
	case sandboxInit:
		return "creating"
	case sandboxReady:
		select {
		case <-sb.exited:
			return "notready" // the pause died
		default:
			return "ready"
		}
	}
	return "notready"
}

// containerMetricsState is the CRI state of a container record, with
// "creating" for one CreateContainer has not finished.
func containerMetricsState(state string) string {
	switch state {
	case containerInit:
		return "creating"
	case containerCreated, containerRunning, containerExited:
		return state
	}
	return "unknown"
}

// timeExec records one exec of kind that went through path.
func (s *Service) timeExec(kind, path string, start time.Time, err error) {
	s.metrics.Exec(kind, path, time.Since(start), err)
}

// diskUsage is the disk space the files under path occupy (allocated
// blocks, a hard-linked file once): what deleting them frees. Files that
// vanish or cannot be read while it walks are skipped.
func diskUsage(path string) int64 {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // best effort: skip what cannot be read
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total
}
