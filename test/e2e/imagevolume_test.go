package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// volumeImage carries /etc/group with group-defined-in-image on top of busybox.
	volumeImage = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"
	// unpulledImage is in the registry but never pulled by the tests.
	unpulledImage = "gcr.io/k8s-staging-cri-tools/test-image-3:latest"
)

// imageVolumeMounts lists the image volume mounts on the host under the
// run's state dir.
func imageVolumeMounts(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, l := range readLines(t, "/proc/self/mountinfo") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], h.base) && strings.Contains(f[4], "/imagevolumes/") {
			out = append(out, f[4])
		}
	}
	return out
}

func TestImageVolume(t *testing.T) {
	pull(t, busybox)
	volID := pull(t, volumeImage)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	ctx := ctxT(t)
	before := imageVolumeMounts(t)

	withMounts := func(name string, ms ...*runtime.Mount) *runtime.ContainerConfig {
		c := containerConfig(name, "sleep", "1000")
		c.Mounts = ms
		return c
	}
	vol := func(path, ref, sub string) *runtime.Mount {
		return &runtime.Mount{ContainerPath: path, Readonly: true, Image: &runtime.ImageSpec{Image: ref}, ImageSubPath: sub}
	}

	// Refused requests leave no mount and no reserved name behind.
	for _, tc := range []struct {
		name  string
		mount *runtime.Mount
		code  codes.Code
	}{
		{"image not pulled", vol("/vol", unpulledImage, ""), codes.NotFound},
		{"sub path missing from the image", vol("/vol", volID, "not-existing"), codes.NotFound},
		{"sub path leaving the image", vol("/vol", volID, "../etc"), codes.InvalidArgument},
		{"absolute sub path", vol("/vol", volID, "/etc"), codes.InvalidArgument},
		{"writable", &runtime.Mount{ContainerPath: "/vol", Image: &runtime.ImageSpec{Image: volID}}, codes.InvalidArgument},
	} {
		_, err := h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod,
			Config: withMounts("refused", vol("/ok", volID, "etc"), tc.mount)})
		if status.Code(err) != tc.code {
			t.Errorf("%s: CreateContainer err = %v, want %v", tc.name, err, tc.code)
		}
		if m := imageVolumeMounts(t); len(m) != len(before) {
			t.Errorf("%s: image volume mounts left behind: %v", tc.name, m)
		}
	}

	// Sub path first so the index mapping is exercised: mount 0 is etc, 1 the whole image.
	cfg := withMounts("reader", vol("/vol-etc", volID, "etc"), vol("/vol", volumeImage, ""))
	id := createStart(t, podID, pod, cfg)
	if r := execSync(t, id, 10, "cat", "/vol/etc/group"); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "group-defined-in-image") {
		t.Errorf("/vol/etc/group: code %d %q %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if r := execSync(t, id, 10, "cat", "/vol-etc/group"); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "group-defined-in-image") {
		t.Errorf("/vol-etc/group (sub path): code %d %q %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if r := execSync(t, id, 10, "ls", "/vol-etc/etc"); r.ExitCode == 0 {
		t.Error("sub path ignored: /vol-etc/etc exists")
	}
	// Binaries in the volume run (not noexec).
	if r := execSync(t, id, 10, "/vol/bin/ls", "/vol/home"); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "default-user") {
		t.Errorf("/vol/bin/ls: code %d %q %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	for _, p := range []string{"/vol/new", "/vol/etc/group", "/vol-etc/new"} {
		r := execSync(t, id, 10, "sh", "-c", "echo x >> "+p)
		if r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "Read-only file system") {
			t.Errorf("write %s: code %d %q", p, r.ExitCode, r.Stderr)
		}
	}
	// Not even root in the container can remount it writable.
	if r := execSync(t, id, 10, "mount", "-o", "remount,rw", "/vol"); r.ExitCode == 0 {
		t.Error("remount rw of the image volume succeeded")
	}
	st := containerStatus(t, id)
	got := map[string]string{}
	for _, m := range st.Mounts {
		if m.Image != nil {
			got[m.ContainerPath] = m.Image.ImageRef
		}
	}
	if got["/vol"] != volID || got["/vol-etc"] != volID {
		t.Errorf("status mounts image_ref = %v, want %s for both", got, volID)
	}
	if n := len(imageVolumeMounts(t)) - len(before); n != 2 {
		t.Errorf("%d image volume mounts on the host, want 2", n)
	}

	// In use while mounted, even by its image ID alone.
	if _, err := h.img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: volID}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("RemoveImage of a mounted volume image: %v, want FailedPrecondition", err)
	}

	// Removal after a crid crash still unmounts the volumes.
	h.stop(syscall.SIGKILL)
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	ctx = ctxT(t)
	if st := containerStatus(t, id); len(st.Mounts) != 2 || st.Mounts[0].GetImage().GetImageRef() != volID {
		t.Errorf("status mounts after restart: %v", st.Mounts)
	}
	if _, err := h.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer: %v\ncrid log:\n%s", err, h.logTail())
	}
	assertNoLeftovers(t, id)
	if m := imageVolumeMounts(t); len(m) != len(before) {
		t.Errorf("image volume mounts after removal: %v", m)
	}
	if _, err := os.Stat(filepath.Join(h.base, "state", "containers", id, "imagevolumes")); !os.IsNotExist(err) {
		t.Errorf("image volume dir kept: %v", err)
	}
	if _, err := h.img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: volID}}); err != nil {
		t.Fatalf("RemoveImage after the container is gone: %v", err)
	}
	if st, err := h.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: volumeImage}}); err != nil || st.Image != nil {
		t.Errorf("image still there after removal: %v %v", st, err)
	}
	// The refused name was never taken.
	rid := createStart(t, podID, pod, withMounts("refused"))
	if _, err := h.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: rid}); err != nil {
		t.Fatal(err)
	}
}
