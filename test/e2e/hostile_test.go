package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crid-dev/crid/test/images"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Attacks from images and from other users of the node (issue 11).

// tarEntry is one file of a hand-made image layer.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

// pushBusyboxWith pushes busybox plus one layer of entries to the test
// registry as ref (an upstream name the mirrors map) and pulls it.
func pushBusyboxWith(t *testing.T, ref string, entries ...tarEntry) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		hdr.Size = int64(len(e.data))
		hdr.Format = tar.FormatPAX
		hdr.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := images.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(cat[busybox], layer)
	if err != nil {
		t.Fatal(err)
	}
	if err := images.Push(ctxT(t), h.registry, map[string]v1.Image{ref: img}); err != nil {
		t.Fatal(err)
	}
	pull(t, ref)
}

func dirEntry(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}

// TestHostileImageAccountFiles: an image whose /etc/passwd is a FIFO, or
// whose /etc/group is /dev/zero's device, gets a clear FailedPrecondition
// from CreateContainer, at once: crid neither blocks on the FIFO (which
// held the create and its mounted rootfs forever) nor reads the device
// until it is OOM-killed. Nothing of the refused create is left.
func TestHostileImageAccountFiles(t *testing.T) {
	cases := []struct {
		name, ref, file string
		entry           tar.Header
		user            func(*runtime.LinuxContainerSecurityContext)
	}{
		{
			name: "passwd FIFO", ref: "registry.k8s.io/crid-e2e/hostile:passwd-fifo", file: "/etc/passwd",
			entry: tar.Header{Name: "etc/passwd", Typeflag: tar.TypeFifo, Mode: 0o644},
			user:  func(sc *runtime.LinuxContainerSecurityContext) { sc.RunAsUsername = "nobody" },
		},
		{
			name: "group device", ref: "registry.k8s.io/crid-e2e/hostile:group-zero", file: "/etc/group",
			entry: tar.Header{Name: "etc/group", Typeflag: tar.TypeChar, Mode: 0o644, Devmajor: 1, Devminor: 5},
			user:  func(sc *runtime.LinuxContainerSecurityContext) { sc.RunAsUser = &runtime.Int64Value{Value: 0} },
		},
	}
	podID, pod := isoPod(t, nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pushBusyboxWith(t, c.ref, dirEntry("etc/"), tarEntry{hdr: c.entry})
			cfg := containerConfig("hostile", "sleep", "60")
			cfg.Image = &runtime.ImageSpec{Image: c.ref}
			c.user(secCtx(cfg))
			before := mountCount(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			cr, err := h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
			if err == nil {
				_, _ = h.rt.RemoveContainer(ctxT(t), &runtime.RemoveContainerRequest{ContainerId: cr.ContainerId})
				t.Fatalf("CreateContainer of an image whose %s is a %v succeeded", c.file, c.entry.Typeflag)
			}
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("CreateContainer: %v (after %v), want FailedPrecondition saying %s is not a regular file", err, time.Since(start), c.file)
			}
			if after := mountCount(t); after != before {
				t.Errorf("mounts under the run: %d before the refused create, %d after", before, after)
			}
			list, err := h.rt.ListContainers(ctxT(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Containers) != 0 {
				t.Errorf("the refused create left %d containers", len(list.Containers))
			}
		})
	}
}

// euidProgram prints the effective uid it runs with: made setuid root, it
// is what a hostile image (or a root container) plants for a local user.
const euidProgram = `#include <stdio.h>
#include <unistd.h>
int main(void) { printf("euid=%d\n", (int)geteuid()); return 0; }
`

// TestLocalUserCannotReachContainerFiles: a setuid-root binary from the
// image, the same binary copied by the container's root into its writable
// layer, and a world-writable device node the container made, are out of
// reach of an unprivileged user of the node through every host path crid
// keeps them under: the rootfs mount, the writable layer and the image's
// layer snapshot (CVE-2021-41091 class).
func TestLocalUserCannotReachContainerFiles(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is needed to act as another user")
	}
	bin := filepath.Join(t.TempDir(), "euid")
	src := bin + ".c"
	if err := os.WriteFile(src, []byte(euidProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-static", "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("build the setuid program: %v\n%s", err, out)
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	const ref = "registry.k8s.io/crid-e2e/hostile:setuid"
	pushBusyboxWith(t, ref, tarEntry{hdr: tar.Header{Name: "euid", Typeflag: tar.TypeReg, Mode: 0o4755}, data: prog})

	podID, pod := isoPod(t, nil)
	cfg := containerConfig("planter", "sleep", "600")
	cfg.Image = &runtime.ImageSpec{Image: ref}
	id := createStart(t, podID, pod, cfg)
	// The container's root plants its own: a setuid copy and /dev/zero.
	must(t, id, "cp -p /euid /tmp/planted && chmod 4755 /tmp/planted && mknod /tmp/zero c 1 5 && chmod 666 /tmp/zero && /tmp/planted")

	rootfs := filepath.Join(h.base, "state", "containers", id, "rootfs")
	upper := filepath.Join(h.base, "root", "containers", id, "rw", "upper")
	targets := []string{
		filepath.Join(rootfs, "euid"),
		filepath.Join(rootfs, "tmp", "planted"),
		filepath.Join(upper, "tmp", "planted"),
	}
	// The image's own layer, wherever the store keeps it.
	snapshots := filepath.Join(h.base, "root", "snapshots")
	_ = filepath.WalkDir(snapshots, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "euid" && !d.IsDir() {
			targets = append(targets, p)
		}
		return nil
	})
	if len(targets) != 4 {
		t.Fatalf("the image's setuid program is not in one layer snapshot under %s: %v", snapshots, targets[3:])
	}
	for _, p := range targets {
		// As root the file is there and setuid: what is checked below is
		// the path, not a missing file.
		if st, err := os.Stat(p); err != nil || st.Mode()&fs.ModeSetuid == 0 {
			t.Fatalf("%s: %v (mode %v), want a setuid file", p, err, st.Mode())
		}
		out, err := asNobody(p)
		if err == nil || strings.Contains(out, "euid=0") {
			t.Errorf("an unprivileged user ran %s: %v\n%s", p, err, out)
		} else if !strings.Contains(out, "Permission denied") {
			t.Errorf("running %s as nobody: %v\n%s; want Permission denied", p, err, out)
		}
	}
	dev := filepath.Join(rootfs, "tmp", "zero")
	if out, err := asNobody("/usr/bin/head", "-c", "4", dev); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("an unprivileged user opened the container's device node %s: %v\n%q", dev, err, out)
	}
	// A created container's exec FIFO: a local user who could open it
	// would release the init ahead of StartContainer.
	cr, err := h.rt.CreateContainer(ctxT(t), &runtime.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("created", "sleep", "600"), SandboxConfig: pod})
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(h.base, "state", "runtime", "runc", cr.ContainerId, "exec.fifo")
	if _, err := os.Stat(fifo); err != nil {
		t.Fatalf("the created container has no exec FIFO where runc keeps it: %v", err)
	}
	if out, err := asNobody("/usr/bin/head", "-c", "1", fifo); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("an unprivileged user opened %s: %v\n%q", fifo, err, out)
	}
	if st := containerStatus(t, cr.ContainerId); st.State != runtime.ContainerState_CONTAINER_CREATED {
		t.Errorf("container is %v after the attempt, want CREATED", st.State)
	}
	if _, err := h.rt.StartContainer(ctxT(t), &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Errorf("StartContainer: %v", err)
	}
	// The container itself still runs its setuid programs.
	if out := must(t, id, "/euid"); out != "euid=0" {
		t.Errorf("inside the container /euid printed %q, want euid=0", out)
	}
}

// asNobody runs argv as uid/gid 65534 with no groups and no capabilities.
// Through a shell: setpriv execs its command while it still holds root's
// capabilities (dropped only by that execve), so a path would be resolved
// with CAP_DAC_OVERRIDE; the shell holds none when it runs argv.
func asNobody(argv ...string) (string, error) {
	args := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--",
		"/bin/sh", "-c", `exec "$0" "$@"`}, argv...)
	out, err := exec.Command("setpriv", args...).CombinedOutput()
	return string(out), err
}
