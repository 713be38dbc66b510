// Package store is crid's embedded metadata store: JSON records in bbolt
// buckets. Every write is a committed (fsynced) transaction, so a step
// acknowledged to kubelet survives a crash.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/fault"
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
	// faults is nil but in fault-injection tests (SetFaults).
	faults *fault.Injector
	log    *slog.Logger
	// slowWrite is how long a write may wait before it is logged.
	slowWrite time.Duration
}

// slowWrite is when a write (waiting for bbolt's one writer, then its
// fsynced commit: milliseconds on a healthy disk) is logged as stalled. A
// disk that stops answering holds every write, and every RPC that
// records something, while reads go on from memory: without this line
// the log would show nothing but callers' deadlines.
const slowWrite = 10 * time.Second

// SetLogger sets where stalled writes are logged (slog.Default until
// then). Call it before the store is shared.
func (s *Store) SetLogger(l *slog.Logger) { s.log = l }

// SetFaults injects faults into the store's writes, at the points
// "Store/put-<bucket>" and "Store/delete-<bucket>" (tests only; see
// docs/faults.md). Call it before the store is shared.
func (s *Store) SetFaults(in *fault.Injector) { s.faults = in }

// fault is reached inside a write's transaction, as a failing or slow
// commit (fsync) would be: an error rolls the transaction back, a sleep
// holds bbolt's single writer, as a slow disk does. The store has no
// caller context, so a hang there lasts as long as crid.
func (s *Store) fault(op, bucket string) error {
	return s.faults.At(context.Background(), "Store/"+op+"-"+bucket)
}

// SchemaVersion is the layout of the records this crid writes. Raise it,
// and add the step from the previous version to migrations, whenever a
// record changes in a way an older reader or a newer decoder would get
// wrong (a renamed or re-typed field, a moved bucket). Fields only added
// need no step: old records decode with the zero value.
const SchemaVersion = 1

// bucketMeta holds the store's own keys (keySchema).
const (
	bucketMeta = "meta"
	keySchema  = "schema"
)

// migrations[v] moves a store from schema version v to v+1, inside the
// transaction that also records v+1.
var migrations = []func(tx *bolt.Tx) error{
	// 0 -> 1: stores written before the version was recorded have the
	// same records as version 1; only the version is new.
	func(*bolt.Tx) error { return nil },
}

// Open opens (creating if needed) the database at path and brings an
// older store to SchemaVersion. A store from a newer crid is refused:
// this crid could misread its records.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w (is another crid running with the same root?)", path, err)
	}
	if err := db.Update(prepare); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db, log: slog.Default(), slowWrite: slowWrite}, nil
}

// prepare creates the buckets and migrates the records in one
// transaction, so a crash half-way leaves the store as it was.
func prepare(tx *bolt.Tx) error {
	version, err := schemaVersion(tx)
	if err != nil {
		return err
	}
	if version > SchemaVersion {
		return fmt.Errorf("its schema version is %d, newer than this crid's (%d): it was written by a newer crid; run that version or newer (downgrades are not supported)", version, SchemaVersion)
	}
	for v := version; v < SchemaVersion; v++ {
		if err := migrations[v](tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
		}
	}
	for _, b := range []string{BucketSandboxes, BucketContainers, BucketImages} {
		if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
			return err
		}
	}
	meta, err := tx.CreateBucketIfNotExists([]byte(bucketMeta))
	if err != nil {
		return err
	}
	return meta.Put([]byte(keySchema), []byte(strconv.Itoa(SchemaVersion)))
}

// schemaVersion reads the recorded version; a store without one is a new
// file (SchemaVersion) or one written before versions were recorded (0).
func schemaVersion(tx *bolt.Tx) (int, error) {
	if meta := tx.Bucket([]byte(bucketMeta)); meta != nil {
		raw := meta.Get([]byte(keySchema))
		v, err := strconv.Atoi(string(raw))
		if err != nil || v < 0 {
			return 0, fmt.Errorf("schema version %q is not a number", raw)
		}
		return v, nil
	}
	if tx.Bucket([]byte(BucketSandboxes)) == nil {
		return SchemaVersion, nil
	}
	return 0, nil
}

// Schema returns the store's recorded schema version.
func (s *Store) Schema() (int, error) {
	var v int
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		v, err = schemaVersion(tx)
		return err
	})
	return v, err
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Put writes v as JSON under id in bucket.
func (s *Store) Put(bucket, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store put %s/%s: %w", bucket, id, err)
	}
	err = s.update("put", bucket, id, func(tx *bolt.Tx) error {
		if err := s.fault("put", bucket); err != nil {
			return err
		}
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
	err := s.update("delete", bucket, id, func(tx *bolt.Tx) error {
		if err := s.fault("delete", bucket); err != nil {
			return err
		}
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

// update runs fn in a write transaction, logging once if it has not
// finished after s.slowWrite (the write names op, bucket and id).
func (s *Store) update(op, bucket, id string, fn func(*bolt.Tx) error) error {
	start := time.Now()
	t := time.AfterFunc(s.slowWrite, func() {
		s.log.Warn("store write not finished: the disk under the store may be stalled; writes and the calls that record something wait, reads go on",
			"write", op+" "+bucket+"/"+id, "waiting", time.Since(start).Round(time.Millisecond), "path", s.db.Path())
	})
	defer t.Stop()
	return s.db.Update(fn)
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
