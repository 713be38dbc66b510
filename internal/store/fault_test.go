package store

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/fault"
)

// TestWriteFaults: a write failed at Store/put-<bucket> or
// Store/delete-<bucket> is rolled back (the record is as before) and says
// where it failed; a slow one holds the writer for its delay; other
// buckets are untouched.
func TestWriteFaults(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := fault.Parse("Store/put-containers=error:1;Store/delete-sandboxes=error:1;Store/put-images=sleep:200ms",
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.SetFaults(in)
	err = s.Put(BucketContainers, "c1", rec{ID: "c1"})
	if !errors.Is(err, fault.ErrInjected) || !errdefs.IsUnavailable(err) {
		t.Fatalf("faulted put = %v, want an injected Unavailable error", err)
	}
	var got rec
	if err := s.Get(BucketContainers, "c1", &got); !errdefs.IsNotFound(err) {
		t.Fatalf("after a failed put the record reads %+v, %v; want NotFound", got, err)
	}
	if err := s.Put(BucketContainers, "c1", rec{ID: "c1", Value: 7}); err != nil {
		t.Fatalf("put after error:1 = %v", err)
	}
	if err := s.Put(BucketSandboxes, "p1", rec{ID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(BucketSandboxes, "p1"); !errors.Is(err, fault.ErrInjected) {
		t.Fatalf("faulted delete = %v", err)
	}
	if err := s.Get(BucketSandboxes, "p1", &got); err != nil {
		t.Fatalf("after a failed delete the record is gone: %v", err)
	}
	if err := s.Delete(BucketSandboxes, "p1"); err != nil {
		t.Fatalf("delete after error:1 = %v", err)
	}
	start := time.Now()
	if err := s.Put(BucketImages, "i1", rec{ID: "i1"}); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("slow put = %v after %v", err, time.Since(start))
	}
}
