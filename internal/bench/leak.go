package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/crid-dev/crid/test/e2e/leakcheck"
)

// LeakTarget names a crid's host objects for test/e2e/leakcheck: what
// the e2e tests check after each test, the churn scenario checks after
// its cycles. Pods of the benchmark have no cgroup parent of their own,
// so cgroups (shared with any other crid on the host) are not checked.
type LeakTarget struct {
	Root    string `json:"root,omitempty"`
	State   string `json:"state,omitempty"`
	Network string `json:"network,omitempty"`
	Bridge  string `json:"bridge,omitempty"`
}

// leakWithin is how long the check waits for background deletions
// (writable layers in the trash, exiting monitors) to finish.
const leakWithin = 30 * time.Second

type leakBase struct {
	target leakcheck.Target
	snap   leakcheck.Snapshot
	on     bool
}

func (b *Bench) leakTarget(pid int) leakcheck.Target {
	l := b.opts.Leak
	return leakcheck.Target{Root: l.Root, State: l.State, PID: pid, Network: l.Network, Bridge: l.Bridge,
		AdminSocket: filepath.Join(l.State, "admin.sock")}
}

// leakBaseline snapshots the crid's host objects, if a target is given.
func (b *Bench) leakBaseline(ctx context.Context, pid int) (leakBase, error) {
	if b.opts.Leak.Root == "" {
		return leakBase{}, nil
	}
	t := b.leakTarget(pid)
	s, err := leakcheck.Take(ctx, t)
	if err != nil {
		return leakBase{}, fmt.Errorf("leak baseline: %w", err)
	}
	return leakBase{target: t, snap: s, on: true}, nil
}

// leakCheck fails with what the crid has now that it had not at the
// baseline (after waiting for background deletions).
func (b *Bench) leakCheck(ctx context.Context, base leakBase) error {
	if !base.on {
		return nil
	}
	leaks, err := leakcheck.Check(ctx, base.target, base.snap, leakcheck.DefaultSlack, leakWithin)
	if err != nil {
		return fmt.Errorf("leak check: %w", err)
	}
	b.add(Metric{"churn", fmt.Sprintf("churn=%d", b.opts.ChurnCycles), "leakcheck: items left", "", float64(len(leaks))})
	if len(leaks) > 0 {
		return fmt.Errorf("leak check: %d left:\n%s", len(leaks), strings.Join(leaks, "\n"))
	}
	b.progressf("churn: leakcheck found nothing left")
	return nil
}
