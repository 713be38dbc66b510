// Package storetest opens the stores written by earlier crids that
// internal/store/testdata keeps, for the tests of the packages whose
// records they hold.
package storetest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/crid-dev/crid/internal/store"
)

// V0 is a store written by crid 53ab463, the last commit before the
// schema version was recorded: one pod (fixture-pod, ready, runc) with a
// running container (fixture-ctr) and one that exited with 3
// (fixture-exited), and two images (the e2e busybox 1.29-2, pause 3.10).
const V0 = "store-v0-53ab463.db"

// Open opens a copy of the fixture name (Open migrates and writes the
// file) and closes it when the test ends.
func Open(t *testing.T, name string) *store.Store {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "meta.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(path)
	if err != nil {
		t.Fatalf("open the store %s: %v", name, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
