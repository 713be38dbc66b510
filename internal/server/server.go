// Package server is crid's thin gRPC edge: it registers the CRI
// RuntimeService and ImageService, logs each call, and maps the core's
// errdefs errors to gRPC status codes. Its only state is a cache of encoded
// list responses (listcache.go).
package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/core"
	"github.com/crid-dev/crid/internal/diskfull"
	"github.com/crid-dev/crid/internal/image"
	"github.com/crid-dev/crid/internal/streaming"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RuntimeServer implements runtime.v1 RuntimeService over the core.
type RuntimeServer struct {
	runtime.UnimplementedRuntimeServiceServer
	core   *core.Service
	stream *streaming.Server
	log    *slog.Logger
	cache  *listCache // nil: no list caching
}

// ImageServer implements runtime.v1 ImageService over the image service.
type ImageServer struct {
	runtime.UnimplementedImageServiceServer
	core        *core.Service
	images      *image.Service
	log         *slog.Logger
	containerFs fsCache
}

// ListCache remembers encoded list responses (see listcache.go). Create one
// per gRPC server: pass Codec() to grpc.NewServer and the cache to
// RegisterCached.
type ListCache struct{ c *listCache }

// NewListCache returns an empty cache.
func NewListCache() *ListCache { return &ListCache{c: newListCache()} }

// Codec is the server option that sends cached responses without encoding
// them again; every other message is encoded by gRPC's proto codec.
func (l *ListCache) Codec() grpc.ServerOption {
	return grpc.ForceServerCodecV2(newCachingCodec(l.c))
}

// RegisterCached adds both CRI services to g, with list responses cached
// in cache, whose Codec() g must have been created with. A nil cache
// caches nothing.
func RegisterCached(g *grpc.Server, cache *ListCache, c *core.Service, images *image.Service, stream *streaming.Server, log *slog.Logger) {
	rs := &RuntimeServer{core: c, stream: stream, log: log}
	if cache != nil {
		rs.cache = cache.c
	}
	runtime.RegisterRuntimeServiceServer(g, rs)
	runtime.RegisterImageServiceServer(g, &ImageServer{core: c, images: images, log: log})
}

// toGRPC maps a core error to a gRPC status error, keeping its message.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errdefs.IsInvalidArgument(err):
		code = codes.InvalidArgument
	case errdefs.IsNotFound(err):
		code = codes.NotFound
	case errdefs.IsAlreadyExists(err):
		code = codes.AlreadyExists
	case errdefs.IsFailedPrecondition(err), errdefs.IsConflict(err):
		code = codes.FailedPrecondition
	case errdefs.IsUnavailable(err):
		code = codes.Unavailable
	case errdefs.IsNotImplemented(err):
		code = codes.Unimplemented
	case errdefs.IsUnauthorized(err):
		code = codes.Unauthenticated
	case errdefs.IsPermissionDenied(err):
		code = codes.PermissionDenied
	case errdefs.IsDataLoss(err):
		code = codes.DataLoss
	case errdefs.IsResourceExhausted(err), diskfull.Is(err):
		// A full disk anywhere (the image store, a writable layer, a
		// record) is a resource the node ran out of, not an internal error.
		code = codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded) || errdefs.IsDeadlineExceeded(err):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled) || errdefs.IsCanceled(err):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// UnaryInterceptor logs every call with its duration and maps errors.
func UnaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		err = toGRPC(err)
		if err != nil {
			log.Warn("cri call failed", "method", info.FullMethod, "duration", time.Since(start), "error", err)
		} else if log.Enabled(ctx, slog.LevelDebug) {
			log.Debug("cri call", "method", info.FullMethod, "duration", time.Since(start))
		}
		return resp, err
	}
}

// StreamInterceptor maps errors of streaming RPCs.
func StreamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := toGRPC(handler(srv, ss))
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("cri stream failed", "method", info.FullMethod, "error", err)
		}
		return err
	}
}
