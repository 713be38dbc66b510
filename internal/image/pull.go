package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/diskfull"
	"github.com/crid-dev/crid/internal/tracing"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
)

// pullPlatform is the platform chosen from manifest lists and OCI indexes.
var pullPlatform = v1.Platform{OS: "linux", Architecture: "amd64"}

// Pull fetches ref (normalised: "busybox" = docker.io/library/busybox:latest)
// through the configured mirrors, verifies and unpacks it, records it and
// returns it. Concurrent pulls of the same ref or layer do the work once.
// Errors: errdefs.ErrInvalidArgument for a bad reference, ErrNotFound when no
// endpoint has it, ErrUnauthenticated / ErrPermissionDenied on auth failure,
// ErrResourceExhausted when the image store's filesystem has no room for it
// even after freeing what nothing references (nospace.go).
func (s *Service) Pull(ctx context.Context, ref string, auth *Auth) (_ *Image, err error) {
	defer s.observePull(time.Now(), &err)
	r, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	// Spans carry the reference, never auth.
	ctx, span := tracing.Start(ctx, "image.pull", tracing.Image.String(r.String()))
	defer func() { tracing.End(span, err) }()
	var id string
	err = s.shared(ctx, nil, "pull:"+r.String(), func(ctx context.Context, _ *sharedProgress) error {
		img, err := s.pullRetryingFull(ctx, r, auth)
		if err == nil {
			id = img.ID
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// Callers that joined another's pull learn the result from the index.
	if id != "" {
		if img, err := s.Resolve(id); err == nil {
			span.SetAttributes(tracing.ImageID.String(img.ID))
			return img, nil
		}
	}
	img, err := s.Resolve(r.String())
	if err != nil {
		return nil, fmt.Errorf("pull %s: image vanished after pull: %w", r, err)
	}
	return img, nil
}

func (s *Service) pull(ctx context.Context, r reference, auth *Auth) (*Image, error) {
	start := time.Now()
	w := newWatch()
	// One snapshot for the whole pull: a reload (SIGHUP) in the middle
	// changes neither its endpoints nor its timeout.
	live := s.settings()
	ctx, stop := withWatchdog(ctx, w, live.progressTimeout)
	defer stop()

	eps, err := endpointsFor(live.registries, r.Host)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	var tried []string
	var errs []error
	for _, e := range eps {
		img, err := s.pullFrom(ctx, w, r, auth, e)
		if err == nil {
			s.log.Info("image pulled", "ref", r.String(), "id", img.ID, "endpoint", e.String(), "duration", time.Since(start))
			return img, nil
		}
		if ctx.Err() != nil {
			cause := context.Cause(ctx)
			if errors.Is(cause, errNoProgress) {
				return nil, fmt.Errorf("pull %s from %s: %w", r, e, cause)
			}
			return nil, fmt.Errorf("pull %s from %s: %w", r, e, err)
		}
		if diskfull.Is(err) {
			// The local disk, not the endpoint: another mirror would fill
			// it just the same.
			return nil, s.noSpace(fmt.Errorf("pull %s from %s: %w", r, e, err))
		}
		s.log.Debug("pull from endpoint failed", "ref", r.String(), "endpoint", e.String(), "error", err)
		tried = append(tried, e.String())
		errs = append(errs, classify(err))
	}
	return nil, endpointsError(r.String(), tried, errs)
}

// pullFrom pulls the whole image from one endpoint.
func (s *Service) pullFrom(ctx context.Context, w *watch, r reference, auth *Auth, e endpoint) (*Image, error) {
	repo, err := e.repository(r.Path)
	if err != nil {
		return nil, err
	}
	var nref name.Reference = repo.Tag(r.Tag)
	if r.Digest != "" {
		nref = repo.Digest(r.Digest)
	}
	authr, err := authenticator(auth, r.Host, e)
	if err != nil {
		return nil, err
	}
	// A failed layer cancels the pull's other downloads (fetchAndUnpack):
	// through this context, which their requests were made with, a read
	// blocked on the registry stops too.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	tr := transportFor(e, s.dial)
	// The transport is this pull's alone: its keep-alive connections
	// would otherwise stay open (an fd and two goroutines each) until
	// the idle timeout, long after the pull.
	defer tr.CloseIdleConnections()
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(authr),
		remote.WithTransport(tr),
		remote.WithPlatform(pullPlatform),
		remote.WithUserAgent("crid"),
		remote.WithRetryBackoff(remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2}),
	}
	desc, err := remote.Get(nref, opts...)
	if err != nil {
		return nil, err
	}
	w.touch()
	top, err := digest.Parse(desc.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("manifest digest: %w", err)
	}
	if got := digest.FromBytes(desc.Manifest); got != top {
		return nil, fmt.Errorf("manifest of %s has digest %s, registry said %s: %w", r, got, top, errdefs.ErrDataLoss)
	}
	if r.Digest != "" && top.String() != r.Digest {
		return nil, fmt.Errorf("manifest of %s has digest %s: %w", r, top, errdefs.ErrDataLoss)
	}
	blobs := map[digest.Digest][]byte{top: desc.Manifest}
	var img v1.Image
	switch {
	case desc.MediaType.IsIndex():
		img, err = desc.Image()
		if err != nil {
			return nil, fmt.Errorf("%s has no image for %s/%s: %v: %w", r, pullPlatform.OS, pullPlatform.Architecture, err, errdefs.ErrNotFound)
		}
		raw, err := img.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("manifest of %s: %w", r, err)
		}
		blobs[digest.FromBytes(raw)] = raw
		w.touch()
	case desc.MediaType.IsImage():
		img, err = desc.Image()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r, err)
		}
	default:
		return nil, fmt.Errorf("%s: unsupported manifest media type %q: %w", r, desc.MediaType, errdefs.ErrNotImplemented)
	}
	src, err := sourceFromImage(img, blobs, true)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r, err)
	}
	w.touch()
	src.name = r.String()
	src.cancel = cancel
	if r.Tag != "" {
		src.tags = []string{r.String()}
	}
	src.repoDigests = []string{r.Repository() + "@" + top.String()}
	for _, b := range blobs {
		src.size += uint64(len(b))
	}
	return s.storeImage(ctx, w, src)
}

// sourceFromImage describes a ggcr image (remote or from an OCI layout) for
// storeImage. remote says its layers must be downloaded into the content
// store first.
func sourceFromImage(img v1.Image, blobs map[digest.Digest][]byte, remote bool) (*imageSource, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	// The config is read whole into memory at the size the manifest
	// declares (the registry is not trusted): refuse a size no real
	// config has before fetching a byte.
	if m.Config.Size < 0 || m.Config.Size > maxMetadataSize {
		return nil, fmt.Errorf("config %s: the manifest declares %d bytes, more than the %d crid reads: %w", m.Config.Digest, m.Config.Size, maxMetadataSize, errdefs.ErrInvalidArgument)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	src := &imageSource{
		config:       rawCfg,
		configDigest: digest.Digest(m.Config.Digest.String()),
		blobs:        blobs,
		size:         uint64(m.Config.Size),
		annotations:  m.Annotations,
	}
	for _, ld := range m.Layers {
		l, err := img.LayerByDigest(ld.Digest)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
		src.size += uint64(ld.Size)
		src.layers = append(src.layers, layerSource{
			digest: digest.Digest(ld.Digest.String()),
			remote: remote,
			open:   func() (io.ReadCloser, error) { return l.Compressed() },
		})
	}
	return src, nil
}
