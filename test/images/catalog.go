// Package images builds crid's test images offline, in memory, from files
// of this Debian machine: busybox (Debian's dynamic busybox with hard-linked
// applets), nginx, an httpd stand-in, nonewprivs, pause (compiled from images/pause) and
// every gcr.io/k8s-staging-cri-tools/test-image-* critest pulls; and, apart
// (NodeE2ECatalog in nodee2e.go, it needs an agnhost binary), the images
// Kubernetes' node e2e suite pulls. Names are
// the full upstream references; crid-testregistry serves them under
// "<upstream host>/<path>" repositories for mirror configs with a path
// prefix.
package images

import (
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image references critest v1.37.0 and crid use.
const (
	BusyboxE2E = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	NginxE2E   = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
	HttpdE2E   = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
	NoNewPrivs = "registry.k8s.io/e2e-test-images/nonewprivs:1.3"
	Pause39    = "registry.k8s.io/pause:3.9"
	Pause39Old = "k8s.gcr.io/pause:3.9"
	Pause310   = "registry.k8s.io/pause:3.10"
	BusyboxHub = "docker.io/library/busybox:latest"

	criTools = "gcr.io/k8s-staging-cri-tools/"

	TestImageLatest          = criTools + "test-image-latest:latest"
	TestImageTagTest         = criTools + "test-image-tag:test"
	TestImageTagAll          = criTools + "test-image-tag:all"
	TestImageUserUID         = criTools + "test-image-user-uid:latest"
	TestImageUserUsername    = criTools + "test-image-user-username:latest"
	TestImageUserUIDGroup    = criTools + "test-image-user-uid-group:latest"
	TestImageUserNameGroup   = criTools + "test-image-user-username-group:latest"
	TestImagePredefinedGroup = criTools + "test-image-predefined-group:latest"
	HostnetNginx             = criTools + "hostnet-nginx-amd64:latest"
)

// DifferentImages are three distinct images (critest's "exactly 3 images").
var DifferentImages = []string{
	criTools + "test-image-1:latest",
	criTools + "test-image-2:latest",
	criTools + "test-image-3:latest",
}

// SameImageTags are three tags of one image (critest's "3 repoTags").
var SameImageTags = []string{
	criTools + "test-image-tags:1",
	criTools + "test-image-tags:2",
	criTools + "test-image-tags:3",
}

// Unbuildable lists references critest uses that cannot be made offline:
// the digest pins an upstream manifest whose bytes cannot be reproduced.
var Unbuildable = []string{
	criTools + "test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf",
}

// catalogOnce memoizes the catalog: building it compresses tens of MiB,
// and the images are immutable once built, so one build per process is
// shared by every caller.
var catalogOnce = sync.OnceValues(func() (map[string]v1.Image, error) { return newBuilder().catalog() })

// Catalog returns every test image by full upstream reference. The result
// is shared; callers must not modify the map.
func Catalog() (map[string]v1.Image, error) { return catalogOnce() }

func (b *builder) catalog() (map[string]v1.Image, error) {
	type item struct {
		refs  []string
		build func() (v1.Image, error)
	}
	busybox := func(id, user string, files ...string) func() (v1.Image, error) {
		return func() (v1.Image, error) {
			var extra []func() (v1.Layer, error)
			var hist []string
			for _, f := range files {
				extra = append(extra, func() (v1.Layer, error) { return b.fileLayer(f) })
				hist = append(hist, "ADD "+f+" /"+f)
			}
			return b.busyboxImage(id, user, extra, hist)
		}
	}
	items := []item{
		{[]string{BusyboxE2E}, busybox("busybox", "")},
		{[]string{BusyboxHub}, busybox("busybox-docker-hub", "")},
		{[]string{NginxE2E}, func() (v1.Image, error) { return b.nginxImage("nginx", 80) }},
		{[]string{HostnetNginx}, func() (v1.Image, error) { return b.nginxImage("hostnet-nginx", 12003) }},
		{[]string{HttpdE2E}, b.httpdImage},
		{[]string{NoNewPrivs}, b.nnpImage},
		{[]string{NsexecAttacker}, b.nsexecAttackerImage},
		{[]string{Pause39, Pause39Old}, func() (v1.Image, error) { return b.pauseImage("3.9") }},
		{[]string{Pause310}, func() (v1.Image, error) { return b.pauseImage("3.10") }},
		{[]string{TestImageLatest}, busybox("test-image-latest", "", "test-image-latest")},
		{[]string{TestImageTagTest}, busybox("test-image-tag-test", "", "test")},
		{[]string{TestImageTagAll}, busybox("test-image-tag-all", "", "all")},
		{SameImageTags, busybox("test-image-tags", "", "test-image-tags")},
		{[]string{TestImageUserUID}, busybox("test-image-user-uid", "1002")},
		{[]string{TestImageUserUsername}, busybox("test-image-user-username", "www-data")},
		{[]string{TestImageUserUIDGroup}, busybox("test-image-user-uid-group", "1003:1004")},
		{[]string{TestImageUserNameGroup}, busybox("test-image-user-username-group", "www-data:1004")},
		{[]string{TestImagePredefinedGroup}, func() (v1.Image, error) {
			return b.busyboxImage("test-image-predefined-group", "1000",
				[]func() (v1.Layer, error){b.predefinedGroupLayer},
				[]string{"default-user (1000) in group-defined-in-image (50000)"})
		}},
	}
	for i, ref := range DifferentImages {
		n := fmt.Sprintf("test-image-%d", i+1)
		items = append(items, item{[]string{ref}, busybox(n, "", n)})
	}

	out := map[string]v1.Image{}
	for _, it := range items {
		img, err := it.build()
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", it.refs[0], err)
		}
		for _, ref := range it.refs {
			out[ref] = img
		}
	}
	return out, nil
}

// Names returns the catalog's references, sorted.
func Names(refs map[string]v1.Image) []string {
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// WriteArchive writes refs as a `docker save` tarball (manifest.json with
// RepoTags, configs and layers as blobs), which `crid image import` loads.
func WriteArchive(w io.Writer, refs map[string]v1.Image) error {
	m := make(map[name.Reference]v1.Image, len(refs))
	for r, img := range refs {
		tag, err := name.NewTag(r, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("archive: reference %q: %w", r, err)
		}
		m[tag] = img
	}
	if err := tarball.MultiRefWrite(m, w); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}
