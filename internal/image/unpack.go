package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/tracing"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// imageSource is an image to store, from a registry or an archive.
type imageSource struct {
	name         string // for messages
	config       []byte
	configDigest digest.Digest
	// blobs are the manifests (and index) kept in the content store.
	blobs       map[digest.Digest][]byte
	layers      []layerSource
	size        uint64
	tags        []string
	repoDigests []string
	annotations map[string]string
	// cancel, when set, cancels the context the remote layers are read
	// with.
	cancel context.CancelCauseFunc
}

// layerSource is one layer of an imageSource.
type layerSource struct {
	// digest of the blob as opened; empty when unknown (docker save tarballs
	// address layers by diffID only).
	digest digest.Digest
	// remote layers are downloaded into the content store (in parallel)
	// before being unpacked (in order).
	remote bool
	// open returns the layer blob, compressed or not.
	open func() (io.ReadCloser, error)
}

// storeImage verifies and unpacks src and records the image.
func (s *Service) storeImage(ctx context.Context, w *watch, src *imageSource) (_ *Image, err error) {
	if got := digest.FromBytes(src.config); got != src.configDigest {
		return nil, fmt.Errorf("config of %s has digest %s, manifest says %s: %w", src.name, got, src.configDigest, errdefs.ErrDataLoss)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(src.config, &cfg); err != nil {
		return nil, fmt.Errorf("config of %s: %w", src.name, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(src.layers) {
		return nil, fmt.Errorf("image %s: config lists %d layers, manifest %d: %w", src.name, len(diffIDs), len(src.layers), errdefs.ErrInvalidArgument)
	}
	for _, d := range diffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("image %s: bad diffID %q: %w", src.name, d, errdefs.ErrInvalidArgument)
		}
	}
	chains := chainIDs(diffIDs)

	keys := []string{src.configDigest.Encoded()}
	for d := range src.blobs {
		keys = append(keys, d.Encoded())
	}
	for i, l := range src.layers {
		keys = append(keys, chains[i].Encoded())
		if l.digest != "" {
			keys = append(keys, l.digest.Encoded())
		}
	}
	release := s.markInflight(keys)
	defer func() {
		release()
		if err != nil {
			// What it downloaded or unpacked is referenced by nothing now;
			// freed before the caller learns of the failure, so that the
			// room is there for whatever it tries next.
			s.freeAfterFailure(ctx, src.name)
		}
	}()

	if err := s.writeBlob(src.configDigest, src.config); err != nil {
		return nil, err
	}
	blobList := []digest.Digest{src.configDigest}
	for d, b := range src.blobs {
		if err := s.writeBlob(d, b); err != nil {
			return nil, err
		}
		blobList = append(blobList, d)
	}
	slices.Sort(blobList)

	if err := s.fetchAndUnpack(ctx, w, src, diffIDs, chains); err != nil {
		return nil, err
	}
	if err := s.faults.At(ctx, "PullImage/unpacked"); err != nil {
		return nil, fmt.Errorf("image %s: %w", src.name, err)
	}
	img := &Image{
		ID:          src.configDigest.String(),
		RepoTags:    src.tags,
		RepoDigests: src.repoDigests,
		Size:        src.size,
		Config:      cfg.Config,
		DiffIDs:     diffIDs,
		Annotations: src.annotations,
		Blobs:       blobList,
	}
	if img.RepoTags == nil {
		img.RepoTags = []string{}
	}
	if img.RepoDigests == nil {
		img.RepoDigests = []string{}
	}
	s.fsMu.Lock()
	s.fsAt = s.fsAt.Add(-fsInfoMaxAge) // let the next FsInfo see the new layers
	s.fsMu.Unlock()
	return s.record(img)
}

// fetchAndUnpack downloads the missing layers of src, up to maxDownloads at
// a time and bottom-up, and unpacks each as soon as its blob is in and the
// layers below it are unpacked: the download of the layers above overlaps
// the unpack of those below, where it used to wait for the last download.
// Unpacking stays in order, one layer at a time: a layer's implicit parent
// directories copy their attributes from the layers below, which must
// therefore exist first. Every blob is verified on its way into the
// content store, before its unpack opens it. On failure no download is
// left running when it returns, so what the pull made can be freed.
func (s *Service) fetchAndUnpack(ctx context.Context, w *watch, src *imageSource, diffIDs, chains []digest.Digest) error {
	// The first failure, of a download or of an unpack, cancels the rest,
	// also the registry requests under way (src.cancel).
	ctx, cancelOwn := context.WithCancelCause(ctx)
	defer cancelOwn(nil)
	cancel := func(err error) {
		cancelOwn(err)
		if src.cancel != nil {
			src.cancel(err)
		}
	}
	f := s.startFetches(ctx, w, src, chains, cancel)
	defer func() { _ = f.wait() }()
	// fail stops everything and returns the first failure: an unpack
	// that only saw the cancellation by a failed download (or by the
	// pull's own cancellation) reports that instead, as the download
	// error it is (they were never wrapped).
	fail := func(err error) error {
		cancel(err)
		_ = f.wait()
		if cause := context.Cause(ctx); cause != err {
			return cause
		}
		return err
	}
	n := len(src.layers)
	for i, l := range src.layers {
		if i == n-1 {
			// The unpacks below needed every download but this layer's,
			// which its unpack needs too: waiting for all of them here
			// delays nothing, and gives PullImage/downloaded its meaning.
			if err := f.wait(); err != nil {
				return err
			}
			if err := s.downloadedFault(ctx, src); err != nil {
				return err
			}
		}
		select {
		case <-f.fetched[i]:
		case <-ctx.Done():
			return fail(context.Cause(ctx))
		}
		if err := s.unpack(ctx, w, l, diffIDs[i], chains[:i+1]); err != nil {
			return fail(fmt.Errorf("image %s: layer %d: %w", src.name, i, err))
		}
	}
	if n == 0 {
		return s.downloadedFault(ctx, src)
	}
	return nil
}

// downloadedFault is the fault point PullImage/downloaded: every layer is
// in the content store (or already unpacked), the last not unpacked yet.
func (s *Service) downloadedFault(ctx context.Context, src *imageSource) error {
	if err := s.faults.At(ctx, "PullImage/downloaded"); err != nil {
		return fmt.Errorf("image %s: %w", src.name, err)
	}
	return nil
}

// layerFetches are the downloads of one pull's missing layers.
type layerFetches struct {
	// fetched[i] is closed once layer i's blob is in, or is not needed.
	fetched []chan struct{}
	g       errgroup.Group
	queued  chan struct{} // closed once every download is queued
	waited  bool
	err     error
}

// startFetches queues the downloads of src's missing layers, bottom-up so
// that the layers unpacked first arrive first, at most maxDownloads at a
// time. A failed download calls cancel with its error.
func (s *Service) startFetches(ctx context.Context, w *watch, src *imageSource, chains []digest.Digest, cancel func(error)) *layerFetches {
	f := &layerFetches{fetched: make([]chan struct{}, len(src.layers)), queued: make(chan struct{})}
	for i := range f.fetched {
		f.fetched[i] = make(chan struct{})
	}
	f.g.SetLimit(s.settings().maxDownloads)
	// g.Go blocks while maxDownloads run: a goroutine of its own queues
	// them, so that the unpacks can start meanwhile.
	go func() {
		defer close(f.queued)
		for i, l := range src.layers {
			if !l.remote || exists(s.snapshotFs(chains[i])) {
				close(f.fetched[i])
				continue
			}
			if ctx.Err() != nil {
				return
			}
			f.g.Go(func() error {
				if err := s.fetchBlob(ctx, w, l); err != nil {
					cancel(err)
					return err
				}
				close(f.fetched[i])
				return nil
			})
		}
	}()
	return f
}

// wait returns once no download runs any more: all done, or, after a
// failure, the ones under way stopped; with the first download error.
// Called from the pull's goroutine only.
func (f *layerFetches) wait() error {
	if !f.waited {
		<-f.queued
		f.err = f.g.Wait()
		f.waited = true
	}
	return f.err
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// writeBlob stores data under its digest d, atomically.
func (s *Service) writeBlob(d digest.Digest, data []byte) error {
	if digest.FromBytes(data) != d {
		return fmt.Errorf("blob %s: content does not match digest: %w", d, errdefs.ErrDataLoss)
	}
	if exists(s.blobPath(d)) {
		return nil
	}
	f, err := os.CreateTemp(s.ingestDir(), "blob-")
	if err != nil {
		return fmt.Errorf("write blob %s: %w", d, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write blob %s: %w", d, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write blob %s: %w", d, err)
	}
	if err := os.Rename(f.Name(), s.blobPath(d)); err != nil {
		return fmt.Errorf("write blob %s: %w", d, err)
	}
	return nil
}

// fetchBlob downloads a remote layer into the content store, verifying its
// digest as it streams. Concurrent fetches of one blob share the work.
func (s *Service) fetchBlob(ctx context.Context, w *watch, l layerSource) error {
	return s.sharedOwned(ctx, w, "blob:"+l.digest.String(), func(ctx context.Context, p *sharedProgress) (err error) {
		if exists(s.blobPath(l.digest)) {
			return nil
		}
		ctx, span := tracing.Start(ctx, "image.layer.download", tracing.LayerDigest.String(l.digest.String()))
		defer func() { tracing.End(span, err) }()
		rc, err := l.open()
		if err != nil {
			return fmt.Errorf("fetch layer %s: %w", l.digest, err)
		}
		defer rc.Close()
		f, err := os.CreateTemp(s.ingestDir(), "layer-")
		if err != nil {
			return fmt.Errorf("fetch layer %s: %w", l.digest, err)
		}
		defer os.Remove(f.Name())
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), progressReader{r: ctxReader{ctx, rc}, p: p})
		s.metrics.ImagePullBytes(n)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if strings.Contains(err.Error(), "error verifying") {
				// ggcr's own digest check failed.
				return fmt.Errorf("fetch layer %s: %w: %w", l.digest, err, errdefs.ErrDataLoss)
			}
			return fmt.Errorf("fetch layer %s: %w", l.digest, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != l.digest.Encoded() {
			return fmt.Errorf("fetch layer %s: content has digest sha256:%s: %w", l.digest, got, errdefs.ErrDataLoss)
		}
		if err := os.Rename(f.Name(), s.blobPath(l.digest)); err != nil {
			return fmt.Errorf("fetch layer %s: %w", l.digest, err)
		}
		return nil
	})
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, context.Cause(r.ctx)
	}
	return r.r.Read(b)
}

// openLayer opens the blob of l to unpack: the downloaded file of a remote
// layer (downloading it again if another unpack already consumed it) or
// the archive's own entry.
func (s *Service) openLayer(ctx context.Context, w *watch, l layerSource) (io.ReadCloser, error) {
	if !l.remote {
		return l.open()
	}
	for range 2 {
		f, err := os.Open(s.blobPath(l.digest))
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err := s.fetchBlob(ctx, w, l); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("layer %s: blob disappeared after download", l.digest)
}

// An unpack decompresses up to readAheadDepth chunks of readAheadChunk bytes
// ahead of the tar it applies (readahead.go).
const (
	readAheadChunk = 128 << 10
	readAheadDepth = 4
)

// unpack makes the snapshot of the topmost layer of chain from l, verifying
// the uncompressed content against diffID. The snapshot is built in a
// temporary directory and renamed into place, so a crash leaves none half
// made.
func (s *Service) unpack(ctx context.Context, w *watch, l layerSource, diffID digest.Digest, chain []digest.Digest) error {
	top := chain[len(chain)-1]
	return s.sharedOwned(ctx, w, "snapshot:"+top.String(), func(ctx context.Context, p *sharedProgress) (err error) {
		if exists(s.snapshotFs(top)) {
			return nil
		}
		ctx, span := tracing.Start(ctx, "image.layer.unpack", tracing.LayerDigest.String(l.digest.String()), tracing.LayerDiffID.String(diffID.String()))
		defer func() { tracing.End(span, err) }()
		rc, err := s.openLayer(ctx, w, l)
		if err != nil {
			return err
		}
		defer rc.Close()

		tmp, err := os.MkdirTemp(s.snapshotDir, tmpPrefix)
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		committed := false
		defer func() {
			if !committed {
				os.RemoveAll(tmp)
			}
		}()
		fsDir := filepath.Join(tmp, "fs")
		if err := os.Mkdir(fsDir, 0o755); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}

		// Local layers with a known digest (OCI layouts) are verified here;
		// downloaded ones were verified on their way into the content store.
		var in io.Reader = progressReader{r: ctxReader{ctx, rc}, p: p}
		compressedHash := sha256.New()
		checkCompressed := !l.remote && l.digest != ""
		if checkCompressed {
			in = io.TeeReader(in, compressedHash)
		}
		ds, err := compression.DecompressStream(in)
		if err != nil {
			return fmt.Errorf("unpack %s: %w", diffID, err)
		}
		defer ds.Close()
		// Closed before ds (defers run last first): it reads ds.
		ra := newReadAhead(ds, readAheadChunk, readAheadDepth)
		defer ra.Close()
		diffHash := sha256.New()
		tr := io.TeeReader(ra, diffHash)

		parents := make([]string, 0, len(chain)-1)
		for i := len(chain) - 2; i >= 0; i-- {
			parents = append(parents, s.snapshotFs(chain[i]))
		}
		if _, err := archive.Apply(ctx, fsDir, tr,
			archive.WithConvertWhiteout(archive.OverlayConvertWhiteout),
			archive.WithParents(parents)); err != nil {
			return fmt.Errorf("unpack %s: %w", diffID, err)
		}
		// The tar reader stops at the end-of-archive marker; the diffID
		// covers the padding after it too.
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return fmt.Errorf("unpack %s: %w", diffID, err)
		}
		ra.Close()
		if err := ds.Close(); err != nil {
			return fmt.Errorf("unpack %s: %w", diffID, err)
		}
		if checkCompressed {
			if _, err := io.Copy(io.Discard, in); err != nil {
				return fmt.Errorf("unpack %s: %w", diffID, err)
			}
			if got := hex.EncodeToString(compressedHash.Sum(nil)); got != l.digest.Encoded() {
				return fmt.Errorf("layer %s: content has digest sha256:%s: %w", l.digest, got, errdefs.ErrDataLoss)
			}
		}
		if got := hex.EncodeToString(diffHash.Sum(nil)); got != diffID.Encoded() {
			return fmt.Errorf("layer %s: uncompressed content has digest sha256:%s, config says %s: %w", l.digest, got, diffID, errdefs.ErrDataLoss)
		}
		if err := os.Chmod(tmp, 0o711); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(s.snapshotDir, top.Encoded())); err != nil {
			return fmt.Errorf("unpack %s: commit snapshot: %w", diffID, err)
		}
		committed = true
		if l.remote {
			// The snapshot is what is kept; the compressed layer is not.
			os.Remove(s.blobPath(l.digest))
		}
		return nil
	})
}
