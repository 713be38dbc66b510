package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/tartest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func catalog(t *testing.T) map[string]v1.Image {
	t.Helper()
	start := time.Now()
	c, err := Catalog()
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	t.Logf("catalog ready in %v (%d references)", time.Since(start), len(c))
	return c
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func configName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The references critest v1.37.0 pulls (pkg/validate/consts*.go,
// multi_container_linux.go, framework/util.go), spelled with their tags.
var critestRefs = []string{
	"registry.k8s.io/e2e-test-images/busybox:1.29-2",
	"registry.k8s.io/e2e-test-images/nginx:1.14-2",
	"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
	"registry.k8s.io/pause:3.9",
	"k8s.gcr.io/pause:3.9",
	"gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:test",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:all",
	"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest",
	"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
	// crid's default sandbox image.
	"registry.k8s.io/pause:3.10",
}

func TestCatalogNamesAndIdentity(t *testing.T) {
	c := catalog(t)
	for _, ref := range critestRefs {
		if _, ok := c[ref]; !ok {
			t.Errorf("catalog lacks %s", ref)
		}
	}
	for _, ref := range Unbuildable {
		if _, ok := c[ref]; ok {
			t.Errorf("catalog claims unbuildable %s", ref)
		}
	}

	same := func(a, b string, want bool) {
		t.Helper()
		if got := digest(t, c[a]) == digest(t, c[b]); got != want {
			t.Errorf("%s and %s same image = %v, want %v", a, b, got, want)
		}
		if got := configName(t, c[a]) == configName(t, c[b]); got != want {
			t.Errorf("%s and %s same image ID = %v, want %v", a, b, got, want)
		}
	}
	same(SameImageTags[0], SameImageTags[1], true)
	same(SameImageTags[0], SameImageTags[2], true)
	same(DifferentImages[0], DifferentImages[1], false)
	same(DifferentImages[1], DifferentImages[2], false)
	same(DifferentImages[0], DifferentImages[2], false)
	same(Pause39, Pause39Old, true)
	same(Pause39, Pause310, false)
	same(TestImageTagTest, TestImageTagAll, false)
	same(NginxE2E, HostnetNginx, false)

	// Every distinct image ID appears only under the references meant to
	// share it, so removing one image by ID never removes another's tags.
	byID := map[v1.Hash][]string{}
	for _, ref := range Names(c) {
		id := configName(t, c[ref])
		byID[id] = append(byID[id], ref)
	}
	for id, refs := range byID {
		if len(refs) > 1 && !(strings.Contains(refs[0], "test-image-tags") || strings.Contains(refs[0], "pause:3.9")) {
			t.Errorf("image %s unexpectedly shared by %v", id, refs)
		}
	}

	for _, ref := range Names(c) {
		img := c[ref]
		mt, err := img.MediaType()
		if err != nil || mt != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest media type %q (%v)", ref, mt, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != "amd64" {
			t.Errorf("%s: platform %s/%s", ref, cf.OS, cf.Architecture)
		}
		if len(cf.RootFS.DiffIDs) == 0 || len(cf.History) != len(cf.RootFS.DiffIDs) {
			t.Errorf("%s: %d diff ids, %d history entries", ref, len(cf.RootFS.DiffIDs), len(cf.History))
		}
	}
}

func TestCatalogIsDeterministic(t *testing.T) {
	c := catalog(t)
	again, err := newBuilder().catalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{BusyboxE2E, NginxE2E, Pause310} {
		if a, b := digest(t, c[ref]), digest(t, again[ref]); a != b {
			t.Errorf("%s: digest %s then %s", ref, a, b)
		}
	}
}

// layerFiles reads the tar headers and regular file contents of a layer,
// by path in the image ("/bin/sh").
func layerFiles(t *testing.T, l v1.Layer) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	byName, files := tartest.Read(t, rc)
	hdrs := map[string]*tar.Header{}
	for name, h := range byName {
		hdrs["/"+strings.TrimSuffix(name, "/")] = h
	}
	return hdrs, inImage(files)
}

// inImage keys files by path in the image: "bin/sh" is "/bin/sh".
func inImage(files map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(files))
	for name, b := range files {
		out["/"+name] = b
	}
	return out
}

func TestBusyboxLayer(t *testing.T) {
	c := catalog(t)
	ls, err := c[BusyboxE2E].Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("busybox layers: %d, %v", len(ls), err)
	}
	hdrs, data := layerFiles(t, ls[0])

	if h := hdrs["/bin/busybox"]; h == nil || h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
		t.Fatalf("/bin/busybox missing or not an executable file: %+v", h)
	}
	// Hard links: within the layer /bin/sh and /bin/ls are the same inode
	// as /bin/busybox.
	for _, a := range []string{"sh", "ls", "top", "sleep", "id", "ping", "pidof", "brctl", "httpd", "wget", "ip", "nc", "cat", "grep"} {
		h := hdrs["/bin/"+a]
		if h == nil {
			t.Errorf("/bin/%s missing", a)
			continue
		}
		if h.Typeflag != tar.TypeLink || h.Linkname != "bin/busybox" {
			t.Errorf("/bin/%s: type %c link %q, want hard link to bin/busybox", a, h.Typeflag, h.Linkname)
		}
	}
	for p, h := range hdrs {
		if strings.HasPrefix(p, "/bin/") && h.Typeflag == tar.TypeSymlink {
			t.Errorf("%s is a symlink; applets must be hard links", p)
		}
	}
	for _, p := range []string{"/usr/bin/ipcs", "/usr/bin/pgrep", "/lib64/ld-linux-x86-64.so.2",
		"/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libresolv.so.2", "/lib/x86_64-linux-gnu/libproc2.so.0",
		"/lib/x86_64-linux-gnu/libsystemd.so.0", "/etc/passwd", "/etc/group"} {
		if h := hdrs[p]; h == nil || h.Typeflag != tar.TypeReg {
			t.Errorf("%s missing or not a regular file", p)
		}
	}
	for p, mode := range map[string]int64{"/tmp": 0o1777, "/proc": 0o755, "/sys": 0o755, "/dev": 0o755, "/etc": 0o755, "/root": 0o700} {
		if h := hdrs[p]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != mode {
			t.Errorf("%s: want dir mode %o, got %+v", p, mode, h)
		}
	}
	for _, line := range []string{"root:x:0:0:", "nobody:x:65534:65534:", "www-data:x:33:33:"} {
		if !bytes.Contains(data["/etc/passwd"], []byte("\n"+line)) && !bytes.HasPrefix(data["/etc/passwd"], []byte(line)) {
			t.Errorf("/etc/passwd lacks %q", line)
		}
	}
	cf, _ := c[BusyboxE2E].ConfigFile()
	if strings.Join(cf.Config.Cmd, " ") != "sh" || cf.Config.User != "" {
		t.Errorf("busybox config: cmd %v user %q", cf.Config.Cmd, cf.Config.User)
	}
}

func TestUserImages(t *testing.T) {
	c := catalog(t)
	for _, tc := range []struct {
		ref, user string
		passwd    []string
		group     []string
	}{
		{TestImageUserUID, "1002", nil, nil},
		{TestImageUserUsername, "www-data", []string{"www-data:x:33:33:"}, nil},
		{TestImageUserUIDGroup, "1003:1004", nil, nil},
		{TestImageUserNameGroup, "www-data:1004", []string{"www-data:x:33:33:"}, nil},
		{TestImagePredefinedGroup, "1000", []string{"default-user:x:1000:1000:"},
			[]string{"default-user:x:1000:", "group-defined-in-image:x:50000:default-user"}},
		{Pause310, "65535:65535", nil, nil},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			cf, err := c[tc.ref].ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Config.User != tc.user {
				t.Errorf("USER %q, want %q", cf.Config.User, tc.user)
			}
			if len(tc.passwd)+len(tc.group) == 0 {
				return
			}
			fs := flatten(t, c[tc.ref])
			for _, l := range tc.passwd {
				if !hasLine(fs["/etc/passwd"], l) {
					t.Errorf("/etc/passwd lacks a line starting %q:\n%s", l, fs["/etc/passwd"])
				}
			}
			for _, l := range tc.group {
				if !hasLine(fs["/etc/group"], l) {
					t.Errorf("/etc/group lacks a line starting %q:\n%s", l, fs["/etc/group"])
				}
			}
		})
	}
}

func hasLine(b []byte, prefix string) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// flatten returns the regular files of the image's merged file system.
func flatten(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	_, files := tartest.Read(t, rc)
	return inImage(files)
}

// unpack writes the image's merged file system into a new temp directory.
func unpack(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode).Perm()); err != nil {
				t.Fatal(err)
			}
			err = os.Chmod(p, os.FileMode(h.Mode&0o777)|modeBits(h.Mode))
		case tar.TypeReg:
			var f *os.File
			f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err == nil {
				_, err = io.Copy(f, tr)
				f.Close()
			}
			if err == nil && h.Mode&0o4000 != 0 {
				defer os.Chmod(p, os.FileMode(h.Mode).Perm()|os.ModeSetuid) // after Lchown, which clears setuid
			}
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, filepath.Clean("/"+h.Linkname)), p)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		}
		if err == nil {
			err = os.Lchown(p, h.Uid, h.Gid)
		}
		if err != nil {
			t.Fatalf("unpack %s: %v", h.Name, err)
		}
	}
}

func modeBits(m int64) os.FileMode {
	if m&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test runs images in a chroot and needs root")
	}
}

// inRootfs runs script with /bin/sh of rootfs inside private mount, network
// and PID namespaces (so every mount and process it makes dies with it),
// with /dev bound and /proc mounted, and returns its combined output.
func inRootfs(t *testing.T, rootfs, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--propagation", "private",
		"/bin/sh", "-ec", `mount --rbind /dev "$1/dev"; mount -t proc proc "$1/proc"; exec chroot "$1" /bin/sh -c "$2"`,
		"sh", rootfs, script)
	cmd.Env = []string{defaultPath}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestBusyboxRunsInChroot(t *testing.T) {
	requireRoot(t)
	c := catalog(t)
	root := unpack(t, c[BusyboxE2E])
	out, err := inRootfs(t, root, `echo ok; ls / >/dev/null; ipcs -m >/dev/null; pgrep -V >/dev/null; `+
		`sleep 1000 & pgrep sleep >/dev/null; pidof sleep >/dev/null; kill $!; id -u nobody; stat -c %h /bin/ls`)
	if err != nil {
		t.Fatalf("busybox in chroot: %v\n%s", err, out)
	}
	lines := strings.Fields(out)
	if len(lines) != 3 || lines[0] != "ok" || lines[1] != "65534" {
		t.Fatalf("unexpected output %q", out)
	}
	// The link count of /bin/ls proves applets share busybox's inode.
	if lines[2] == "1" {
		t.Errorf("/bin/ls has link count 1; applets are not hard links")
	}
}

func TestNginxServesInChroot(t *testing.T) {
	requireRoot(t)
	c := catalog(t)
	for ref, port := range map[string]string{NginxE2E: "80", HostnetNginx: "12003"} {
		t.Run(ref, func(t *testing.T) {
			root := unpack(t, c[ref])
			out, err := inRootfs(t, root, `ip link set lo up; nginx & i=0
until wget -q -O /tmp/page http://127.0.0.1:`+port+`/; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done
cat /tmp/page; echo "pid=$(cat /var/run/nginx.pid) pidof=$(pidof nginx)"; kill -QUIT $!; wait $!`)
			if err != nil {
				t.Fatalf("nginx in chroot: %v\n%s", err, out)
			}
			if !strings.Contains(out, "Welcome to nginx!") {
				t.Errorf("default page missing:\n%s", out)
			}
			var pid, pidof string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "pid=") {
					f := strings.SplitN(strings.TrimPrefix(l, "pid="), " pidof=", 2)
					pid, pidof = f[0], f[1]
				}
			}
			if pid == "" || !strings.Contains(" "+pidof+" ", " "+pid+" ") {
				t.Errorf("pid file %q not among pidof nginx %q\n%s", pid, pidof, out)
			}
		})
	}
}

func TestHttpdServesInChroot(t *testing.T) {
	requireRoot(t)
	c := catalog(t)
	root := unpack(t, c[HttpdE2E])
	out, err := inRootfs(t, root, `ip link set lo up; httpd-foreground & i=0
until wget -q -O /tmp/page http://127.0.0.1:80/; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done
cat /tmp/page; kill $!`)
	if err != nil {
		t.Fatalf("httpd in chroot: %v\n%s", err, out)
	}
	if !strings.Contains(out, "It works!") || !strings.Contains(out, "httpd") {
		t.Errorf("unexpected httpd output:\n%s", out)
	}
}

// TestNoNewPrivs runs the setuid nnp program as uid 1000 with and without
// no_new_privs: like critest, expect effective uid 0 only without it.
func TestNoNewPrivs(t *testing.T) {
	requireRoot(t)
	c := catalog(t)
	root := unpack(t, c[NoNewPrivs])
	nnp := filepath.Join(root, "usr/local/bin/nnp")
	st, err := os.Stat(nnp)
	if err != nil || st.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("nnp not setuid: %v %v", st.Mode(), err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--reuid", "1000", "--regid", "1000", "--clear-groups", nnp}, "Effective uid: 0\n"},
		{[]string{"--reuid", "1000", "--regid", "1000", "--clear-groups", "--no-new-privs", nnp}, "Effective uid: 1000\n"},
	} {
		out, err := exec.Command("setpriv", tc.args...).CombinedOutput()
		if err != nil || string(out) != tc.want {
			t.Errorf("setpriv %v: %q (%v), want %q", tc.args, out, err, tc.want)
		}
	}
}

// TestPause runs the pause binary as PID 1 of a new PID namespace, orphans
// a process into it, checks the orphan is reaped, then stops it with SIGTERM.
func TestPause(t *testing.T) {
	requireRoot(t)
	c := catalog(t)
	fs := flatten(t, c[Pause310])
	bin := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(bin, fs["/pause"], 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Errorf("pause is not static: %s", out)
	}
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	pid := cmd.Process.Pid

	// sh exits at once; its background sleep is re-parented to pause.
	if out, err := exec.Command("nsenter", "-t", itoa(pid), "-p", "--", "/bin/sh", "-c", "sleep 0.5 </dev/null >/dev/null 2>&1 & exit 0").CombinedOutput(); err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	childrenFile := filepath.Join("/proc", itoa(pid), "task", itoa(pid), "children")
	sawChild := false
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(childrenFile)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(b)) != "" {
			sawChild = true
		} else if sawChild {
			break // adopted, exited and reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("pause children still %q (saw child: %v); zombie not reaped", b, sawChild)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pause exit after SIGTERM: %v (stderr %q)", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pause did not exit on SIGTERM")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestRegistryServesMirroredRepositories(t *testing.T) {
	c := catalog(t)
	var logs bytes.Buffer
	srv := httptest.NewServer(NewRegistry(slog.New(slog.NewTextHandler(&logs, nil))))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	subset := map[string]v1.Image{BusyboxE2E: c[BusyboxE2E], Pause310: c[Pause310], BusyboxHub: c[BusyboxHub], Pause39Old: c[Pause39Old]}
	if err := Push(context.Background(), addr, subset); err != nil {
		t.Fatalf("Push: %v", err)
	}
	for ref, repo := range map[string]string{
		BusyboxE2E: addr + "/registry.k8s.io/e2e-test-images/busybox:1.29-2",
		Pause310:   addr + "/registry.k8s.io/pause:3.10",
		BusyboxHub: addr + "/docker.io/library/busybox:latest",
		Pause39Old: addr + "/k8s.gcr.io/pause:3.9",
	} {
		tag, err := name.NewTag(repo, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(tag)
		if err != nil {
			t.Fatalf("get %s: %v", repo, err)
		}
		if desc.Digest != digest(t, c[ref]) || desc.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: served %s %s, want %s", repo, desc.MediaType, desc.Digest, digest(t, c[ref]))
		}
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatalf("%s layer: %v", repo, err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("%s layer: %v", repo, err) // ggcr verifies the digest while reading
			}
			rc.Close()
		}
	}
	if !strings.Contains(logs.String(), "path=/v2/registry.k8s.io/e2e-test-images/busybox/manifests/1.29-2") {
		t.Errorf("request log lacks the busybox manifest GET:\n%.2000s", logs.String())
	}
}

func TestWriteArchive(t *testing.T) {
	c := catalog(t)
	var buf bytes.Buffer
	if err := WriteArchive(&buf, map[string]v1.Image{Pause310: c[Pause310]}); err != nil {
		t.Fatal(err)
	}
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != Pause310 {
		t.Fatalf("archive manifest %+v", m)
	}
	tag, _ := name.NewTag(Pause310)
	img, err := tarball.Image(opener, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := configName(t, img), configName(t, c[Pause310]); got != want {
		t.Errorf("archived image ID %s, want %s", got, want)
	}
}

// A filler image is what it says: the same for the same seed, and as big
// compressed as its content (random bytes do not compress).
func TestWithFiller(t *testing.T) {
	cat, err := Catalog()
	if err != nil {
		t.Fatal(err)
	}
	digestOf := func() (v1.Hash, int64) {
		img, err := WithFiller(cat[BusyboxE2E], 7, 2, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		size, err := layers[len(layers)-1].Size()
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d, size
	}
	d1, size := digestOf()
	if d2, _ := digestOf(); d1 != d2 {
		t.Errorf("two filler images of one seed differ: %s, %s", d1, d2)
	}
	if size < 1<<20 {
		t.Errorf("1 MiB of filler compressed to %d bytes", size)
	}
}
