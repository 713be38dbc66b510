package oci

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageTree makes a directory standing in for a mounted image: etc/passwd,
// a directory symlink with an absolute target, a relative symlink climbing
// above the root, and a file.
func imageTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "img")
	for _, d := range []string{"etc/ssl", "usr/share", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"abs":        "/usr/share",      // absolute: must resolve inside the image
		"up":         "../../../../etc", // climbs: clamped at the image root
		"data/share": "../usr/share",
		"dangling":   "/nowhere",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestImageSubPath(t *testing.T) {
	root := imageTree(t)
	for _, tc := range []struct {
		sub     string
		want    string // relative to root
		wantErr error
	}{
		{sub: "", want: "."},
		{sub: "etc", want: "etc"},
		{sub: "etc/", want: "etc"},
		{sub: "./etc/ssl", want: "etc/ssl"},
		{sub: "etc/passwd", want: "etc/passwd"},
		{sub: "abs", want: "usr/share"},
		{sub: "up", want: "etc"},
		{sub: "data/share", want: "usr/share"},
		{sub: "etc/../usr", want: "usr"},
		{sub: "not-existing", wantErr: errdefs.ErrNotFound},
		{sub: "etc/passwd/x", wantErr: errdefs.ErrNotFound},
		{sub: "dangling", wantErr: errdefs.ErrNotFound},
		{sub: "/etc", wantErr: errdefs.ErrInvalidArgument},
		{sub: "..", wantErr: errdefs.ErrInvalidArgument},
		{sub: "../img/etc", wantErr: errdefs.ErrInvalidArgument},
		{sub: "etc/../../x", wantErr: errdefs.ErrInvalidArgument},
	} {
		got, err := ImageSubPath(root, tc.sub)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("ImageSubPath(%q) = %q, %v; want %v", tc.sub, got, err, tc.wantErr)
			}
			continue
		}
		if want := filepath.Join(root, tc.want); err != nil || got != want {
			t.Errorf("ImageSubPath(%q) = %q, %v; want %q", tc.sub, got, err, want)
		}
	}
	if _, err := ImageSubPath(filepath.Join(root, "missing"), "etc"); err == nil {
		t.Error("missing root: no error")
	}
}

func TestImageVolumeMounts(t *testing.T) {
	vol := imageTree(t)
	hostDir := t.TempDir()
	img := &runtime.ImageSpec{Image: "example.com/data:1"}

	p := baseContainer(t)
	p.Config.Mounts = []*runtime.Mount{
		{ContainerPath: "/data/img/etc", Image: img, Readonly: true, ImageSubPath: "etc"},
		{ContainerPath: "/data", HostPath: hostDir},
		{ContainerPath: "/data/img", Image: img, Readonly: true},
		{ContainerPath: "/rro", Image: img, Readonly: true, RecursiveReadOnly: true},
	}
	p.ImageVolumes = map[int]string{0: filepath.Join(vol, "etc"), 2: vol, 3: vol}
	s := mustContainer(t, p)
	for _, want := range []specs.Mount{
		{Destination: "/data/img/etc", Type: "bind", Source: filepath.Join(vol, "etc"), Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}},
		{Destination: "/data/img", Type: "bind", Source: vol, Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}},
		{Destination: "/rro", Type: "bind", Source: vol, Options: []string{"rbind", "rprivate", "rro", "nosuid", "nodev"}},
		{Destination: "/data", Type: "bind", Source: hostDir, Options: []string{"rbind", "rprivate", "rw"}},
	} {
		ms := mountByDest(s, want.Destination)
		if len(ms) != 1 || !reflect.DeepEqual(ms[0], want) {
			t.Errorf("%s: %+v, want %+v", want.Destination, ms, want)
		}
	}
	// Parents before children, whatever the request's order.
	idx := func(d string) int {
		return slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == d })
	}
	if !(idx("/data") < idx("/data/img") && idx("/data/img") < idx("/data/img/etc")) {
		t.Errorf("mount order: /data %d, /data/img %d, /data/img/etc %d", idx("/data"), idx("/data/img"), idx("/data/img/etc"))
	}

	for _, tc := range []struct {
		name string
		m    *runtime.Mount
		vols map[int]string
		want string
	}{
		{"not read-only", &runtime.Mount{ContainerPath: "/x", Image: img}, map[int]string{0: vol}, "must be read-only"},
		{"not mounted", &runtime.Mount{ContainerPath: "/x", Image: img, Readonly: true}, nil, "was not mounted"},
		{"mounted at another index", &runtime.Mount{ContainerPath: "/x", Image: img, Readonly: true}, map[int]string{1: vol}, "was not mounted"},
		{"with host path", &runtime.Mount{ContainerPath: "/x", HostPath: hostDir, Image: img, Readonly: true}, map[int]string{0: vol}, "host_path"},
		{"relative source", &runtime.Mount{ContainerPath: "/x", Image: img, Readonly: true}, map[int]string{0: "img"}, "not absolute"},
		{"relative dest", &runtime.Mount{ContainerPath: "x", Image: img, Readonly: true}, map[int]string{0: vol}, "absolute"},
	} {
		p := baseContainer(t)
		p.Config.Mounts = []*runtime.Mount{tc.m}
		p.ImageVolumes = tc.vols
		if _, err := containerSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	// A source that vanished (unmounted under us) is an error, not a bind of nothing.
	p = baseContainer(t)
	p.Config.Mounts = []*runtime.Mount{{ContainerPath: "/x", Image: img, Readonly: true}}
	p.ImageVolumes = map[int]string{0: filepath.Join(vol, "gone")}
	if _, err := containerSpec(p, testHost()); err == nil || !strings.Contains(err.Error(), "image volume source") {
		t.Errorf("vanished source: err = %v", err)
	}
}
