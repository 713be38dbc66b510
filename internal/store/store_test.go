package store

import (
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

type rec struct {
	ID    string `json:"id"`
	Value int    `json:"value"`
}

func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"b", "a", "c"} {
		if err := s.Put(BucketContainers, id, rec{ID: id, Value: i}); err != nil {
			t.Fatal(err)
		}
	}
	var got rec
	if err := s.Get(BucketContainers, "a", &got); err != nil || got.Value != 1 {
		t.Fatalf("get a = %+v, %v", got, err)
	}
	if err := s.Get(BucketContainers, "zz", &got); !errdefs.IsNotFound(err) {
		t.Fatalf("missing record error = %v, want NotFound", err)
	}
	if err := s.Delete(BucketContainers, "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(BucketContainers, "b"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: what was committed is there.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all, err := List[rec](s, BucketContainers)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != "a" || all[1].ID != "c" {
		t.Fatalf("after reopen: %+v", all)
	}
}

func TestStoreLockedByOtherOpener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// bbolt holds an flock; a second opener in this process times out.
	done := make(chan error, 1)
	go func() {
		s2, err := Open(path)
		if err == nil {
			s2.Close()
		}
		done <- err
	}()
	if err := <-done; err == nil {
		t.Fatal("second Open of a locked store succeeded")
	}
}
