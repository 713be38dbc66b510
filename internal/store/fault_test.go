package store

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/fault"
)

// TestWriteFaults: a write failed at Store/put-<bucket> or
// Store/delete-<bucket> is rolled back (the record is as before) and says
// where it failed; a slow one holds the writer for its delay, and is
// logged once it has taken longer than the store's slowWrite; other
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
	logged := make(logLines, 4)
	s.SetLogger(slog.New(slog.NewTextHandler(logged, nil)))
	s.slowWrite = 10 * time.Millisecond
	start := time.Now()
	if err := s.Put(BucketImages, "i1", rec{ID: "i1"}); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("slow put = %v after %v", err, time.Since(start))
	}
	select {
	case line := <-logged:
		if !strings.Contains(line, "store write not finished") || !strings.Contains(line, `write="put images/i1"`) {
			t.Errorf("a write held past slowWrite logged %q", line)
		}
	default:
		t.Error("a write held past slowWrite was not logged")
	}
}

// logLines hands each line the store logs to the test.
type logLines chan string

func (l logLines) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
}
