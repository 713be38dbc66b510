package server

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testContainer(id string) *runtime.Container {
	return &runtime.Container{
		Id: id, PodSandboxId: "pod-" + id, Metadata: &runtime.ContainerMetadata{Name: "c-" + id, Attempt: 1},
		Image:    &runtime.ImageSpec{Image: "busybox", Annotations: map[string]string{"a": "b"}, UserSpecifiedImage: "bb", RuntimeHandler: "runc", ImageRef: "r"},
		ImageRef: "sha256:ref", ImageId: "sha256:id", State: runtime.ContainerState_CONTAINER_RUNNING, CreatedAt: 42,
		Labels: map[string]string{"app": id}, Annotations: map[string]string{"hash": "1"},
	}
}

func testSandbox(id string) *runtime.PodSandbox {
	return &runtime.PodSandbox{
		Id: id, Metadata: &runtime.PodSandboxMetadata{Name: "p-" + id, Uid: "u", Namespace: "ns", Attempt: 2},
		State: runtime.PodSandboxState_SANDBOX_READY, CreatedAt: 7, RuntimeHandler: "runc",
		Labels: map[string]string{"app": id}, Annotations: map[string]string{"seen": "x"},
	}
}

// Every field a list item carries must make the comparison fail when it
// differs; otherwise a changed container would be served from the cache.
func TestEqualContainerEachField(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *runtime.Container)
	}{
		{"id", func(c *runtime.Container) { c.Id = "other" }},
		{"pod", func(c *runtime.Container) { c.PodSandboxId = "other" }},
		{"metadata name", func(c *runtime.Container) { c.Metadata.Name = "other" }},
		{"metadata attempt", func(c *runtime.Container) { c.Metadata.Attempt = 2 }},
		{"metadata nil", func(c *runtime.Container) { c.Metadata = nil }},
		{"image", func(c *runtime.Container) { c.Image.Image = "other" }},
		{"image annotations", func(c *runtime.Container) { c.Image.Annotations["a"] = "c" }},
		{"image user specified", func(c *runtime.Container) { c.Image.UserSpecifiedImage = "x" }},
		{"image handler", func(c *runtime.Container) { c.Image.RuntimeHandler = "x" }},
		{"image spec ref", func(c *runtime.Container) { c.Image.ImageRef = "x" }},
		{"image nil", func(c *runtime.Container) { c.Image = nil }},
		{"image ref", func(c *runtime.Container) { c.ImageRef = "x" }},
		{"image id", func(c *runtime.Container) { c.ImageId = "x" }},
		{"state", func(c *runtime.Container) { c.State = runtime.ContainerState_CONTAINER_EXITED }},
		{"created", func(c *runtime.Container) { c.CreatedAt = 43 }},
		{"label value", func(c *runtime.Container) { c.Labels["app"] = "x" }},
		{"label added", func(c *runtime.Container) { c.Labels["new"] = "" }},
		{"annotation value", func(c *runtime.Container) { c.Annotations["hash"] = "2" }},
		{"annotations nil", func(c *runtime.Container) { c.Annotations = nil }},
	}
	if !equalContainer(testContainer("a"), testContainer("a")) {
		t.Fatal("equal containers compare unequal")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testContainer("a"), testContainer("a")
			tc.mutate(b)
			if equalContainer(a, b) || equalContainer(b, a) {
				t.Errorf("containers differing in %s compare equal", tc.name)
			}
		})
	}
}

func TestEqualSandboxEachField(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(p *runtime.PodSandbox)
	}{
		{"id", func(p *runtime.PodSandbox) { p.Id = "other" }},
		{"metadata name", func(p *runtime.PodSandbox) { p.Metadata.Name = "x" }},
		{"metadata uid", func(p *runtime.PodSandbox) { p.Metadata.Uid = "x" }},
		{"metadata namespace", func(p *runtime.PodSandbox) { p.Metadata.Namespace = "x" }},
		{"metadata attempt", func(p *runtime.PodSandbox) { p.Metadata.Attempt = 3 }},
		{"metadata nil", func(p *runtime.PodSandbox) { p.Metadata = nil }},
		{"state", func(p *runtime.PodSandbox) { p.State = runtime.PodSandboxState_SANDBOX_NOTREADY }},
		{"created", func(p *runtime.PodSandbox) { p.CreatedAt = 8 }},
		{"handler", func(p *runtime.PodSandbox) { p.RuntimeHandler = "kata" }},
		{"label", func(p *runtime.PodSandbox) { p.Labels["app"] = "x" }},
		{"annotation removed", func(p *runtime.PodSandbox) { delete(p.Annotations, "seen") }},
	}
	if !equalSandbox(testSandbox("a"), testSandbox("a")) {
		t.Fatal("equal sandboxes compare unequal")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testSandbox("a"), testSandbox("a")
			tc.mutate(b)
			if equalSandbox(a, b) || equalSandbox(b, a) {
				t.Errorf("sandboxes differing in %s compare equal", tc.name)
			}
		})
	}
}

// The comparisons name each field; a cri-api upgrade adding one must come
// with a comparison for it (and an entry in the tests above).
func TestEqualCoversAllFields(t *testing.T) {
	want := map[protoreflect.FullName]int{
		"runtime.v1.Container":          10,
		"runtime.v1.ContainerMetadata":  2,
		"runtime.v1.ImageSpec":          5,
		"runtime.v1.PodSandbox":         7,
		"runtime.v1.PodSandboxMetadata": 4,
	}
	for _, m := range []proto.Message{&runtime.Container{}, &runtime.ContainerMetadata{}, &runtime.ImageSpec{}, &runtime.PodSandbox{}, &runtime.PodSandboxMetadata{}} {
		d := m.ProtoReflect().Descriptor()
		if got := d.Fields().Len(); got != want[d.FullName()] {
			t.Errorf("%s has %d fields, the list cache compares %d: update equal* in listcache.go", d.FullName(), got, want[d.FullName()])
		}
	}
}

func marshalCodec(t *testing.T, c cachingCodec, v any) []byte {
	t.Helper()
	bs, err := c.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Free()
	return bs.Materialize()
}

func TestListCacheServesEqualAndRefreshesChanged(t *testing.T) {
	l := newListCache()
	codec := newCachingCodec(l)
	req := &runtime.ListContainersRequest{}
	build := func(ids ...string) *runtime.ListContainersResponse {
		r := &runtime.ListContainersResponse{}
		for _, id := range ids {
			r.Containers = append(r.Containers, testContainer(id))
		}
		return r
	}

	first := l.listContainers(req, build("b", "a"))
	if got := []string{first.Containers[0].Id, first.Containers[1].Id}; got[0] != "a" || got[1] != "b" {
		t.Fatalf("items not sorted by id: %v", got)
	}
	// Built again in another order, with fresh objects: the cached response.
	second := l.listContainers(req, build("a", "b"))
	if second != first {
		t.Fatal("equal list not served from the cache")
	}
	enc := marshalCodec(t, codec, second)
	var back runtime.ListContainersResponse
	if err := proto.Unmarshal(enc, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&back, first) {
		t.Fatalf("cached encoding decodes to %v, want %v", &back, first)
	}

	// A state change: a new response, encoded anew.
	changed := build("a", "b")
	changed.Containers[1].State = runtime.ContainerState_CONTAINER_EXITED
	third := l.listContainers(req, changed)
	if third == first {
		t.Fatal("changed list served from the cache")
	}
	back.Reset()
	if err := proto.Unmarshal(marshalCodec(t, codec, third), &back); err != nil {
		t.Fatal(err)
	}
	if back.Containers[1].State != runtime.ContainerState_CONTAINER_EXITED {
		t.Fatalf("state after change = %v, want exited", back.Containers[1].State)
	}
	// The old response is no longer cached: encoded from the message.
	if _, ok := l.encoded(first); ok {
		t.Fatal("replaced response still has a cached encoding")
	}

	// Another filter is another entry; the unfiltered one is untouched.
	filtered := &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: "pod-a"}}
	onlyA := l.listContainers(filtered, build("a"))
	if l.listContainers(req, build("a", "b")) == third {
		t.Fatal("list equal to the changed one served from the cache (b is running again, not exited)")
	}
	if l.listContainers(filtered, build("a")) != onlyA {
		t.Fatal("filtered list not cached under its own key")
	}
}

func TestListCacheSandboxes(t *testing.T) {
	l := newListCache()
	req := &runtime.ListPodSandboxRequest{}
	first := l.listPodSandbox(req, &runtime.ListPodSandboxResponse{Items: []*runtime.PodSandbox{testSandbox("x")}})
	if l.listPodSandbox(req, &runtime.ListPodSandboxResponse{Items: []*runtime.PodSandbox{testSandbox("x")}}) != first {
		t.Fatal("equal sandbox list not cached")
	}
	if got := l.listPodSandbox(req, &runtime.ListPodSandboxResponse{}); got == first || len(got.Items) != 0 {
		t.Fatal("empty list served from the cache")
	}
}

func TestListCacheBounded(t *testing.T) {
	l := newListCache()
	for i := range maxCacheKeys + 10 {
		req := &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: fmt.Sprint(i)}}
		l.listContainers(req, &runtime.ListContainersResponse{Containers: []*runtime.Container{testContainer(fmt.Sprint(i))}})
	}
	if n := len(l.containers.entries); n != maxCacheKeys {
		t.Fatalf("cache holds %d keys, want %d", n, maxCacheKeys)
	}
	// The most recent survive.
	last := &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: fmt.Sprint(maxCacheKeys + 9)}}
	key, _ := requestKey(last)
	if _, ok := l.containers.entries[key]; !ok {
		t.Fatal("most recent key evicted")
	}
	first, _ := requestKey(&runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: "0"}})
	if _, ok := l.containers.entries[first]; ok {
		t.Fatal("oldest key kept")
	}
}

// Messages the cache does not hold go through the proto codec unchanged.
func TestCachingCodecPassThrough(t *testing.T) {
	codec := newCachingCodec(newListCache())
	msg := &runtime.VersionResponse{Version: "0.1.0", RuntimeName: "crid"}
	enc := marshalCodec(t, codec, msg)
	want, _ := proto.Marshal(msg)
	if string(enc) != string(want) {
		t.Fatalf("pass-through encoding differs")
	}
	var back runtime.VersionResponse
	if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(enc)}, &back); err != nil || back.RuntimeName != "crid" {
		t.Fatalf("unmarshal: %v %v", err, &back)
	}
	if codec.Name() != "proto" {
		t.Fatalf("codec name %q, want proto", codec.Name())
	}
}
