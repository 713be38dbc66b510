package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
)

// Garbage collection of the image store: blobs (<root>/content/blobs) and
// snapshots (<root>/snapshots/<chain hex>) that no image record, no
// in-flight pull or import and no mounted overlay uses are freed: in the
// background after RemoveImage and every images.gc_interval; synchronously
// once at start, and after a failed pull or import, before it returns (so
// its leftovers never stand in the way of the next pull, see nospace.go).
//
// # References: who keeps what
//
// Everything below is decided under Service.mu, the lock that also guards
// the image records, so "what is unreferenced" and "take a reference" are
// never interleaved:
//
//   - An image record keeps its blobs (Image.Blobs) and the snapshots of
//     its chain IDs.
//   - A pull or import marks every blob and chain it is about to write or
//     reuse in Service.inflight (markInflight) before it looks at the disk,
//     and unmarks them only after the record that keeps them is written (or
//     the pull failed). A collection therefore either runs entirely before
//     the mark, and the pull then sees the real state of the disk and
//     downloads or unpacks again what was freed, or it sees the mark.
//   - A container's or image volume's overlay is kept by the image record:
//     PrepareRootfs and MountImageVolume check, under Service.mu, that the
//     record still exists, and Remove checks the caller's inUse (core's
//     registered containers and sandboxes) under the same lock, atomically
//     with deleting the record. core registers a container before it
//     prepares its rootfs and unregisters it only after releasing it, so
//     either Remove sees the container and refuses, or the rootfs
//     preparation sees no record and fails with NotFound: a mount of a
//     removed image's layers cannot happen. Lock order: Service.mu, then
//     the caller's locks inside inUse (core never calls into the image
//     service while holding its own lock).
//   - Defence in depth: a snapshot that a mounted overlay names in
//     /proc/self/mountinfo is never collected, whatever the records say.
//
// # Crash safety
//
// Invariant: every file a record names is complete and in place, and
// anything partly deleted is in the trash (<root>/content/trash), which
// nothing references and the next start empties. It holds because:
//
//  1. Files are committed before the record naming them: blobs are renamed
//     from the ingest dir, snapshots from a .tmp- dir, and only then is the
//     record written (fsynced by the store).
//  2. A record is deleted (fsynced) before any of its files is touched. A
//     crash in between leaves unreferenced files, which the start's
//     collection finds again; the opposite order would leave a record
//     naming files that are gone.
//  3. A victim leaves the live namespace with one atomic rename into the
//     trash, decided and done under Service.mu; only then, unlocked, are its
//     files deleted. A crash mid-deletion leaves a half-deleted tree only
//     in the trash, and a pull running meanwhile never finds one under a
//     live name (it would take snapshots/<chain> for a complete layer).
//  4. At start, before anything can reference anything, the trash, the
//     ingest dir and .tmp- snapshots are emptied and a full collection runs.
//
// So a SIGKILL at any point loses nothing referenced, and the next start
// finishes the job. (Unpacked files are not fsynced before their record:
// a power loss, unlike a crash of crid, may still lose recent layers.)

// WithOnFreed has fn called after each collection that freed something,
// with kind "images" and the bytes freed (for crid_disk_freed_bytes_total).
// fn runs on the collecting goroutine and must not call into the Service.
func WithOnFreed(fn func(kind string, bytes int64)) Option {
	return func(s *Service) { s.gc.onFreed = fn }
}

// FreedKind is the kind WithOnFreed's callback is given.
const FreedKind = "images"

// Collection is what one collection freed.
type Collection struct {
	Snapshots int           // snapshots moved to the trash
	Blobs     int           // blobs moved to the trash
	Bytes     int64         // bytes deleted from the trash (allocated blocks)
	Duration  time.Duration // the whole collection
}

// collector is the state of garbage collection.
type collector struct {
	// kick asks the background collector for a collection; a kick sent
	// while one is pending is merged into it.
	kick chan struct{}
	// running serialises collections (a one-slot semaphore): trash names
	// and the emptying of the trash have one owner at a time. A channel, not
	// a mutex, so that a collection waiting for another gives up with its
	// context.
	running chan struct{}
	// seq makes trash names unique within a run. Guarded by running.
	seq uint64
	// onFreed is WithOnFreed's callback, or nil.
	onFreed func(kind string, bytes int64)
	// crashAt, set only by tests, is called at named points of a
	// collection (to kill the process there).
	crashAt func(point string)
	// remove deletes a trash entry: os.RemoveAll; tests replace it.
	remove func(string) error
}

func newCollector() collector {
	return collector{
		kick:    make(chan struct{}, 1),
		running: make(chan struct{}, 1),
		remove:  os.RemoveAll,
	}
}

func (c *collector) at(point string) {
	if c.crashAt != nil {
		c.crashAt(point)
	}
}

// trashDir holds victims being deleted; emptied at every start.
func (s *Service) trashDir() string { return filepath.Join(s.contentDir, "trash") }

// requestCollect asks the background collector (RunCollector) for a
// collection soon, without waiting.
func (s *Service) requestCollect() {
	select {
	case s.gc.kick <- struct{}{}:
	default: // one is pending already
	}
}

// RunCollector collects garbage when asked (after RemoveImage, or when the
// collection after a failed pull failed) and every images.gc_interval
// (never when 0), until ctx ends.
func (s *Service) RunCollector(ctx context.Context) {
	var tick <-chan time.Time
	if iv := s.cfg.GCInterval.Duration; iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.gc.kick:
		case <-tick:
		}
		if _, err := s.Collect(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("image gc failed", "error", err)
		}
	}
}

// freeAfterFailureTimeout bounds the collection a failed pull or import
// waits for (it may first wait for a collection already running).
const freeAfterFailureTimeout = 2 * time.Minute

// freeAfterFailure collects, synchronously, after the pull or import of
// image failed: what it wrote is unmarked, so anything no record and no
// other pull in flight keeps goes (blobs and snapshots it shares with a
// concurrent pull stay marked by that pull). It runs even when ctx is
// what ended the pull. A collection that fails is logged and left to the
// background collector: the caller returns the pull's own error.
func (s *Service) freeAfterFailure(ctx context.Context, image string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), freeAfterFailureTimeout)
	defer cancel()
	c, err := s.Collect(cctx)
	if err != nil {
		s.log.Warn("image gc after a failed pull or import failed; left to the background collector", "image", image, "error", err)
		s.requestCollect()
		return
	}
	s.log.Info("freed what a failed pull or import left", "image", image, "snapshots", c.Snapshots, "blobs", c.Blobs, "freed_bytes", c.Bytes)
}

// recoverStore finishes what a crash interrupted, before the service is
// used: it empties the ingest dir and half-made snapshots, then collects
// everything no record references and empties the trash (counting what a
// collection cut short had moved there).
func (s *Service) recoverStore() error {
	if err := os.RemoveAll(s.ingestDir()); err != nil {
		return fmt.Errorf("image store recovery: %w", err)
	}
	for _, d := range []string{s.ingestDir(), s.trashDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("image store recovery: %w", err)
		}
	}
	entries, err := os.ReadDir(s.snapshotDir)
	if err != nil {
		return fmt.Errorf("image store recovery: %w", err)
	}
	for _, e := range entries {
		// .trash- is where crids before the trash dir put victims.
		if strings.HasPrefix(e.Name(), tmpPrefix) || strings.HasPrefix(e.Name(), trashPrefix) {
			if err := os.RemoveAll(filepath.Join(s.snapshotDir, e.Name())); err != nil {
				return fmt.Errorf("image store recovery: %w", err)
			}
		}
	}
	if _, err := s.Collect(context.Background()); err != nil {
		return fmt.Errorf("image store recovery: %w", err)
	}
	return nil
}

// Collect frees the blobs and snapshots nothing references (see the top of
// this file) and returns what it freed. One collection runs at a time.
func (s *Service) Collect(ctx context.Context) (Collection, error) {
	select {
	case s.gc.running <- struct{}{}:
	case <-ctx.Done():
		return Collection{}, fmt.Errorf("image gc: %w", context.Cause(ctx))
	}
	defer func() { <-s.gc.running }()
	start := time.Now()
	// Read before the records are: a mount made after this point was made
	// from a record, which the locked decision below sees.
	mounted, err := s.mountedSnapshots()
	if err != nil {
		return Collection{}, fmt.Errorf("image gc: %w", err)
	}
	var c Collection
	c.Snapshots, c.Blobs, err = s.trashUnreferenced(mounted)
	if err != nil {
		return c, fmt.Errorf("image gc: %w", err)
	}
	s.gc.at("moved")
	bytes, err := s.emptyTrash(ctx)
	c.Bytes, c.Duration = bytes, time.Since(start)
	if bytes > 0 || c.Snapshots > 0 || c.Blobs > 0 {
		s.fsMu.Lock()
		s.fsAt = time.Time{} // FsInfo walks the store again
		s.fsMu.Unlock()
		s.log.Info("image gc", "snapshots", c.Snapshots, "blobs", c.Blobs, "freed_bytes", c.Bytes, "duration", c.Duration)
	} else {
		s.log.Debug("image gc: nothing to free", "duration", c.Duration)
	}
	if bytes > 0 && s.gc.onFreed != nil {
		s.gc.onFreed(FreedKind, bytes)
	}
	if err != nil {
		return c, fmt.Errorf("image gc: %w", err)
	}
	return c, nil
}

// trashUnreferenced moves every snapshot and blob that no record, no
// in-flight pull and no mount (mounted, chain hex) keeps into the trash,
// deciding and moving under s.mu. It returns how many of each it moved.
func (s *Service) trashUnreferenced(mounted map[string]bool) (snapshots, blobs int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[string]bool{}
	for _, img := range s.images {
		for _, c := range chainIDs(img.DiffIDs) {
			keep[c.Encoded()] = true
		}
		for _, b := range img.Blobs {
			keep[b.Encoded()] = true
		}
	}
	for k := range s.inflight {
		keep[k] = true
	}
	snaps, err := os.ReadDir(s.snapshotDir)
	if err != nil {
		return 0, 0, err
	}
	var victims []string
	for _, e := range snaps {
		n := e.Name()
		// Only committed snapshots: .tmp- ones belong to unpacks running
		// now, .empty is the shared empty lower dir.
		if len(n) != 64 || !isHex(n) || keep[n] {
			continue
		}
		if mounted[n] {
			s.log.Warn("image gc: snapshot no image references is mounted; kept", "snapshot", n)
			continue
		}
		victims = append(victims, filepath.Join(s.snapshotDir, n))
	}
	nSnap := len(victims)
	blobEntries, err := os.ReadDir(s.blobDir())
	if err != nil {
		return 0, 0, err
	}
	for _, e := range blobEntries {
		if !keep[e.Name()] {
			victims = append(victims, filepath.Join(s.blobDir(), e.Name()))
		}
	}
	s.gc.at("decided")
	for i, v := range victims {
		if err := s.moveToTrash(v); err != nil {
			return snapshots, blobs, err
		}
		if i < nSnap {
			snapshots++
		} else {
			blobs++
		}
		if i == 0 {
			s.gc.at("moved-one")
		}
	}
	return snapshots, blobs, nil
}

// moveToTrash renames p into the trash under a unique name. A blob that
// cannot be renamed there (another filesystem) is unlinked, which is as
// atomic; a snapshot is never on another filesystem than the trash
// without a configuration crid does not make.
func (s *Service) moveToTrash(p string) error {
	s.gc.seq++
	dst := filepath.Join(s.trashDir(), filepath.Base(filepath.Dir(p))+"-"+filepath.Base(p)+"-"+
		strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+strconv.FormatUint(s.gc.seq, 10))
	err := os.Rename(p, dst)
	if errors.Is(err, syscall.EXDEV) && filepath.Dir(p) == s.blobDir() {
		err = os.Remove(p)
	}
	if err != nil {
		return fmt.Errorf("move %s to the trash: %w", p, err)
	}
	return nil
}

// emptyTrash deletes everything in the trash, this collection's victims and
// what an earlier one could not delete, and returns the bytes freed.
func (s *Service) emptyTrash(ctx context.Context) (int64, error) {
	entries, err := os.ReadDir(s.trashDir())
	if err != nil {
		return 0, err
	}
	var freed int64
	var errs []error
	for i, e := range entries {
		if err := ctx.Err(); err != nil {
			// The rest waits for the next collection or start.
			return freed, errors.Join(append(errs, context.Cause(ctx))...)
		}
		p := filepath.Join(s.trashDir(), e.Name())
		bytes, _, err := diskUsage(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("size of %s: %w", p, err))
			continue
		}
		if err := s.gc.remove(p); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", p, err))
			continue
		}
		freed += int64(bytes)
		if i == 0 {
			s.gc.at("deleted-one")
		}
	}
	return freed, errors.Join(errs...)
}

// mountedSnapshots returns the chain hex of every snapshot a mounted
// overlay uses as a layer, from the kernel's own mount table.
func (s *Service) mountedSnapshots() (map[string]bool, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("overlay"))
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	prefix := s.snapshotDir + "/"
	out := map[string]bool{}
	for _, m := range mounts {
		opts := m.VFSOptions
		for {
			i := strings.Index(opts, prefix)
			if i < 0 {
				break
			}
			opts = opts[i+len(prefix):]
			if len(opts) >= 64 && isHex(opts[:64]) {
				out[opts[:64]] = true
			}
		}
	}
	return out, nil
}
