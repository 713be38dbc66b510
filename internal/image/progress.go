package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// sharedProgress is the last time shared work (a blob fetch several pulls
// wait on) received bytes.
type sharedProgress struct {
	last atomic.Int64 // unix nanoseconds
	refs int          // guarded by Service.mu
}

func (p *sharedProgress) touch() { p.last.Store(time.Now().UnixNano()) }

// watch is one pull's view of progress: its own, plus that of the shared
// work it is waiting on. The watchdog cancels the pull when none of them
// moved for the configured timeout.
type watch struct {
	own sharedProgress

	mu     sync.Mutex
	shared map[*sharedProgress]int
}

func newWatch() *watch {
	w := &watch{shared: map[*sharedProgress]int{}}
	w.own.touch()
	return w
}

func (w *watch) touch() {
	if w != nil {
		w.own.touch()
	}
}

func (w *watch) follow(p *sharedProgress) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.shared[p]++
	w.mu.Unlock()
}

func (w *watch) unfollow(p *sharedProgress) {
	if w == nil {
		return
	}
	w.mu.Lock()
	if w.shared[p]--; w.shared[p] <= 0 {
		delete(w.shared, p)
	}
	w.mu.Unlock()
}

func (w *watch) lastProgress() time.Time {
	last := w.own.last.Load()
	w.mu.Lock()
	for p := range w.shared {
		last = max(last, p.last.Load())
	}
	w.mu.Unlock()
	return time.Unix(0, last)
}

// errNoProgress is the cancellation cause of a stalled pull.
var errNoProgress = errors.New("pull made no progress")

// withWatchdog returns a context cancelled when w records no progress for
// timeout (never when timeout is 0), and its stop func.
func withWatchdog(ctx context.Context, w *watch, timeout time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	if timeout <= 0 {
		return ctx, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(min(timeout/4, time.Second))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if idle := time.Since(w.lastProgress()); idle >= timeout {
					cancel(fmt.Errorf("%w for %s: %w", errNoProgress, timeout.Round(time.Millisecond), context.DeadlineExceeded))
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// progressReader touches p on every read that returned bytes.
type progressReader struct {
	r io.Reader
	p *sharedProgress
}

func (r progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.p.touch()
	}
	return n, err
}

// errOwnerCanceled marks a shared work's failure caused by the cancellation
// of the pull that happened to run it; other waiters retry.
var errOwnerCanceled = errors.New("shared work cancelled with the pull running it")

// shared runs fn once for all concurrent callers using key. fn gets a
// progress it touches while receiving bytes; callers' watches follow it.
// When the caller running fn is cancelled, the others run it again. A
// cancelled caller returns at once, even while fn still runs for it.
func (s *Service) shared(ctx context.Context, w *watch, key string, fn func(ctx context.Context, p *sharedProgress) error) error {
	return s.sharedWork(ctx, w, key, false, fn)
}

// sharedOwned is shared, except that a cancelled caller that runs fn itself
// returns only once fn has stopped (promptly: fn's ctx is cancelled too).
// A pull's layer downloads and unpacks run so: when one of them fails, the
// pull stops the others and frees what they wrote, which it could not do
// while they still write.
func (s *Service) sharedOwned(ctx context.Context, w *watch, key string, fn func(ctx context.Context, p *sharedProgress) error) error {
	return s.sharedWork(ctx, w, key, true, fn)
}

// Whether fn of a sharedWork call runs for its caller.
const (
	workQueued = iota
	workRunning
	workAbandoned // the caller left before fn began: fn must not begin
)

func (s *Service) sharedWork(ctx context.Context, w *watch, key string, waitOwn bool, fn func(ctx context.Context, p *sharedProgress) error) error {
	for {
		s.mu.Lock()
		p, ok := s.progress[key]
		if !ok {
			p = &sharedProgress{}
			p.touch()
			s.progress[key] = p
		}
		p.refs++
		s.mu.Unlock()
		w.follow(p)

		var stateMu sync.Mutex
		state := workQueued
		ch := s.sf.DoChan(key, func() (any, error) {
			stateMu.Lock()
			abandoned := state == workAbandoned
			state = workRunning
			stateMu.Unlock()
			var err error
			if abandoned {
				err = context.Cause(ctx)
			} else {
				err = fn(ctx, p)
			}
			if err != nil && ctx.Err() != nil {
				err = fmt.Errorf("%w: %w", errOwnerCanceled, context.Cause(ctx))
			}
			return nil, err
		})
		var err error
		select {
		case <-ctx.Done():
			err = context.Cause(ctx)
			if waitOwn {
				stateMu.Lock()
				running := state == workRunning
				if !running {
					state = workAbandoned
				}
				stateMu.Unlock()
				if running {
					<-ch
				}
			}
		case r := <-ch:
			err = r.Err
		}

		w.unfollow(p)
		s.mu.Lock()
		if p.refs--; p.refs == 0 {
			delete(s.progress, key)
		}
		s.mu.Unlock()

		if err != nil && errors.Is(err, errOwnerCanceled) && ctx.Err() == nil {
			continue
		}
		return err
	}
}
