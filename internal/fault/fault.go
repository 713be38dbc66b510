// Package fault makes crid fail, hang, slow down or die at named steps of
// its operations, so that tests can prove that every step is safe to fail
// at: the RPC answers with a clear error, a restart cleans up, a retry
// converges. Points are "<operation>/<step>", e.g. "RunPodSandbox/netns".
//
// Only a crid built with the faultinject tag reads rules (from the
// CRID_FAULTS environment variable, see env_faultinject.go); in a default
// build FromEnv returns nil and every At is a nil check.
package fault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// EnvVar names the rules in a crid built with the faultinject tag.
const EnvVar = "CRID_FAULTS"

// PendingTimeoutEnvVar shortens, in a crid built with the faultinject tag
// only, the bound of a create that outlived its caller (4 minutes; see
// core/pending.go), so that a test can wait for it.
const PendingTimeoutEnvVar = "CRID_FAULTS_PENDING_TIMEOUT"

// Kinds of action.
const (
	Kill  = "kill"  // SIGKILL crid itself, as a crash would
	Error = "error" // fail the step with an Unavailable error
	Sleep = "sleep" // wait the given duration, then go on
	Hang  = "hang"  // wait until the caller gives up (its context ends)
)

// Action is what happens when a point is reached.
type Action struct {
	Kind string
	// Delay is Sleep's duration.
	Delay time.Duration
	// Times limits Error and Hang to the first Times arrivals (0: every
	// one), so that a retry can succeed.
	Times int
	// From is the first arrival the action applies to (0 or 1: the
	// first), so that a later write of a step can be faulted: e.g. the
	// 4th write of a bucket, a container's exit after its create's and
	// start's.
	From int
}

// Injector holds the rules; a nil *Injector injects nothing.
type Injector struct {
	log   *slog.Logger
	mu    sync.Mutex
	rules map[string]*rule
}

type rule struct {
	Action
	arrivals int // at the point
	hits     int // met the action
}

// Parse reads rules of the form "point=action[;point=action...]", where
// action is kill, error, error:N (the first N arrivals only), sleep:DUR
// (a Go duration), hang or hang:N, each optionally followed by @K: from
// the K-th arrival on (error:1@3 fails the third arrival only).
func Parse(spec string, log *slog.Logger) (*Injector, error) {
	in := &Injector{log: log, rules: map[string]*rule{}}
	for _, item := range strings.Split(spec, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		point, act, ok := strings.Cut(item, "=")
		if !ok || !validPoint(point) {
			return nil, fmt.Errorf("%s: %q: want operation/step=action", EnvVar, item)
		}
		a, err := parseAction(act)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", EnvVar, point, err)
		}
		in.rules[point] = &rule{Action: a}
	}
	return in, nil
}

func validPoint(p string) bool {
	op, step, ok := strings.Cut(p, "/")
	return ok && op != "" && step != "" && !strings.ContainsAny(p, " \t=;")
}

func parseAction(s string) (Action, error) {
	s, from, hasFrom := strings.Cut(s, "@")
	a, err := parseKind(s)
	if err != nil || !hasFrom {
		return a, err
	}
	k, err := strconv.Atoi(from)
	if err != nil || k < 1 {
		return Action{}, fmt.Errorf("%s@%s: want an arrival of 1 or more after @", s, from)
	}
	a.From = k
	return a, nil
}

func parseKind(s string) (Action, error) {
	kind, arg, hasArg := strings.Cut(s, ":")
	switch {
	case (kind == Kill || kind == Hang) && !hasArg:
		return Action{Kind: kind}, nil
	case kind == Error && !hasArg:
		return Action{Kind: Error}, nil
	case kind == Error || kind == Hang:
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 {
			return Action{}, fmt.Errorf("%s:%s: want a count of 1 or more", kind, arg)
		}
		return Action{Kind: kind, Times: n}, nil
	case kind == Sleep && hasArg:
		d, err := time.ParseDuration(arg)
		if err != nil || d <= 0 {
			return Action{}, fmt.Errorf("sleep:%s: want a positive duration such as 2s", arg)
		}
		return Action{Kind: Sleep, Delay: d}, nil
	}
	return Action{}, fmt.Errorf("action %q: want kill, error, error:N, sleep:DUR, hang or hang:N, optionally @K", s)
}

// ErrInjected is wrapped by the errors Error actions return.
var ErrInjected = errors.New("fault injected")

// At is reached at the named point: it does what the rule for the point
// says, if there is one.
func (in *Injector) At(ctx context.Context, point string) error {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	r := in.rules[point]
	var act Action
	if r != nil {
		r.arrivals++
	}
	fire := r != nil && r.arrivals >= r.From && (r.Times == 0 || r.hits < r.Times)
	if fire {
		r.hits++
		act = r.Action
	}
	in.mu.Unlock()
	if !fire {
		return nil
	}
	in.log.Warn("fault injected", "point", point, "action", act.Kind)
	switch act.Kind {
	case Kill:
		// No deferred function, no flush: as sudden as a crash.
		_ = syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; this is never passed
	case Error:
		return fmt.Errorf("%w at %s: %w", ErrInjected, point, errdefs.ErrUnavailable)
	case Sleep:
		select {
		case <-time.After(act.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	case Hang:
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}
