package core

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// always says every object still exists.
func always(string) bool { return true }

func TestPendingOps(t *testing.T) {
	base := context.Background()
	var wg sync.WaitGroup
	defer wg.Wait()

	t.Run("a waiting caller gets the result and it is not kept", func(t *testing.T) {
		p := newPendingOps(0, quietLog)
		var calls atomic.Int32
		fn := func(context.Context) (string, error) { calls.Add(1); return "id1", nil }
		for i := 0; i < 2; i++ {
			if id, err := p.run(context.Background(), base, &wg, "k", always, fn); err != nil || id != "id1" {
				t.Fatalf("run = %q, %v", id, err)
			}
		}
		if calls.Load() != 2 {
			t.Fatalf("fn ran %d times; a claimed result must not be handed out twice", calls.Load())
		}
	})

	t.Run("a retry joins the create its timed-out caller left running", func(t *testing.T) {
		p := newPendingOps(0, quietLog)
		release := make(chan struct{})
		var calls atomic.Int32
		fn := func(ctx context.Context) (string, error) {
			calls.Add(1)
			select {
			case <-release:
				return "pod-a", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := p.run(ctx, base, &wg, "k", always, fn); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("first caller: %v, want its deadline", err)
		}
		got := make(chan string)
		go func() {
			id, _ := p.run(context.Background(), base, &wg, "k", always, fn)
			got <- id
		}()
		close(release)
		if id := <-got; id != "pod-a" {
			t.Fatalf("retry got %q, want the first create's pod-a", id)
		}
		if calls.Load() != 1 {
			t.Fatalf("fn ran %d times, want once", calls.Load())
		}
	})

	t.Run("a finished unclaimed success is handed to the retry", func(t *testing.T) {
		p := newPendingOps(0, quietLog)
		var calls atomic.Int32
		finished := make(chan struct{})
		fn := func(context.Context) (string, error) {
			calls.Add(1)
			time.Sleep(30 * time.Millisecond)
			defer close(finished)
			return "ctr-b", nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		if _, err := p.run(ctx, base, &wg, "k", always, fn); err == nil {
			t.Fatal("first caller did not time out")
		}
		<-finished
		time.Sleep(5 * time.Millisecond) // done is closed right after fn returns
		if id, err := p.run(context.Background(), base, &wg, "k", always, fn); err != nil || id != "ctr-b" || calls.Load() != 1 {
			t.Fatalf("retry: %q %v after %d runs", id, err, calls.Load())
		}
	})

	t.Run("a finished result whose object was removed since is not replayed", func(t *testing.T) {
		p := newPendingOps(0, quietLog)
		var calls atomic.Int32
		finished := make(chan struct{})
		fn := func(context.Context) (string, error) {
			n := calls.Add(1)
			if n == 1 {
				time.Sleep(30 * time.Millisecond)
				defer close(finished)
				return "old", nil
			}
			return "new", nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		_, _ = p.run(ctx, base, &wg, "k", always, fn)
		<-finished
		time.Sleep(5 * time.Millisecond)
		gone := func(id string) bool { return id != "old" }
		if id, err := p.run(context.Background(), base, &wg, "k", gone, fn); err != nil || id != "new" || calls.Load() != 2 {
			t.Fatalf("after the object was removed: %q %v after %d runs, want a fresh create", id, err, calls.Load())
		}
	})

	t.Run("a failed create is tried again, not replayed", func(t *testing.T) {
		p := newPendingOps(0, quietLog)
		var calls atomic.Int32
		fn := func(context.Context) (string, error) {
			if calls.Add(1) == 1 {
				time.Sleep(20 * time.Millisecond)
				return "", errors.New("cni: transient")
			}
			return "pod-c", nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		_, _ = p.run(ctx, base, &wg, "k", always, fn)
		time.Sleep(40 * time.Millisecond)
		if id, err := p.run(context.Background(), base, &wg, "k", always, fn); err != nil || id != "pod-c" || calls.Load() != 2 {
			t.Fatalf("retry after failure: %q %v after %d runs", id, err, calls.Load())
		}
	})

	t.Run("concurrent duplicates share one create", func(t *testing.T) {
		p := newPendingOps(0, quietLog)
		var calls atomic.Int32
		fn := func(context.Context) (string, error) {
			calls.Add(1)
			time.Sleep(20 * time.Millisecond)
			return "pod-d", nil
		}
		var cw sync.WaitGroup
		ids := make([]string, 5)
		for i := range ids {
			cw.Add(1)
			go func() {
				defer cw.Done()
				ids[i], _ = p.run(context.Background(), base, &wg, "k", always, fn)
			}()
		}
		cw.Wait()
		for _, id := range ids {
			if id != "pod-d" {
				t.Fatalf("ids %v", ids)
			}
		}
		if calls.Load() != 1 {
			t.Fatalf("fn ran %d times for concurrent duplicates", calls.Load())
		}
	})

	t.Run("the service's end cancels a create nobody waits for", func(t *testing.T) {
		p := newPendingOps(0, quietLog)
		svc, stop := context.WithCancel(context.Background())
		ended := make(chan error, 1)
		fn := func(ctx context.Context) (string, error) { <-ctx.Done(); ended <- ctx.Err(); return "", ctx.Err() }
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		_, _ = p.run(ctx, svc, &wg, "k", always, fn)
		stop()
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("create saw %v, want the service's cancellation", err)
		}
	})
	t.Run("a create past its bound is rolled back and the retry creates anew", func(t *testing.T) {
		var logged strings.Builder
		var logMu sync.Mutex
		p := newPendingOps(50*time.Millisecond, slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logged}, nil)))
		var calls atomic.Int32
		ended := make(chan error, 1)
		fn := func(ctx context.Context) (string, error) {
			if calls.Add(1) == 1 {
				<-ctx.Done() // hung until the bound
				ended <- ctx.Err()
				return "", ctx.Err()
			}
			return "pod-e", nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _ = p.run(ctx, base, &wg, "pod web_default_u1_0", always, fn)
		if err := <-ended; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the hung create saw %v, want its bound's deadline", err)
		}
		if took := time.Since(start); took < 50*time.Millisecond || took > 2*time.Second {
			t.Fatalf("the bound of 50ms ended the create after %v", took)
		}
		// The failed result is not handed out: the retry creates anew.
		deadline := time.Now().Add(2 * time.Second)
		for {
			id, err := p.run(context.Background(), base, &wg, "pod web_default_u1_0", always, fn)
			if err == nil {
				if id != "pod-e" || calls.Load() != 2 {
					t.Fatalf("retry after the bound: %q after %d runs, want a second create", id, calls.Load())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("retry after the bound: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		logMu.Lock()
		defer logMu.Unlock()
		if l := logged.String(); !strings.Contains(l, "create passed its bound and was rolled back") || !strings.Contains(l, "pod web_default_u1_0") {
			t.Fatalf("the bound's log does not say what happened to which pod: %q", l)
		}
	})

	t.Run("the default bound is pendingTimeout", func(t *testing.T) {
		if p := newPendingOps(0, quietLog); p.timeout != pendingTimeout || pendingTimeout != 4*time.Minute {
			t.Fatalf("default bound %v (pendingTimeout %v), want 4m", p.timeout, pendingTimeout)
		}
	})
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
