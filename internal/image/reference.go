package image

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
)

const (
	// dockerHost is how Docker Hub appears in normalised references.
	dockerHost = "docker.io"
	// dockerAPIHost is the host actually serving Docker Hub's registry API.
	dockerAPIHost = "index.docker.io"
)

// reference is a parsed, normalised image reference.
type reference struct {
	// Host is the registry host as written in normalised references
	// ("docker.io", not "index.docker.io").
	Host string
	// Path is the repository path inside the registry ("library/busybox").
	Path string
	// Tag is set for tag references ("latest" when none was given).
	Tag string
	// Digest is set for digest references ("sha256:...").
	Digest string
}

// Repository is "<host>/<path>".
func (r reference) Repository() string { return r.Host + "/" + r.Path }

// String is the normalised reference: repository with tag or digest.
func (r reference) String() string {
	if r.Digest != "" {
		return r.Repository() + "@" + r.Digest
	}
	return r.Repository() + ":" + r.Tag
}

// parseReference normalises ref the way Docker does: "busybox" is
// docker.io/library/busybox:latest; "repo:tag@sha256:..." keeps only the
// digest (the digest is what is fetched).
func parseReference(ref string) (reference, error) {
	if ref == "" {
		return reference{}, fmt.Errorf("image reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	if strings.TrimSpace(ref) != ref {
		return reference{}, fmt.Errorf("invalid image reference %q: surrounding whitespace: %w", ref, errdefs.ErrInvalidArgument)
	}
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return reference{}, fmt.Errorf("invalid image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	out := reference{Host: parsed.Context().RegistryStr(), Path: parsed.Context().RepositoryStr()}
	if out.Host == dockerAPIHost {
		out.Host = dockerHost
	}
	switch r := parsed.(type) {
	case name.Digest:
		out.Digest = r.DigestStr()
		if !strings.HasPrefix(out.Digest, "sha256:") {
			return reference{}, fmt.Errorf("invalid image reference %q: only sha256 digests are supported: %w", ref, errdefs.ErrInvalidArgument)
		}
	case name.Tag:
		out.Tag = r.TagStr()
	}
	// Normalising lengthens the repository ("x" is library/x), possibly
	// past the 255 characters a repository may have: such a reference
	// would be stored as a tag that never parses, or resolves, again.
	if _, err := name.ParseReference(out.String()); err != nil {
		return reference{}, fmt.Errorf("invalid image reference %q: normalised to %s: %v: %w", ref, out, err, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// normaliseRef returns the normalised form of ref, or ref unchanged when it
// does not parse (callers use it for lookups, where no match is fine).
func normaliseRef(ref string) string {
	r, err := parseReference(ref)
	if err != nil {
		return ref
	}
	return r.String()
}
