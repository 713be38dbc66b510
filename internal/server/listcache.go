package server

import (
	"cmp"
	"maps"
	"slices"
	"sync"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubelet polls ListContainers and ListPodSandbox about every second and
// nearly always gets the same answer. Building the answer from memory is
// cheap; encoding it is not: map fields (labels, annotations) go through
// protobuf's reflection path and dominate the call. listCache keeps the
// last encoded answer per request and reuses it when a freshly built answer
// compares equal, field by field and by value (no assumption that the core
// hands out the same objects twice), so a stale answer cannot be served:
// whatever changes in a container or pod shows up in the comparison.
//
// The cached bytes reach the wire through Codec, which sends them instead
// of encoding the message again.

// maxCacheKeys bounds the distinct filters remembered per call: kubelet
// uses a handful (no filter, one state, per-pod label selectors).
const maxCacheKeys = 32

type cacheEntry[T proto.Message] struct {
	resp T
	enc  []byte
	used uint64 // lru clock
}

// respCache caches encoded responses of one list call, keyed by request.
type respCache[T proto.Message] struct {
	equal func(a, b T) bool

	mu      sync.Mutex
	clock   uint64
	entries map[string]*cacheEntry[T]
}

func newRespCache[T proto.Message](equal func(a, b T) bool) *respCache[T] {
	return &respCache[T]{equal: equal, entries: map[string]*cacheEntry[T]{}}
}

// resolve returns the response to send for fresh, built for the request
// whose key is key: the cached one when equal (its encoding is then ready
// for Codec), or fresh, encoded and remembered.
func (c *respCache[T]) resolve(key string, fresh T) T {
	c.mu.Lock()
	e := c.entries[key]
	c.clock++
	if e != nil && c.equal(e.resp, fresh) {
		e.used = c.clock
		c.mu.Unlock()
		return e.resp
	}
	c.mu.Unlock()
	// Encode outside the lock; a concurrent call for the same key may race
	// us to store, either answer is current.
	enc, err := proto.Marshal(fresh)
	if err != nil {
		return fresh // Codec reports the error
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= maxCacheKeys {
		c.evictOldest()
	}
	c.entries[key] = &cacheEntry[T]{resp: fresh, enc: enc, used: c.clock}
	return fresh
}

func (c *respCache[T]) evictOldest() {
	var oldest string
	var at uint64
	first := true
	for k, e := range c.entries {
		if first || e.used < at {
			oldest, at, first = k, e.used, false
		}
	}
	delete(c.entries, oldest)
}

// encoded returns the cached encoding of resp if resp is a cached response.
func (c *respCache[T]) encoded(resp T) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if any(e.resp) == any(resp) {
			return e.enc, true
		}
	}
	return nil, false
}

// listCache holds the caches of ListContainers and ListPodSandbox.
type listCache struct {
	containers *respCache[*runtime.ListContainersResponse]
	sandboxes  *respCache[*runtime.ListPodSandboxResponse]
}

func newListCache() *listCache {
	return &listCache{
		containers: newRespCache(equalContainerLists),
		sandboxes:  newRespCache(equalSandboxLists),
	}
}

// resolveFor is resolve keyed by req's deterministic encoding; a request
// that cannot be encoded is answered uncached.
func resolveFor[T proto.Message](c *respCache[T], req proto.Message, fresh T) T {
	key, ok := requestKey(req)
	if !ok {
		return fresh
	}
	return c.resolve(key, fresh)
}

// requestKey identifies a request by its deterministic encoding.
func requestKey(m proto.Message) (string, bool) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return string(b), err == nil
}

// The core lists from maps: the items are ordered so that equal lists
// compare equal item by item (and clients get a stable order).

func (l *listCache) listContainers(req *runtime.ListContainersRequest, resp *runtime.ListContainersResponse) *runtime.ListContainersResponse {
	slices.SortFunc(resp.Containers, func(a, b *runtime.Container) int { return cmp.Compare(a.GetId(), b.GetId()) })
	return resolveFor(l.containers, req, resp)
}

func (l *listCache) listPodSandbox(req *runtime.ListPodSandboxRequest, resp *runtime.ListPodSandboxResponse) *runtime.ListPodSandboxResponse {
	slices.SortFunc(resp.Items, func(a, b *runtime.PodSandbox) int { return cmp.Compare(a.GetId(), b.GetId()) })
	return resolveFor(l.sandboxes, req, resp)
}

// encoded returns the ready encoding of a cached list response.
func (l *listCache) encoded(v any) ([]byte, bool) {
	switch m := v.(type) {
	case *runtime.ListContainersResponse:
		return l.containers.encoded(m)
	case *runtime.ListPodSandboxResponse:
		return l.sandboxes.encoded(m)
	}
	return nil, false
}

// The comparisons cover every field of the messages (TestEqualCoversAllFields
// checks that against the generated descriptors), by value.

func equalContainerLists(a, b *runtime.ListContainersResponse) bool {
	return slices.EqualFunc(a.GetContainers(), b.GetContainers(), equalContainer)
}

func equalContainer(a, b *runtime.Container) bool {
	return a.GetId() == b.GetId() && a.GetPodSandboxId() == b.GetPodSandboxId() &&
		a.GetState() == b.GetState() && a.GetCreatedAt() == b.GetCreatedAt() &&
		a.GetImageRef() == b.GetImageRef() && a.GetImageId() == b.GetImageId() &&
		a.GetMetadata().GetName() == b.GetMetadata().GetName() && a.GetMetadata().GetAttempt() == b.GetMetadata().GetAttempt() &&
		(a.GetMetadata() == nil) == (b.GetMetadata() == nil) &&
		equalImageSpec(a.GetImage(), b.GetImage()) &&
		maps.Equal(a.GetLabels(), b.GetLabels()) && maps.Equal(a.GetAnnotations(), b.GetAnnotations())
}

func equalImageSpec(a, b *runtime.ImageSpec) bool {
	return (a == nil) == (b == nil) && a.GetImage() == b.GetImage() &&
		a.GetUserSpecifiedImage() == b.GetUserSpecifiedImage() && a.GetRuntimeHandler() == b.GetRuntimeHandler() &&
		a.GetImageRef() == b.GetImageRef() &&
		maps.Equal(a.GetAnnotations(), b.GetAnnotations())
}

func equalSandboxLists(a, b *runtime.ListPodSandboxResponse) bool {
	return slices.EqualFunc(a.GetItems(), b.GetItems(), equalSandbox)
}

func equalSandbox(a, b *runtime.PodSandbox) bool {
	am, bm := a.GetMetadata(), b.GetMetadata()
	return a.GetId() == b.GetId() && a.GetState() == b.GetState() && a.GetCreatedAt() == b.GetCreatedAt() &&
		a.GetRuntimeHandler() == b.GetRuntimeHandler() &&
		(am == nil) == (bm == nil) && am.GetName() == bm.GetName() && am.GetUid() == bm.GetUid() &&
		am.GetNamespace() == bm.GetNamespace() && am.GetAttempt() == bm.GetAttempt() &&
		maps.Equal(a.GetLabels(), b.GetLabels()) && maps.Equal(a.GetAnnotations(), b.GetAnnotations())
}

// cachingCodec is gRPC's proto codec, except that a response the list cache
// holds is sent as its cached encoding.
type cachingCodec struct {
	encoding.CodecV2
	cache *listCache
}

func (c cachingCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := c.cache.encoded(v); ok {
		// The cached slice is never written again; SliceBuffer's Free is a
		// no-op, so gRPC cannot hand it to a pool.
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.CodecV2.Marshal(v)
}

func newCachingCodec(cache *listCache) cachingCodec {
	return cachingCodec{CodecV2: encoding.GetCodecV2(protoenc.Name), cache: cache}
}
