package runc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"json error", `{"level":"error","msg":"container does not exist","time":"x"}`, "container does not exist"},
		{"json warning ignored", "{\"level\":\"warning\",\"msg\":\"meh\"}\n{\"level\":\"error\",\"msg\":\"boom\"}", "boom"},
		{"json and plain duplicate", "{\"level\":\"error\",\"msg\":\"boom\"}\nboom\n", "boom"},
		{"plain only", "container not running\n", "container not running"},
		{"two errors", "{\"level\":\"error\",\"msg\":\"a\"}\n{\"level\":\"fatal\",\"msg\":\"b\"}", "a; b"},
		{"same error twice", "{\"level\":\"error\",\"msg\":\"a\"}\n{\"level\":\"error\",\"msg\":\"a\"}", "a"},
		{"empty", "", ""},
		{"only warnings", `{"level":"warning","msg":"w"}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorMessage([]byte(tc.in)); got != tc.want {
				t.Errorf("ErrorMessage(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// The calls below only need the runtime binary, no container.
func testRuntime(t *testing.T) *Runtime {
	t.Helper()
	path, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc not installed: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("these tests run runc and need root")
	}
	return &Runtime{Name: "runc", Path: path, Root: t.TempDir()}
}

func TestMissingContainer(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	if _, err := r.State(ctx, "nosuch"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("State: %v, want ErrNotFound", err)
	}
	if err := r.Kill(ctx, "nosuch", 9, false); err != nil {
		t.Errorf("Kill of a missing container: %v, want nil", err)
	}
	if err := r.Delete(ctx, "nosuch", true); err != nil {
		t.Errorf("Delete of a missing container: %v, want nil", err)
	}
	err := r.Start(ctx, "nosuch")
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Start: %v, want ErrNotFound", err)
	}
}

func TestVersionAndFeatures(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	v, err := r.VersionInfo(ctx)
	if err != nil || v.Runtime != "runc" || v.Version == "" {
		t.Fatalf("VersionInfo = %+v, %v", v, err)
	}
	if _, err := ParseVersion(v.Version); err != nil {
		t.Errorf("installed runc's version does not parse: %v", err)
	}
	t.Logf("version: %s", v.Line)
	// The cached answer stays even if the binary goes away.
	r.Path = "/nonexistent/runc"
	if v2, err := r.VersionInfo(ctx); err != nil || v2.Line != v.Line {
		t.Errorf("second VersionInfo call not served from cache: %+v, %v", v2, err)
	}
	r.Path = testRuntime(t).Path
	f, err := r.Features(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.OCIVersionMin == "" || len(f.MountOptions) == 0 || f.Linux == nil || len(f.Linux.Namespaces) == 0 {
		t.Errorf("features look empty: %+v", f)
	}
	f2, err := r.Features(ctx)
	if err != nil || f2 != f {
		t.Errorf("second Features call not served from cache: %p %p %v", f, f2, err)
	}
}

// TestDeleteExited: a stopped container is deleted without --force (runc
// 1.2+ spends ~100 ms in a forced delete of a stopped one); one the
// runtime refuses to delete plainly is deleted with --force.
func TestDeleteExited(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	// A runtime that refuses a plain delete of "running" and logs its calls.
	script := "#!/bin/sh\necho \"$*\" >> " + calls + "\n" +
		"case \"$*\" in *'delete running') echo 'cannot delete container running that is not stopped: running' >&2; exit 1;; esac\n"
	bin := filepath.Join(dir, "runc")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{Name: "runc", Path: bin, Root: dir}
	for _, tc := range []struct {
		id   string
		want []string
	}{
		{"stopped", []string{"delete stopped"}},
		{"running", []string{"delete running", "delete --force running"}},
	} {
		_ = os.Remove(calls)
		if err := r.DeleteExited(context.Background(), tc.id); err != nil {
			t.Fatalf("DeleteExited(%s): %v", tc.id, err)
		}
		b, err := os.ReadFile(calls)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			got = append(got, strings.TrimPrefix(l, "--log-format json --root "+dir+" "))
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("DeleteExited(%s) ran %q, want %q", tc.id, got, tc.want)
		}
	}
}

// TestSystemdCgroupFlag: with the systemd cgroup driver every runtime
// command gets --systemd-cgroup, without it none does; runc's cgroupfs
// driver would take the spec's slice:prefix:name for a directory name.
func TestSystemdCgroupFlag(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	bin := filepath.Join(dir, "runc")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"$*\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, systemd := range []bool{true, false} {
		_ = os.Remove(calls)
		r := &Runtime{Name: "runc", Path: bin, Root: dir, SystemdCgroup: systemd}
		if err := r.Kill(context.Background(), "c1", 15, false); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(calls)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), "--systemd-cgroup"); got != systemd {
			t.Errorf("SystemdCgroup %v: ran %q", systemd, b)
		}
	}
}
