// Package image is crid's image service: pulling over the OCI distribution
// protocol (through configured mirrors), a content-addressed blob store,
// layers unpacked once into overlayfs snapshots, image records in the
// metadata store, offline import, and the container root filesystems built
// on those snapshots.
package image

import (
	"context"
	"io"

	"github.com/crid-dev/crid/internal/config"
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
	// implementation owned by the image package
}

// New opens the image service rooted at root (e.g. /var/lib/crid) using st
// for image records.
func New(cfg config.Images, root string, st *store.Store) (*Service, error) {
	panic("not implemented")
}

// Pull fetches ref (normalised: "busybox" = docker.io/library/busybox:latest)
// through the configured mirrors, verifies and unpacks it, records it and
// returns it. Concurrent pulls of the same ref or layer do the work once.
// Errors: errdefs.ErrInvalidArgument for a bad reference, ErrNotFound when no
// endpoint has it, ErrUnauthenticated / ErrPermissionDenied on auth failure.
func (s *Service) Pull(ctx context.Context, ref string, auth *Auth) (*Image, error) {
	panic("not implemented")
}

// Resolve finds a stored image by tag, digest reference, full ID or a unique
// ID prefix. errdefs.ErrNotFound when there is none.
func (s *Service) Resolve(ref string) (*Image, error) { panic("not implemented") }

// List returns all stored images.
func (s *Service) List() []*Image { panic("not implemented") }

// Pinned reports whether img is pinned (the sandbox image or a configured pinned image).
func (s *Service) Pinned(img *Image) bool { panic("not implemented") }

// Remove deletes the image ref resolves to, with all its tags. A missing
// image is not an error. inUse(imageID) reports whether a container uses it;
// then Remove fails with errdefs.ErrFailedPrecondition.
func (s *Service) Remove(ctx context.Context, ref string, inUse func(imageID string) bool) error {
	panic("not implemented")
}

// Import loads an OCI image layout archive or a `docker save` tarball.
func (s *Service) Import(ctx context.Context, r io.Reader) ([]*Image, error) { panic("not implemented") }

// FsInfo reports the image filesystem's usage.
func (s *Service) FsInfo(ctx context.Context) (FsUsage, error) { panic("not implemented") }

// PrepareRootfs mounts a writable overlay of img at target, with its upper
// and work dirs under rwDir. Idempotent: an existing mount is kept.
func (s *Service) PrepareRootfs(ctx context.Context, img *Image, rwDir, target string) error {
	panic("not implemented")
}

// ReleaseRootfs unmounts target and removes rwDir; missing ones are fine.
func (s *Service) ReleaseRootfs(ctx context.Context, rwDir, target string) error {
	panic("not implemented")
}

// WritableUsage reports bytes and inodes used by a container's writable layer.
func WritableUsage(rwDir string) (bytes, inodes uint64, err error) { panic("not implemented") }
