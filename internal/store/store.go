// Package store is crid's embedded metadata store: JSON records in bbolt
// buckets. Every write is a committed (fsynced) transaction, so a step
// acknowledged to kubelet survives a crash.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// Buckets used by crid. Each package owns the records in its bucket.
const (
	BucketSandboxes  = "sandboxes"
	BucketContainers = "containers"
	BucketImages     = "images"
)

// Store is a bbolt database of JSON records keyed by id.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the database at path.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w (is another crid running with the same root?)", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{BucketSandboxes, BucketContainers, BucketImages} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Put writes v as JSON under id in bucket.
func (s *Store) Put(bucket, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store put %s/%s: %w", bucket, id, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(id), data)
	})
	if err != nil {
		return fmt.Errorf("store put %s/%s: %w", bucket, id, err)
	}
	return nil
}

// Get decodes the record id of bucket into v; errdefs.ErrNotFound if absent.
func (s *Store) Get(bucket, id string, v any) error {
	var data []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if d := b.Get([]byte(id)); d != nil {
			data = append([]byte(nil), d...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store get %s/%s: %w", bucket, id, err)
	}
	if data == nil {
		return fmt.Errorf("store get %s/%s: %w", bucket, id, errdefs.ErrNotFound)
	}
	return json.Unmarshal(data, v)
}

// Delete removes id from bucket; deleting a missing record is not an error.
func (s *Store) Delete(bucket, id string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("store delete %s/%s: %w", bucket, id, err)
	}
	return nil
}

// ErrStop ends a ForEach early without error.
var ErrStop = errors.New("stop iteration")

// ForEach calls fn with every record of bucket in key order. The data slice
// is only valid during the call.
func (s *Store) ForEach(bucket string, fn func(id string, data []byte) error) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// List decodes every record of bucket with newT and returns them in key order.
func List[T any](s *Store, bucket string) ([]*T, error) {
	var out []*T
	err := s.ForEach(bucket, func(id string, data []byte) error {
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bucket, id, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
