package core

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestPodCreates(t *testing.T) {
	ready := func() *sandbox { return newSandbox(sandboxRecord{ID: "pod1", State: sandboxReady}, nil) }

	t.Run("a stop cancels a create in flight and waits for its rollback", func(t *testing.T) {
		sb := ready()
		ctx, pc, err := sb.beginCreate(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		rolledBack := make(chan struct{})
		go func() {
			<-ctx.Done() // a step of the create, hung until cancelled
			time.Sleep(30 * time.Millisecond)
			close(rolledBack)
			pc.end(sb)
		}()
		start := time.Now()
		if err := sb.closeCreates(context.Background()); err != nil {
			t.Fatalf("closeCreates: %v", err)
		}
		select {
		case <-rolledBack:
		default:
			t.Fatalf("closeCreates returned after %v, before the create had rolled back", time.Since(start))
		}
		err = pc.explain("create container web", "pod1", ctx.Err())
		if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "pod sandbox pod1 was stopped") {
			t.Fatalf("the cancelled create's error = %v, want FailedPrecondition naming the pod's stop", err)
		}
		if _, _, err := sb.beginCreate(context.Background(), false); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "being stopped") {
			t.Fatalf("a create after the stop began = %v, want FailedPrecondition saying the pod is being stopped", err)
		}
	})

	t.Run("the wait ends with the stop's deadline", func(t *testing.T) {
		sb := ready()
		_, pc, err := sb.beginCreate(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.end(sb)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := sb.closeCreates(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("closeCreates with a create that never ends = %v, want the deadline", err)
		}
	})

	t.Run("a finished create is not waited for nor explained", func(t *testing.T) {
		sb := ready()
		_, pc, err := sb.beginCreate(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		pc.end(sb)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := sb.closeCreates(ctx); err != nil {
			t.Fatalf("closeCreates with nothing in flight: %v", err)
		}
		other := errors.New("cni: refused")
		if err := pc.explain("create container web", "pod1", other); err != other {
			t.Fatalf("an error not caused by the stop became %v", err)
		}
	})

	t.Run("a container create needs a ready pod", func(t *testing.T) {
		sb := newSandbox(sandboxRecord{ID: "pod2", State: sandboxInit}, nil)
		if _, _, err := sb.beginCreate(context.Background(), true); !errdefs.IsFailedPrecondition(err) {
			t.Fatalf("create in a pod being made = %v, want FailedPrecondition", err)
		}
		if _, pc, err := sb.beginCreate(context.Background(), false); err != nil {
			t.Fatalf("the pod's own run: %v", err)
		} else {
			pc.end(sb)
		}
	})
}
