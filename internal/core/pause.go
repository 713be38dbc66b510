package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/internal/pidfd"
)

// The pause process of a sandbox runs without a crid-monitor: it needs no
// log, attach or exit record, only "is it still there". crid starts it with
// `runc run --detach`, identifies it by pid and start time, and watches it
// through a pidfd. crid is a child subreaper, so the pause (orphaned when
// runc exits) becomes crid's child and its watcher reaps it; after a crid
// restart the pauses of the previous crid belong to init.

// openPause returns a pidfd (as a pollable file) for the pause pid started
// at start, or nil if that process is gone.
func openPause(pid int, start uint64) (*os.File, error) {
	f, err := pidfd.Open(pid)
	if errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Checked after opening: the pidfd pins this pid to one process, so a
	// matching start time now means the pidfd is the pause's.
	got, err := pidfd.StartTime(pid)
	if err != nil || (start != 0 && got != start) {
		f.Close()
		return nil, nil
	}
	return f, nil
}

// waitPidfd blocks until the process behind f exits or ctx ends, and then
// reaps it if it is crid's child. No thread is held per pod.
func waitPidfd(ctx context.Context, f *os.File) error {
	defer f.Close()
	if err := pidfd.WaitExit(ctx, f); err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	_ = rc.Control(func(fd uintptr) {
		var info unix.Siginfo
		// ECHILD when it is not our child (init reaps it): nothing to do.
		_ = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
	})
	return nil
}

// becomeSubreaper makes crid the reaper of the pauses runc leaves behind.
// Orphans other than pauses may then be adopted too; reapStrays reaps
// those.
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	return nil
}

// strayInterval is how often reapStrays looks for adopted zombies.
const strayInterval = 30 * time.Second

// reapStrays reaps zombie children that no one waits for: orphans adopted
// as subreaper. Children crid starts itself are waited for by their
// goroutines within moments of exiting (os/exec), so only a zombie seen
// on two sweeps in a row, with the same start time, is reaped; the pauses'
// watchers reap theirs at once.
func reapStrays(ctx context.Context, log *slog.Logger) {
	seen := map[int]uint64{}
	t := time.NewTicker(strayInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := map[int]uint64{}
		for _, pid := range zombieChildren() {
			st, err := pidfd.StartTime(pid)
			if err != nil {
				continue
			}
			if prev, ok := seen[pid]; ok && prev == st {
				var info unix.Siginfo
				if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG, nil); err == nil {
					log.Debug("reaped adopted orphan", "pid", pid)
				}
				continue
			}
			now[pid] = st
		}
		seen = now
	}
}

// zombieChildren lists crid's children that are zombies.
func zombieChildren() []int {
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(s)
			if err != nil {
				continue
			}
			if st, err := pidfd.State(pid); err == nil && st == 'Z' {
				out = append(out, pid)
			}
		}
	}
	return out
}

// stepTimer records how long each step of an operation took, for one
// debug log line.
type stepTimer struct {
	mu    sync.Mutex
	start time.Time
	last  time.Time
	attrs []any
}

func newStepTimer() *stepTimer {
	now := time.Now()
	return &stepTimer{start: now, last: now}
}

// mark ends the step that began at the previous mark.
func (t *stepTimer) mark(step string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.attrs = append(t.attrs, step, now.Sub(t.last).Round(10*time.Microsecond).String())
	t.last = now
}

// since records how long a step running alongside others took since begin.
func (t *stepTimer) since(step string, begin time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.attrs = append(t.attrs, step, time.Since(begin).Round(10*time.Microsecond).String())
}

func (t *stepTimer) log(log *slog.Logger, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	log.Debug(msg, append(t.attrs, "total", time.Since(t.start).Round(10*time.Microsecond).String())...)
}
