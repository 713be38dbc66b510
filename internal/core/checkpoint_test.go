package core

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/runc"
)

// A handler checkpoints only if its runtime says it is runc or crun.
func TestCheckpointRuntime(t *testing.T) {
	for _, tc := range []struct {
		name, version string // what `--version` prints; "" fails
		want          string // runtime name; "" for a refusal
		refusal       string
	}{
		{"runc", "runc version 1.5.3\ncommit: v1.5.3", "runc", ""},
		{"crun", "crun version 1.8.1\ncommit: x\n+SYSTEMD +SECCOMP", "crun", ""},
		{"runsc", "runsc version release-20250101.0", "", `runs "runsc version release-20250101.0"`},
		{"silent", "", "", "does not say what it is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := "#!/bin/sh\nexit 1\n"
			if tc.version != "" {
				script = "#!/bin/sh\nprintf '%s\\n' '" + strings.ReplaceAll(tc.version, "\n", "' '") + "'\n"
			}
			path := filepath.Join(t.TempDir(), "rt")
			if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			s := &Service{
				cfg:       &config.Config{Runtime: config.Runtime{DefaultHandler: "h"}},
				runtimes:  map[string]*runc.Runtime{"h": {Name: "h", Path: path}},
				sandboxes: map[string]*sandbox{},
			}
			_, name, err := s.checkpointRuntime(context.Background(), containerRecord{ID: "c1", SandboxID: "p1"})
			if tc.want != "" {
				if err != nil || name != tc.want {
					t.Errorf("checkpointRuntime = %q, %v; want %q", name, err, tc.want)
				}
				return
			}
			if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), tc.refusal) || !strings.Contains(err.Error(), "handler h") {
				t.Errorf("checkpointRuntime = %v, want FailedPrecondition naming handler h and %q", err, tc.refusal)
			}
		})
	}
}

func TestRefuseRestore(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "c.tar")
	if err := os.WriteFile(archive, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := refuseRestore(archive); !errdefs.IsNotImplemented(err) {
		t.Errorf("refuseRestore(archive) = %v, want NotImplemented", err)
	}
	for _, image := range []string{"busybox", "registry.k8s.io/pause:3.10", filepath.Join(t.TempDir(), "missing.tar"), t.TempDir()} {
		if err := refuseRestore(image); err != nil {
			t.Errorf("refuseRestore(%q) = %v, want nil", image, err)
		}
	}
}
