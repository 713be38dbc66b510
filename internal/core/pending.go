package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/crid-dev/crid/internal/tracing"
)

// kubelet gives RunPodSandbox and CreateContainer a deadline (its
// runtime-request-timeout, 2m by default) and, when it passes, retries the
// same request: same pod or container, so the same name. Were the first
// attempt cancelled with its caller, a slow CNI plugin or a loaded node
// would make every attempt time out and roll back; were it kept running
// without a way back, the retry would meet "name is reserved" until the
// first finished, and the finished pod would be orphaned (containerd#12438,
// cri-o#7010). So a create outlives its caller: a retry for the same name
// waits for it and takes its result. A result nobody claims is dropped after
// pendingRetention; the pod or container itself stays and is listed, so
// kubelet removes it as an orphan if it no longer wants it.

// pendingTimeout bounds a create that outlived its caller. Only a crid
// built with the faultinject tag can shorten it (Options.PendingTimeout,
// from fault.PendingTimeout), for a test to wait for it.
const pendingTimeout = 4 * time.Minute

// errPastBound ends a create that outlived its caller and then its bound.
var errPastBound = errors.New("create outlived its caller and its bound")

// pendingRetention is how long a finished, unclaimed result waits for the
// retry: kubelet retries within a sync period or two.
const pendingRetention = 5 * time.Minute

type pendingOp struct {
	done      chan struct{}
	id        string
	err       error
	abandoned bool // a caller gave up waiting (guarded by pendingOps.mu)
}

// pendingOps are the creates in flight or finished but unclaimed, by name.
type pendingOps struct {
	timeout time.Duration // bound of each create (pendingTimeout)
	log     *slog.Logger
	mu      sync.Mutex
	ops     map[string]*pendingOp
}

// newPendingOps bounds each create by timeout (0: pendingTimeout).
func newPendingOps(timeout time.Duration, log *slog.Logger) *pendingOps {
	if timeout <= 0 {
		timeout = pendingTimeout
	}
	return &pendingOps{timeout: timeout, log: log, ops: map[string]*pendingOp{}}
}

// run returns the result of fn for key: that of the operation in flight or
// finished unclaimed for key if there is one, else of a new one. A finished
// one is handed out only if it succeeded and its object still exists
// (exists(id)): a failed create is tried again, and one removed since must
// not come back as a success. fn runs under base (the service's lifetime)
// bounded by p.timeout, not under ctx: when ctx ends first, run returns
// ctx's error and fn goes on for the retry. When the bound passes, fn's
// context ends, fn rolls back, and the next request creates anew.
func (p *pendingOps) run(ctx, base context.Context, wg *sync.WaitGroup, key string, exists func(id string) bool, fn func(context.Context) (string, error)) (string, error) {
	p.mu.Lock()
	op := p.ops[key]
	if op != nil {
		select {
		case <-op.done:
			if op.err != nil || !exists(op.id) {
				op = nil
			}
		default:
		}
	}
	if op == nil {
		op = &pendingOp{done: make(chan struct{})}
		p.ops[key] = op
		wg.Add(1)
		go func() {
			defer wg.Done()
			// In the caller's trace, though not under its deadline.
			octx, cancel := context.WithTimeoutCause(tracing.Detach(base, ctx), p.timeout, errPastBound)
			defer cancel()
			op.id, op.err = fn(octx)
			if op.err != nil && errors.Is(context.Cause(octx), errPastBound) {
				op.err = fmt.Errorf("%s: not finished within %v, the bound of a create that outlived its caller; rolled back: %w", key, p.timeout, op.err)
				p.log.Warn("create passed its bound and was rolled back; a retry creates anew", "create", key, "bound", p.timeout, "error", op.err)
			}
			close(op.done)
			p.mu.Lock()
			abandoned := op.abandoned
			p.mu.Unlock()
			if abandoned {
				p.forgetLater(key, op)
			}
		}()
	}
	p.mu.Unlock()
	select {
	case <-op.done:
		p.forget(key, op)
		return op.id, op.err
	case <-ctx.Done():
		p.mu.Lock()
		op.abandoned = true
		p.mu.Unlock()
		select {
		case <-op.done:
			// Finished while we gave up: its goroutine may have looked
			// before abandoned was set. Forgetting twice is harmless.
			p.forgetLater(key, op)
		default:
		}
		return "", ctx.Err()
	}
}

// forgetLater keeps an unclaimed result for the retry, for a while.
func (p *pendingOps) forgetLater(key string, op *pendingOp) {
	time.AfterFunc(pendingRetention, func() { p.forget(key, op) })
}

// forget drops op if it is still the one recorded for key.
func (p *pendingOps) forget(key string, op *pendingOp) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ops[key] == op {
		delete(p.ops, key)
	}
}

// stillRunning explains an error of a create whose caller gave up first:
// the work goes on, and the retry gets its result.
func stillRunning(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%s: still in progress after the caller's deadline; retry the same request for its result: %w", what, err)
	}
	return err
}
