// Package image is crid's image service: pulling over the OCI distribution
// protocol (through configured mirrors), a content-addressed blob store,
// layers unpacked once into overlayfs snapshots, image records in the
// metadata store, offline import, and the container root filesystems built
// on those snapshots.
package image

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sync/singleflight"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/fault"
	"github.com/crid-dev/crid/internal/metrics"
	"github.com/crid-dev/crid/internal/store"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one stored image. Persisted as JSON in store.BucketImages keyed by ID.
type Image struct {
	// ID is "sha256:<hex>" of the image config blob.
	ID string `json:"id"`
	// RepoTags are normalised references, e.g. "docker.io/library/busybox:latest".
	RepoTags []string `json:"repoTags"`
	// RepoDigests are "<repository>@sha256:<manifest digest>".
	RepoDigests []string `json:"repoDigests"`
	// Size is the bytes the image takes (compressed layers + config + manifest).
	Size uint64 `json:"size"`
	// Config is the image's runtime config (User, Env, Entrypoint, Cmd, WorkingDir, Volumes, StopSignal, Labels...).
	Config ocispec.ImageConfig `json:"config"`
	// DiffIDs of the layers, bottom first.
	DiffIDs []digest.Digest `json:"diffIDs"`
	// Annotations of the manifest.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Blobs are the content-store blobs (index, manifest, config) this image
	// keeps; blobs no image lists are deleted when images are removed.
	Blobs []digest.Digest `json:"blobs,omitempty"`
}

// Auth is registry credentials from a CRI AuthConfig.
type Auth struct {
	Username, Password, Auth, ServerAddress, IdentityToken, RegistryToken string
}

// FsUsage is what the image filesystem holds.
type FsUsage struct {
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// Service stores and pulls images.
type Service struct {
	// cfg is the configuration crid started with. The parts a SIGHUP
	// reloads (registries, pull pacing) are read from live instead.
	cfg  config.Images
	live atomic.Pointer[liveSettings]
	root string
	st   *store.Store
	log  *slog.Logger
	// faults is nil but in fault-injection tests (WithFaults).
	faults *fault.Injector

	contentDir  string // <root>/content: blobs/sha256/<hex>, ingest/
	snapshotDir string // <root>/snapshots: <chain hex>/fs

	// sf makes concurrent pulls of one reference, fetches of one blob and
	// unpacks of one layer happen once.
	sf singleflight.Group

	// recMu makes the writers of image records (record, Remove) take
	// turns, so that record can write without mu (see there). Taken
	// before mu.
	recMu sync.Mutex

	mu      sync.Mutex
	images  map[string]*Image // by ID
	tags    map[string]string // normalised tag reference -> ID
	digests map[string]string // repository@digest -> ID
	// inflight counts pulls using a snapshot (chain hex) or layer blob
	// (digest hex) that no record references yet; GC spares them.
	inflight map[string]int
	// progress of shared work (blob fetches) in flight, by singleflight key.
	progress map[string]*sharedProgress
	pinned   map[string]bool

	fsMu   sync.Mutex
	fsAt   time.Time
	fsLast FsUsage

	// gc frees what nothing references (gc.go).
	gc collector

	// metrics records pulls; nil records nothing (metrics.go).
	metrics *metrics.Metrics

	// dial replaces the network dialer for registry connections (tests).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// fsInfoMaxAge bounds how often FsInfo walks the store; kubelet asks every
// ~10s and a walk of a large store is not free.
const fsInfoMaxAge = 10 * time.Second

// Option configures a Service at New.
type Option func(*Service)

// WithFaults injects faults at the pull's named steps (tests only; see
// internal/fault): PullImage/downloaded (every layer in the content
// store, the top one not unpacked yet) and PullImage/unpacked (every layer
// unpacked, not yet recorded).
func WithFaults(in *fault.Injector) Option {
	return func(s *Service) { s.faults = in }
}

// New opens the image service rooted at root (e.g. /var/lib/crid) using st
// for image records, finishing what a crash interrupted (gc.go). Garbage
// is collected in the background only while RunCollector runs.
func New(cfg config.Images, root string, st *store.Store, opts ...Option) (*Service, error) {
	s := &Service{
		cfg:         cfg,
		root:        root,
		st:          st,
		log:         slog.New(slog.DiscardHandler),
		contentDir:  filepath.Join(root, "content"),
		snapshotDir: filepath.Join(root, "snapshots"),
		images:      map[string]*Image{},
		tags:        map[string]string{},
		digests:     map[string]string{},
		inflight:    map[string]int{},
		progress:    map[string]*sharedProgress{},
		pinned:      map[string]bool{},
		gc:          newCollector(),
	}
	for _, o := range opts {
		o(s)
	}
	if s.cfg.MaxConcurrentDownloads < 1 {
		s.cfg.MaxConcurrentDownloads = 1
	}
	s.live.Store(newLiveSettings(cfg))
	// Root only: layers hold the images' setuid binaries and device nodes,
	// and blobs may be private images; no other user of the node may
	// reach either (a dir left laxer by hand or by an old crid is fixed).
	for _, d := range []string{s.blobDir(), s.ingestDir(), s.snapshotDir, s.emptyDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image service: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("image service: %w", err)
		}
	}
	for _, p := range append([]string{cfg.SandboxImage}, cfg.PinnedImages...) {
		if p != "" {
			s.pinned[normaliseRef(p)] = true
		}
	}
	recs, err := store.List[Image](st, store.BucketImages)
	if err != nil {
		return nil, fmt.Errorf("image service: load records: %w", err)
	}
	for _, img := range recs {
		s.images[img.ID] = img
		s.indexAdd(img)
	}
	// Leftovers of an interrupted pull, removal or collection.
	if err := s.recoverStore(); err != nil {
		return nil, fmt.Errorf("image service: %w", err)
	}
	return s, nil
}

// SetLogger sets the logger of the service (it logs nothing otherwise).
func (s *Service) SetLogger(log *slog.Logger) {
	if log != nil {
		s.log = log
	}
}

func (s *Service) blobDir() string   { return filepath.Join(s.contentDir, "blobs", "sha256") }
func (s *Service) ingestDir() string { return filepath.Join(s.contentDir, "ingest") }
func (s *Service) emptyDir() string  { return filepath.Join(s.snapshotDir, ".empty") }

func (s *Service) blobPath(d digest.Digest) string { return filepath.Join(s.blobDir(), d.Encoded()) }

// snapshotFs is the unpacked tree of the layer with chain ID c.
func (s *Service) snapshotFs(c digest.Digest) string {
	return filepath.Join(s.snapshotDir, c.Encoded(), "fs")
}

// indexAdd records img's tags and digests in the lookup maps. s.mu held (or
// not yet shared).
func (s *Service) indexAdd(img *Image) {
	for _, t := range img.RepoTags {
		s.tags[t] = img.ID
	}
	for _, d := range img.RepoDigests {
		s.digests[d] = img.ID
	}
}

// indexRemove drops img's tags and digests from the lookup maps. s.mu held.
func (s *Service) indexRemove(img *Image) {
	for _, t := range img.RepoTags {
		if s.tags[t] == img.ID {
			delete(s.tags, t)
		}
	}
	for _, d := range img.RepoDigests {
		if s.digests[d] == img.ID {
			delete(s.digests, d)
		}
	}
}

func cloneImage(img *Image) *Image {
	c := *img
	c.RepoTags = slices.Clone(img.RepoTags)
	c.RepoDigests = slices.Clone(img.RepoDigests)
	c.DiffIDs = slices.Clone(img.DiffIDs)
	c.Blobs = slices.Clone(img.Blobs)
	c.Annotations = maps.Clone(img.Annotations)
	return &c
}

// Resolve finds a stored image by tag, digest reference, full ID or a unique
// ID prefix. errdefs.ErrNotFound when there is none.
func (s *Service) Resolve(ref string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	return cloneImage(img), nil
}

func (s *Service) resolveLocked(ref string) (*Image, error) {
	if ref == "" {
		return nil, fmt.Errorf("image reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	if img, ok := s.images[ref]; ok {
		return img, nil
	}
	if isHex(ref) && len(ref) == 64 {
		if img, ok := s.images["sha256:"+ref]; ok {
			return img, nil
		}
	}
	if r, err := parseReference(ref); err == nil {
		var id string
		if r.Digest != "" {
			id = s.digests[r.String()]
		} else {
			id = s.tags[r.String()]
		}
		if img, ok := s.images[id]; ok {
			return img, nil
		}
	}
	// A bare hex string is also a valid repository name ("deadbeef"); only
	// treat it as an ID prefix when it is long enough to be meant as one.
	if p, full := strings.CutPrefix(ref, "sha256:"); isHex(p) && (full || len(p) >= minIDPrefix) {
		var match *Image
		for id, img := range s.images {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), p) {
				if match != nil {
					return nil, fmt.Errorf("image %q: ambiguous ID prefix: %w", ref, errdefs.ErrNotFound)
				}
				match = img
			}
		}
		if match != nil {
			return match, nil
		}
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// minIDPrefix is the shortest bare ID prefix Resolve accepts (the length
// of the short IDs crictl and docker print).
const minIDPrefix = 12

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// List returns all stored images.
func (s *Service) List() []*Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, cloneImage(img))
	}
	slices.SortFunc(out, func(a, b *Image) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Pinned reports whether img is pinned (the sandbox image or a configured pinned image).
func (s *Service) Pinned(img *Image) bool {
	if img == nil {
		return false
	}
	if s.pinned[img.ID] {
		return true
	}
	for _, r := range append(slices.Clone(img.RepoTags), img.RepoDigests...) {
		if s.pinned[r] {
			return true
		}
	}
	return false
}

// Remove deletes the record of the image ref resolves to, with all its
// tags; its files are freed by the background collector (gc.go). A missing
// image is not an error. inUse(imageID) reports whether a container uses
// it; then Remove fails with errdefs.ErrFailedPrecondition. inUse is
// called under s.mu, atomically with the deletion (gc.go explains why):
// it must not call into the Service.
func (s *Service) Remove(ctx context.Context, ref string, inUse func(imageID string) bool) error {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.Lock()
	cur, err := s.resolveLocked(ref)
	if errdefs.IsNotFound(err) {
		s.mu.Unlock()
		return nil
	}
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	if inUse != nil && inUse(cur.ID) {
		s.mu.Unlock()
		return fmt.Errorf("remove image %s: image %s is in use by container(s): %w", ref, cur.ID, errdefs.ErrFailedPrecondition)
	}
	// The record goes first, its files after (gc.go, crash safety).
	if err := s.st.Delete(store.BucketImages, cur.ID); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	s.indexRemove(cur)
	delete(s.images, cur.ID)
	s.mu.Unlock()
	s.log.Info("image removed", "id", cur.ID, "tags", cur.RepoTags)
	s.requestCollect()
	return nil
}

// record stores img, merging it into an existing record of the same ID and
// moving its tags away from any other image. The store's writes are made
// without s.mu: a write the disk stalls holds this pull, not the readers
// (ListImages, ImageStatus, a container's image lookup), which go on with
// the records as they were. recMu keeps the other writers out meanwhile,
// so the merge stays the one to apply.
func (s *Service) record(img *Image) (*Image, error) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.Lock()
	merged := cloneImage(img)
	if old, ok := s.images[img.ID]; ok {
		merged.RepoTags = union(old.RepoTags, img.RepoTags)
		merged.RepoDigests = union(old.RepoDigests, img.RepoDigests)
		merged.Blobs = union(old.Blobs, img.Blobs)
	}
	var changed []*Image
	for _, t := range img.RepoTags {
		ownerID, ok := s.tags[t]
		if !ok || ownerID == img.ID {
			continue
		}
		if owner, ok := s.images[ownerID]; ok {
			o := cloneImage(owner)
			o.RepoTags = slices.DeleteFunc(o.RepoTags, func(x string) bool { return x == t })
			changed = append(changed, o)
		}
	}
	s.mu.Unlock()
	// The maps take what was written at once: a tag moving between
	// images is never missing from both while a write waits.
	var written []*Image
	var err error
	for _, o := range append(changed, merged) {
		if err = s.st.Put(store.BucketImages, o.ID, o); err != nil {
			err = fmt.Errorf("record image %s: %w", o.ID, err)
			break
		}
		written = append(written, o)
	}
	s.mu.Lock()
	for _, o := range written {
		if old, ok := s.images[o.ID]; ok {
			s.indexRemove(old)
		}
		s.images[o.ID] = o
		s.indexAdd(o)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return cloneImage(merged), nil
}

func union[T comparable](a, b []T) []T {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// chainIDs computes the chain ID of each layer: the identity of a layer
// together with everything below it, which is what a snapshot holds.
func chainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

const (
	tmpPrefix   = ".tmp-"
	trashPrefix = ".trash-"
)

// markInflight protects keys (chain or blob hex) from GC until the returned
// func is called.
func (s *Service) markInflight(keys []string) func() {
	s.mu.Lock()
	for _, k := range keys {
		s.inflight[k]++
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		for _, k := range keys {
			if s.inflight[k]--; s.inflight[k] <= 0 {
				delete(s.inflight, k)
			}
		}
		s.mu.Unlock()
	}
}
