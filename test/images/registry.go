package images

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// NewRegistry returns an in-memory OCI distribution registry that logs one
// line per request to logger.
func NewRegistry(logger *slog.Logger) http.Handler {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		reg.ServeHTTP(rec, r)
		logger.Info("request", "method", r.Method, "path", r.URL.RequestURI(), "status", rec.status,
			"bytes", rec.bytes, "duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// MirrorReference maps an upstream tag reference onto a registry at addr
// that holds mirrored repositories under "<upstream host>/<path>":
// registry.k8s.io/pause:3.10 -> <addr>/registry.k8s.io/pause:3.10 and
// docker.io/library/busybox:latest -> <addr>/docker.io/library/busybox:latest.
func MirrorReference(addr, ref string) (name.Tag, error) {
	up, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("reference %q: %w", ref, err)
	}
	host := up.RegistryStr()
	if host == name.DefaultRegistry {
		// ggcr spells Docker Hub index.docker.io; image references and
		// mirror prefixes spell it docker.io.
		host = "docker.io"
	}
	t, err := name.NewTag(fmt.Sprintf("%s/%s/%s:%s", addr, host, up.RepositoryStr(), up.TagStr()), name.Insecure)
	if err != nil {
		return name.Tag{}, fmt.Errorf("mirror reference for %q: %w", ref, err)
	}
	return t, nil
}

// Push uploads refs to the plain-HTTP registry at addr under their mirror
// references (see MirrorReference).
func Push(ctx context.Context, addr string, refs map[string]v1.Image) error {
	todo := make(map[name.Reference]remote.Taggable, len(refs))
	for ref, img := range refs {
		t, err := MirrorReference(addr, ref)
		if err != nil {
			return err
		}
		todo[t] = img
	}
	if err := remote.MultiWrite(todo, remote.WithContext(ctx), remote.WithJobs(4)); err != nil {
		return fmt.Errorf("push to %s: %w", addr, err)
	}
	return nil
}
