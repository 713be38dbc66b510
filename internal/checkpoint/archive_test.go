package checkpoint

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/tartest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// dirNames lists dir, so a test can see that nothing temporary was left.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestWriteArchive(t *testing.T) {
	src := map[string]string{
		"checkpoint/pages-1.img":   "pages",
		"checkpoint/inventory.img": "inv",
		metadata.ConfigDumpFile:    `{"id":"x"}`,
		metadata.SpecDumpFile:      `{"ociVersion":"1.0.2"}`,
		metadata.RootFsDiffTar:     "tar",
		metadata.DeletedFilesFile:  `["/etc/motd"]`,
		metadata.DumpLogFile:       "log",
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		existing string // content already at location, "" for none
		extra    func(t *testing.T, dir string)
		wantErr  error
	}{
		{name: "new", ctx: context.Background()},
		{name: "replaces an archive", ctx: context.Background(), existing: "old archive"},
		{name: "cancelled", ctx: cancelled, existing: "old archive", wantErr: context.Canceled},
		{name: "not a regular file", ctx: context.Background(), wantErr: errors.New("not a regular file"),
			extra: func(t *testing.T, dir string) {
				if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, out := t.TempDir(), t.TempDir()
			writeFiles(t, dir, src)
			if tc.extra != nil {
				tc.extra(t, dir)
			}
			location := filepath.Join(out, "checkpoint.tar")
			if tc.existing != "" {
				if err := os.WriteFile(location, []byte(tc.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteArchive(tc.ctx, dir, location)
			if tc.wantErr != nil {
				if err == nil || !(errors.Is(err, tc.wantErr) || strings.Contains(err.Error(), tc.wantErr.Error())) {
					t.Fatalf("WriteArchive = %v, want %v", err, tc.wantErr)
				}
				// Nothing temporary is left; an archive there stays as it was.
				want := []string{}
				if tc.existing != "" {
					want = []string{"checkpoint.tar"}
					if b, _ := os.ReadFile(location); string(b) != tc.existing {
						t.Errorf("location changed by a failed write: %q", b)
					}
				}
				if got := dirNames(t, out); strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("files beside location = %v, want %v", got, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("WriteArchive: %v", err)
			}
			fi, err := os.Stat(location)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("archive mode %v, want 0600", fi.Mode().Perm())
			}
			if got := dirNames(t, out); len(got) != 1 {
				t.Errorf("files beside location = %v, want only the archive", got)
			}
			f, err := os.Open(location)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			hdrs, files := tartest.Read(t, f)
			for name, content := range src {
				if string(files[name]) != content {
					t.Errorf("archive %s = %q, want %q", name, files[name], content)
				}
			}
			if h := hdrs["checkpoint/"]; h == nil || h.Typeflag != tar.TypeDir {
				t.Errorf("archive lacks the checkpoint/ directory: %v", hdrs)
			}
			if len(hdrs) != len(src)+1 {
				t.Errorf("archive has %d entries, want %d: %v", len(hdrs), len(src)+1, hdrs)
			}
		})
	}
}

func TestCheckLocation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "old.tar")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		location string
		ok       bool
	}{
		{filepath.Join(dir, "new.tar"), true},
		{file, true},
		{"", false},
		{"relative.tar", false},
		{filepath.Join(dir, "missing", "a.tar"), false},
		{dir, false},
	} {
		err := CheckLocation(tc.location)
		if tc.ok != (err == nil) {
			t.Errorf("CheckLocation(%q) = %v, want ok=%v", tc.location, err, tc.ok)
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Errorf("CheckLocation(%q) = %v, want InvalidArgument", tc.location, err)
		}
	}
}

// upperFixture builds an overlay upper dir as a container leaves it.
func upperFixture(t *testing.T) string {
	t.Helper()
	upper := t.TempDir()
	writeFiles(t, upper, map[string]string{
		"data/counter":      "42\n",
		"etc/hosts":         "", // a mount point runc made
		"root/.ash_history": "ls\n",
	})
	if err := os.Symlink("/data/counter", filepath.Join(upper, "data", "link")); err != nil {
		t.Fatal(err)
	}
	// A whiteout: the container deleted /etc/motd of the image.
	if err := unix.Mknod(filepath.Join(upper, "etc", "motd"), unix.S_IFCHR, 0); err != nil {
		t.Skipf("mknod a whiteout needs CAP_MKNOD: %v", err)
	}
	// A socket the container bound: left out.
	l, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l)
	if err := unix.Bind(l, &unix.SockaddrUnix{Name: filepath.Join(upper, "data", "sock")}); err != nil {
		t.Fatal(err)
	}
	return upper
}

func TestRootfsDiff(t *testing.T) {
	upper := upperFixture(t)
	var buf bytes.Buffer
	d := RootfsDiff{Upper: upper, Merged: upper, Skip: SkipMounts([]string{"/etc/hosts", "/proc"})}
	deleted, err := d.Write(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(deleted, ",") != "/etc/motd" {
		t.Errorf("deleted = %v, want [/etc/motd]", deleted)
	}
	hdrs, files := tartest.Read(t, &buf)
	if string(files["data/counter"]) != "42\n" || string(files["root/.ash_history"]) != "ls\n" {
		t.Errorf("diff files = %v", files)
	}
	if h := hdrs["data/link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/data/counter" {
		t.Errorf("symlink entry = %+v", h)
	}
	for _, absent := range []string{"etc/hosts", "etc/motd", "data/sock"} {
		if _, ok := hdrs[absent]; ok {
			t.Errorf("diff has %s", absent)
		}
	}
	for _, dir := range []string{"data/", "etc/", "root/"} {
		if h := hdrs[dir]; h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("diff lacks directory %s", dir)
		}
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Write(cancelled, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context = %v", err)
	}
}

func TestAssemble(t *testing.T) {
	upper := upperFixture(t)
	logPath := filepath.Join(t.TempDir(), "c.log")
	if err := os.WriteFile(logPath, []byte("2026-01-01T00:00:00Z stdout F hello\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{Version: "1.0.2", Annotations: map[string]string{"io.kubernetes.cri.container-name": "counter"}}
	for _, tc := range []struct {
		name    string
		logPath string
		wantLog bool
	}{
		{"with log", logPath, true},
		{"log gone", filepath.Join(t.TempDir(), "missing.log"), false},
		{"no log", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := Assemble(context.Background(), dir, Contents{
				Config: metadata.ContainerConfig{ID: "abc", Name: "counter", OCIRuntime: "runc"},
				Spec:   spec, Status: map[string]string{"id": "abc"},
				Rootfs: RootfsDiff{Upper: upper, Merged: upper}, LogPath: tc.logPath,
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{metadata.ConfigDumpFile, metadata.DeletedFilesFile, metadata.RootFsDiffTar, metadata.SpecDumpFile, metadata.StatusDumpFile}
			if tc.wantLog {
				want = append(want, ContainerLogFile)
				sort.Strings(want)
			}
			if got := dirNames(t, dir); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("assembled %v, want %v", got, want)
			}
			for _, n := range want {
				fi, err := os.Stat(filepath.Join(dir, n))
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, %v; want 0600", n, fi.Mode().Perm(), err)
				}
			}
			gotSpec, _, err := metadata.ReadContainerCheckpointSpecDump(dir)
			if err != nil || gotSpec.Annotations["io.kubernetes.cri.container-name"] != "counter" {
				t.Errorf("spec.dump = %+v, %v", gotSpec, err)
			}
			cfg, _, err := metadata.ReadContainerCheckpointConfigDump(dir)
			if err != nil || cfg.ID != "abc" || cfg.OCIRuntime != "runc" {
				t.Errorf("config.dump = %+v, %v", cfg, err)
			}
			deleted, _, err := metadata.ReadContainerCheckpointDeletedFiles(dir)
			if err != nil || strings.Join(deleted, ",") != "/etc/motd" {
				t.Errorf("deleted.files = %v, %v", deleted, err)
			}
			var status map[string]string
			if b, err := os.ReadFile(filepath.Join(dir, metadata.StatusDumpFile)); err != nil || json.Unmarshal(b, &status) != nil || status["id"] != "abc" {
				t.Errorf("status.dump = %s, %v", b, err)
			}
		})
	}
	// A layer that cannot be read fails the assembly.
	err := Assemble(context.Background(), t.TempDir(), Contents{Spec: spec, Rootfs: RootfsDiff{Upper: filepath.Join(t.TempDir(), "gone")}})
	if err == nil {
		t.Error("Assemble of a missing upper dir succeeded")
	}
}

func TestProbe(t *testing.T) {
	missing := NewProbe(filepath.Join(t.TempDir(), "criu"))
	err := missing.Check()
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("probe of a missing criu = %v, want FailedPrecondition saying it is not installed", err)
	}
	if missing.Check() != err {
		t.Error("the probe's answer is not kept")
	}
	bin, err := exec.LookPath("criu")
	if err != nil {
		t.Skip("criu is not installed here: only the missing case can be checked")
	}
	// The probe must agree with `criu check` itself on this node.
	checkErr := exec.Command(bin, "check").Run()
	got := NewProbe(bin).Check()
	switch {
	case checkErr == nil && got != nil:
		t.Errorf("criu check passes here, the probe says %v", got)
	case checkErr != nil && (!errdefs.IsFailedPrecondition(got) || !strings.Contains(got.Error(), "check` fails")):
		t.Errorf("criu check fails here (%v), the probe says %v", checkErr, got)
	}
	t.Logf("probe here: %v", got)
}

func TestCriuVersion(t *testing.T) {
	for v, want := range map[int]string{31600: "3.16", 31701: "3.17.1", 40000: "4.0"} {
		if got := criuVersion(v); got != want {
			t.Errorf("criuVersion(%d) = %s, want %s", v, got, want)
		}
	}
}

// A metacopy upper file holds no data: its content comes from the merged
// rootfs, opened without following a symlink out of it.
func TestRootfsDiffMetacopy(t *testing.T) {
	upper, merged, outside := t.TempDir(), t.TempDir(), t.TempDir()
	writeFiles(t, upper, map[string]string{"data/big": "", "esc/file": ""})
	writeFiles(t, merged, map[string]string{"data/big": "full content"})
	writeFiles(t, outside, map[string]string{"file": "host secret"})
	if err := os.Symlink(outside, filepath.Join(merged, "esc")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"data/big", "esc/file"} {
		if err := unix.Setxattr(filepath.Join(upper, f), metacopyXattr, nil, 0); err != nil {
			t.Skipf("cannot set %s here (needs root and trusted xattrs on %s): %v", metacopyXattr, upper, err)
		}
	}
	var buf bytes.Buffer
	_, err := RootfsDiff{Upper: upper, Merged: merged}.Write(context.Background(), &buf)
	if err == nil || !strings.Contains(err.Error(), "esc/file") {
		t.Errorf("a metacopy file behind a symlink in the merged rootfs: %v, want an error naming it", err)
	}
	if strings.Contains(buf.String(), "host secret") {
		t.Error("the diff read a file outside the rootfs")
	}
	if err := os.RemoveAll(filepath.Join(upper, "esc")); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if _, err := (RootfsDiff{Upper: upper, Merged: merged}).Write(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if _, files := tartest.Read(t, &buf); string(files["data/big"]) != "full content" {
		t.Errorf("metacopy file in the diff = %q, want the merged content", files["data/big"])
	}
}

// chain makes a directory dir/d/d/... depth levels deep, with a file f at
// every level holding its depth, and returns the deepest directory's path
// relative to dir. It goes down by descriptor: the path is longer than a
// path-based mkdir takes.
func chain(t *testing.T, dir string, depth int) string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for level := 0; level <= depth; level++ {
		f, err := unix.Openat(fd, "f", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err == nil {
			_, err = unix.Write(f, []byte(strconv.Itoa(level)))
			unix.Close(f)
		}
		if err == nil && level < depth {
			err = unix.Mkdirat(fd, "d", 0o700)
		}
		if err != nil {
			unix.Close(fd)
			t.Fatalf("level %d: %v", level, err)
		}
		if level < depth {
			next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			unix.Close(fd)
			if err != nil {
				t.Fatal(err)
			}
			fd = next
		}
	}
	unix.Close(fd)
	return strings.TrimSuffix(strings.Repeat("d/", depth), "/")
}

// A tree far deeper than the descriptors crid may hold is read whole:
// the walk holds a bounded number of them, and comes back up through
// directories it had to close (every level's f is read after its d).
// One path longer than PATH_MAX fails the diff with FailedPrecondition
// naming the limit.
func TestRootfsDiffDeepTree(t *testing.T) {
	upper := t.TempDir()
	const depth = 2047 // the deepest f, "d/"*2047+"f", is 4095 bytes
	deepest := chain(t, upper, depth)

	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 64
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	start := time.Now()
	_, err := RootfsDiff{Upper: upper, Merged: upper}.Write(context.Background(), &buf)
	if rerr := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("diff of a %d-level tree with 64 descriptors: %v", depth, err)
	}
	t.Logf("%d levels in %v, %d bytes of tar", depth, time.Since(start), buf.Len())
	hdrs, files := tartest.Read(t, &buf)
	if len(hdrs) != 2*depth+1 {
		t.Errorf("diff has %d entries, want %d", len(hdrs), 2*depth+1)
	}
	for level, dir := 0, ""; level <= depth; level++ {
		if got := string(files[dir+"f"]); got != strconv.Itoa(level) {
			t.Fatalf("%sf = %q, want %d", dir, got, level)
		}
		if level < depth {
			dir += "d/"
			if h := hdrs[dir]; h == nil || h.Typeflag != tar.TypeDir {
				t.Fatalf("diff lacks directory %s", dir)
			}
		}
	}

	// One more directory at the bottom, ddd: a path of 4097 bytes.
	fd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Split(deepest, "/") {
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	err = unix.Mkdirat(fd, "ddd", 0o700)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	_, err = RootfsDiff{Upper: upper, Merged: upper}.Write(context.Background(), io.Discard)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "4097 bytes") || !strings.Contains(err.Error(), "4096") || !strings.Contains(err.Error(), "d/d/d") {
		t.Errorf("diff of a path over PATH_MAX = %v, want FailedPrecondition naming the limit and the path", err)
	}
}

// A running container that swaps directories for symlinks to the host
// while the walk reads cannot make it read through them: not a directory
// the walk closed (the tree is deeper than the descriptors it holds) and
// opens again on its way back, nor one not visited yet. A closed
// directory swapped for another is not taken for the one it replaced;
// the moved one is read where it went (c, not read yet).
func TestRootfsDiffSwappedDirs(t *testing.T) {
	for _, swap := range []string{"symlink", "directory"} {
		t.Run(swap, func(t *testing.T) {
			upper, outside := t.TempDir(), t.TempDir()
			writeFiles(t, upper, map[string]string{"a/z": "inside a", "b/z": "inside b", "c/keep": ""})
			deep := "a/" + chain(t, filepath.Join(upper, "a"), maxOpenDirs+8)
			writeFiles(t, outside, map[string]string{"z": "host secret", "f": "host secret", "d/f": "host secret", "d/z": "host secret"})
			// a, closed by the time the walk reads deep, is swapped; so is
			// b, not visited yet, for a symlink.
			moves := map[string]string{"a": swap}
			if swap == "symlink" {
				moves["b"] = swap
			}
			swapped := false
			dirRead := func(rel string) {
				if rel != deep || swapped {
					return
				}
				swapped = true
				for d, with := range moves {
					p := filepath.Join(upper, d)
					if err := os.Rename(p, filepath.Join(upper, "c", d)); err != nil {
						t.Error(err)
					}
					if with == "symlink" {
						if err := os.Symlink(outside, p); err != nil {
							t.Error(err)
						}
					} else {
						writeFiles(t, p, map[string]string{"z": "impostor", "f": "impostor", "d/f": "impostor"})
					}
				}
			}
			var buf bytes.Buffer
			if _, err := (RootfsDiff{Upper: upper, Merged: upper, dirRead: dirRead}).Write(context.Background(), &buf); err != nil {
				t.Fatal(err)
			}
			if !swapped {
				t.Fatal("the walk never read " + deep)
			}
			hdrs, files := tartest.Read(t, &buf)
			for name, content := range files {
				if bytes.Contains(content, []byte("host secret")) || bytes.Contains(content, []byte("impostor")) {
					t.Errorf("the diff read %s from the swapped-in %s: %q", name, swap, content)
				}
			}
			if _, ok := hdrs["a/z"]; ok {
				t.Error("a/z was read after a was replaced")
			}
			if string(files["c/a/z"]) != "inside a" || string(files["c/"+deep+"/f"]) != strconv.Itoa(maxOpenDirs+8) {
				t.Errorf("the moved a was not read where it went: c/a/z = %q", files["c/a/z"])
			}
			if swap == "symlink" {
				if h := hdrs["b"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != outside {
					t.Errorf("b, swapped for a symlink before it was visited = %+v, want the symlink", h)
				}
				if string(files["c/b/z"]) != "inside b" {
					t.Errorf("the moved b was not read where it went: c/b/z = %q", files["c/b/z"])
				}
			}
		})
	}
}
