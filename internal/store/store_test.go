package store

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
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

// fixtureV0 is storetest.V0 (a store written by crid 53ab463); the store's
// own tests cannot import storetest, which imports store.
const fixtureV0 = "testdata/store-v0-53ab463.db"

// copyFixture copies a checked-in store to a temporary directory: Open
// writes to it.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "meta.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMigrationsCoverEveryVersion(t *testing.T) {
	if len(migrations) != SchemaVersion {
		t.Fatalf("%d migrations for schema version %d: each version needs the step from the one before", len(migrations), SchemaVersion)
	}
}

func TestSchemaOfNewStore(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.Schema(); err != nil || v != SchemaVersion {
		t.Fatalf("Schema() = %d, %v; want %d", v, err, SchemaVersion)
	}
}

func TestOpenMigratesUnversionedStore(t *testing.T) {
	path := copyFixture(t, fixtureV0)
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open of a store written by 53ab463: %v", err)
	}
	if v, err := s.Schema(); err != nil || v != SchemaVersion {
		t.Fatalf("Schema() after migration = %d, %v; want %d", v, err, SchemaVersion)
	}
	want := map[string]int{BucketSandboxes: 1, BucketContainers: 2, BucketImages: 2}
	for bucket, n := range want {
		got := 0
		if err := s.ForEach(bucket, func(string, []byte) error { got++; return nil }); err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Errorf("bucket %s has %d records after migration, want %d", bucket, got, n)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A second open finds the version recorded and changes nothing.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.Schema(); v != SchemaVersion {
		t.Fatalf("Schema() on reopen = %d", v)
	}
}

func TestOpenRefusesBadSchema(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
	}{
		{"newer", strconv.Itoa(SchemaVersion + 1), "newer than this crid's"},
		{"not a number", "one", "is not a number"},
		{"negative", "-1", "is not a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "meta.db")
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte(bucketMeta))
				if err != nil {
					return err
				}
				return b.Put([]byte(keySchema), []byte(tc.value))
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(path)
			if err == nil {
				s.Close()
				t.Fatalf("Open of a store with schema %q succeeded", tc.value)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the store and say %q", err, tc.want)
			}
		})
	}
}
