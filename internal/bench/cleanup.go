package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels put on every pod and container a run creates, so that a cleanup can
// find objects whose creating call was interrupted before it returned an ID.
const (
	LabelTool = "crid-bench.io/tool"
	LabelRun  = "crid-bench.io/run"
	toolValue = "crid-bench"
	// Namespace is the pod namespace of every benchmark pod.
	Namespace = "crid-bench"
)

// NewRunID returns a short random run identifier.
func NewRunID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; a fixed fallback keeps the
		// tool usable and labels still scope cleanup to crid-bench objects.
		return fmt.Sprintf("t%x", time.Now().UnixNano()&0xffffffff)
	}
	return hex.EncodeToString(b[:])
}

// Tracker records every object a run creates, so that all of them can be
// removed at the end, including after an interrupt. It is safe for
// concurrent use.
type Tracker struct {
	runID string

	mu         sync.Mutex
	pods       map[string]bool
	containers map[string]bool
	images     map[string]bool
}

// NewTracker returns a tracker for runID.
func NewTracker(runID string) *Tracker {
	return &Tracker{runID: runID, pods: map[string]bool{}, containers: map[string]bool{}, images: map[string]bool{}}
}

// RunID is the run identifier.
func (t *Tracker) RunID() string { return t.runID }

// Prefix starts the name of every object of this run.
func (t *Tracker) Prefix() string { return "cb-" + t.runID + "-" }

// Name returns a run-unique object name.
func (t *Tracker) Name(kind string, i int) string { return fmt.Sprintf("%s%s-%d", t.Prefix(), kind, i) }

// Labels returns the labels to put on every object of the run.
func (t *Tracker) Labels() map[string]string {
	return map[string]string{LabelTool: toolValue, LabelRun: t.runID}
}

// AddPod records a created pod sandbox.
func (t *Tracker) AddPod(id string) { t.set(t.pods, id, true) }

// PodRemoved records that a pod sandbox was removed.
func (t *Tracker) PodRemoved(id string) { t.set(t.pods, id, false) }

// AddContainer records a created container.
func (t *Tracker) AddContainer(id string) { t.set(t.containers, id, true) }

// ContainerRemoved records that a container was removed.
func (t *Tracker) ContainerRemoved(id string) { t.set(t.containers, id, false) }

// AddImage records an image the run pulled that was not present before.
func (t *Tracker) AddImage(ref string) { t.set(t.images, ref, true) }

// ImageRemoved records that an image was removed.
func (t *Tracker) ImageRemoved(ref string) { t.set(t.images, ref, false) }

func (t *Tracker) set(m map[string]bool, k string, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if on {
		m[k] = true
	} else {
		delete(m, k)
	}
}

// Pending returns the IDs still to remove, sorted.
func (t *Tracker) Pending() (pods, containers, images []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := func(m map[string]bool) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	return keys(t.pods), keys(t.containers), keys(t.images)
}

// CleanupOptions tune Cleanup.
type CleanupOptions struct {
	// KeepImages leaves pulled images in place.
	KeepImages bool
	// Settle, when positive, sweeps a second time after this delay: a call
	// cancelled by an interrupt may still be completing inside the runtime.
	Settle time.Duration
	// Parallel bounds concurrent removals; 0 means 4.
	Parallel int
}

// Cleanup removes everything the run created: tracked containers and pods,
// then anything else carrying this run's label, then tracked images. It
// keeps going past errors and returns them joined.
func (t *Tracker) Cleanup(ctx context.Context, rt runtimeapi.RuntimeServiceClient, is runtimeapi.ImageServiceClient, o CleanupOptions) error {
	pods, ctrs, _ := t.Pending()
	var errs []error
	errs = append(errs, t.removeContainers(ctx, rt, ctrs, o.Parallel)...)
	errs = append(errs, t.removePods(ctx, rt, pods, o.Parallel)...)
	sel := map[string]string{LabelRun: t.runID}
	if err := Sweep(ctx, rt, sel, o.Parallel); err != nil {
		errs = append(errs, err)
	}
	if o.Settle > 0 {
		select {
		case <-time.After(o.Settle):
		case <-ctx.Done():
		}
		if err := Sweep(ctx, rt, sel, o.Parallel); err != nil {
			errs = append(errs, err)
		}
	}
	if !o.KeepImages && is != nil {
		_, _, imgs := t.Pending()
		for _, ref := range imgs {
			_, err := is.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
			if err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
				continue
			}
			t.ImageRemoved(ref)
		}
	}
	return errors.Join(errs...)
}

func (t *Tracker) removeContainers(ctx context.Context, rt runtimeapi.RuntimeServiceClient, ids []string, par int) []error {
	return forEach(ctx, ids, par, func(ctx context.Context, id string) error {
		if err := removeContainer(ctx, rt, id); err != nil {
			return err
		}
		t.ContainerRemoved(id)
		return nil
	})
}

func (t *Tracker) removePods(ctx context.Context, rt runtimeapi.RuntimeServiceClient, ids []string, par int) []error {
	return forEach(ctx, ids, par, func(ctx context.Context, id string) error {
		if err := removePod(ctx, rt, id); err != nil {
			return err
		}
		t.PodRemoved(id)
		return nil
	})
}

// Sweep removes every container and pod sandbox whose labels include all of
// selector (e.g. {LabelTool: "crid-bench"} for leftovers of any run).
func Sweep(ctx context.Context, rt runtimeapi.RuntimeServiceClient, selector map[string]string, par int) error {
	var errs []error
	cl, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: selector}})
	if err != nil {
		return fmt.Errorf("list containers for cleanup: %w", err)
	}
	var cids []string
	for _, c := range cl.GetContainers() {
		cids = append(cids, c.GetId())
	}
	errs = append(errs, forEach(ctx, cids, par, func(ctx context.Context, id string) error { return removeContainer(ctx, rt, id) })...)
	pl, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: selector}})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list pod sandboxes for cleanup: %w", err))...)
	}
	var pids []string
	for _, p := range pl.GetItems() {
		pids = append(pids, p.GetId())
	}
	errs = append(errs, forEach(ctx, pids, par, func(ctx context.Context, id string) error { return removePod(ctx, rt, id) })...)
	return errors.Join(errs...)
}

func forEach(ctx context.Context, ids []string, par int, fn func(context.Context, string) error) []error {
	if par <= 0 {
		par = 4
	}
	var mu sync.Mutex
	var errs []error
	var g errgroup.Group
	g.SetLimit(par)
	for _, id := range ids {
		g.Go(func() error {
			if err := fn(ctx, id); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errs
}

func removeContainer(ctx context.Context, rt runtimeapi.RuntimeServiceClient, id string) error {
	if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil && !isNotFound(err) {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

func removePod(ctx context.Context, rt runtimeapi.RuntimeServiceClient, id string) error {
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil && !isNotFound(err) {
		return fmt.Errorf("stop pod sandbox %s: %w", id, err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove pod sandbox %s: %w", id, err)
	}
	return nil
}

// isNotFound tells whether a CRI error means the object is already gone.
// Runtimes differ: containerd answers NotFound, others Unknown with a
// "not found" message.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	st, ok := status.FromError(err)
	if ok && st.Code() == codes.NotFound {
		return true
	}
	return strings.Contains(strings.ToLower(err.Error()), "not found")
}
