package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
)

// A pod's creates (its own RunPodSandbox and the CreateContainers in it)
// may outlive their callers (pending.go), and kubelet may stop and remove
// the pod meanwhile. Were they left running, a create finishing after the
// stop would record a container of a stopped or removed pod (its runtime
// state in namespaces that are gone, its record restored by recovery), or
// mark a removed pod ready again. So a stop first closes the pod to new
// creates, cancels those in flight and waits until each has finished or
// rolled back: whatever the order, what is left is what the stop then
// stops and the removal removes.

// errPodStopping is the cause a pod's stop cancels its creates with.
var errPodStopping = errors.New("pod sandbox stopped")

// podCreate is one create in flight in a pod.
type podCreate struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// beginCreate registers a create in sb and returns the context it is to
// run under (ended by a stop of the pod) and the handle whose end must be
// called once the create has finished or rolled back. It fails with
// FailedPrecondition once a stop has begun, and, with needReady, when the
// pod is not ready.
func (sb *sandbox) beginCreate(ctx context.Context, needReady bool) (context.Context, *podCreate, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.closing {
		return nil, nil, fmt.Errorf("pod sandbox %s is stopped or being stopped: %w", sb.rec.ID, errdefs.ErrFailedPrecondition)
	}
	if needReady && sb.rec.State != sandboxReady {
		return nil, nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.rec.ID, errdefs.ErrFailedPrecondition)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	pc := &podCreate{ctx: cctx, cancel: cancel, done: make(chan struct{})}
	if sb.creates == nil {
		sb.creates = map[*podCreate]struct{}{}
	}
	sb.creates[pc] = struct{}{}
	return cctx, pc, nil
}

// end tells the pod's stop that the create is over.
func (pc *podCreate) end(sb *sandbox) {
	sb.mu.Lock()
	delete(sb.creates, pc)
	sb.mu.Unlock()
	pc.cancel(nil)
	close(pc.done)
}

// stopped is whether the pod's stop cancelled the create.
func (pc *podCreate) stopped() bool {
	return errors.Is(context.Cause(pc.ctx), errPodStopping)
}

// explain replaces the error of a create the pod's stop cancelled (what:
// "create container web") with one saying so.
func (pc *podCreate) explain(what, podID string, err error) error {
	if err == nil || !pc.stopped() {
		return err
	}
	return fmt.Errorf("%s: pod sandbox %s was stopped while this was being created; it was rolled back (%v): %w",
		what, podID, err, errdefs.ErrFailedPrecondition)
}

// closeCreates closes sb to new creates, cancels those in flight and waits
// until each is over, or until ctx ends.
func (sb *sandbox) closeCreates(ctx context.Context) error {
	// Cancelled under mu: a create that sees closing (runPodSandbox
	// before it marks the pod ready) sees its cancellation too.
	sb.mu.Lock()
	sb.closing = true
	var pending []*podCreate
	for pc := range sb.creates {
		pc.cancel(errPodStopping)
		pending = append(pending, pc)
	}
	sb.mu.Unlock()
	for _, pc := range pending {
		select {
		case <-pc.done:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d create(s) in the pod to roll back: %w", len(pending), ctx.Err())
		}
	}
	return nil
}
