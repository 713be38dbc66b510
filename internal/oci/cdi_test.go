package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCDIDevices(t *testing.T) {
	tests := []struct {
		name        string
		devices     []string
		annotations map[string]string
		want        []string
		wantErr     bool
	}{
		{name: "none"},
		{name: "field", devices: []string{"vendor.com/gpu=0", "vendor.com/gpu=1"}, want: []string{"vendor.com/gpu=0", "vendor.com/gpu=1"}},
		{
			name:        "annotations sorted by key after the field, duplicates dropped",
			devices:     []string{"vendor.com/gpu=0"},
			annotations: map[string]string{"cdi.k8s.io/z": "vendor.com/nic=a", "cdi.k8s.io/a": "vendor.com/gpu=0,vendor.com/gpu=2", "other": "x"},
			want:        []string{"vendor.com/gpu=0", "vendor.com/gpu=2", "vendor.com/nic=a"},
		},
		{name: "unqualified field name", devices: []string{"gpu0"}, wantErr: true},
		{name: "unqualified annotation value", annotations: map[string]string{"cdi.k8s.io/x": "gpu0"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &runtime.ContainerConfig{Annotations: tc.annotations}
			for _, d := range tc.devices {
				cfg.CDIDevices = append(cfg.CDIDevices, &runtime.CDIDevice{Name: d})
			}
			got, err := CDIDevices(cfg)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

const cdiTestJSON = `{
  "cdiVersion": "0.6.0",
  "kind": "example.com/null",
  "devices": [
    {"name": "a", "containerEdits": {
      "env": ["CDI_A=1"],
      "deviceNodes": [{"path": "/dev/cdi-null", "hostPath": "/dev/null"}],
      "mounts": [{"hostPath": "/etc/hostname", "containerPath": "/etc/cdi-hostname", "options": ["ro", "bind"]}]
    }},
    {"name": "b", "containerEdits": {"env": ["CDI_B=1"]}}
  ],
  "containerEdits": {
    "env": ["CDI_VENDOR=example"],
    "hooks": [{"hookName": "createContainer", "path": "/bin/true", "args": ["true", "cdi"]}]
  }
}`

const cdiTestYAML = `cdiVersion: "0.6.0"
kind: example.com/zero
devices:
- name: z
  containerEdits:
    deviceNodes:
    - path: /dev/cdi-zero
      hostPath: /dev/zero
      permissions: r
`

// cdiDir writes spec files into a fresh dir.
func cdiDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestApplyCDI(t *testing.T) {
	dir := cdiDir(t, map[string]string{"null.json": cdiTestJSON, "zero.yaml": cdiTestYAML})
	s := mustContainer(t, baseContainer(t))
	mountsBefore := len(s.Mounts)
	if err := ApplyCDI(s, []string{"example.com/null=a", "example.com/zero=z"}, []string{"/nonexistent-cdi-dir", dir}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"CDI_A=1", "CDI_VENDOR=example"} {
		if !slices.Contains(s.Process.Env, e) {
			t.Errorf("env %s missing: %v", e, s.Process.Env)
		}
	}
	if slices.Contains(s.Process.Env, "CDI_B=1") {
		t.Error("env of a device not asked for was applied")
	}
	devs := map[string]specs.LinuxDevice{}
	for _, d := range s.Linux.Devices {
		devs[d.Path] = d
	}
	if d, ok := devs["/dev/cdi-null"]; !ok || d.Type != "c" || d.Major != 1 || d.Minor != 3 {
		t.Errorf("/dev/cdi-null = %+v (present %v)", d, ok)
	}
	if d, ok := devs["/dev/cdi-zero"]; !ok || d.Major != 1 || d.Minor != 5 {
		t.Errorf("/dev/cdi-zero = %+v (present %v)", d, ok)
	}
	// The device cgroup must let the container use the nodes, with the
	// spec's permissions.
	allowed := map[int64]string{}
	for _, r := range s.Linux.Resources.Devices {
		if r.Allow && r.Type == "c" && r.Major != nil && *r.Major == 1 && r.Minor != nil {
			allowed[*r.Minor] = r.Access
		}
	}
	if allowed[3] != "rwm" || allowed[5] != "r" {
		t.Errorf("device cgroup rules for 1:3 / 1:5 = %q / %q", allowed[3], allowed[5])
	}
	m := mountByDest(s, "/etc/cdi-hostname")
	if len(m) != 1 || m[0].Source != "/etc/hostname" || !slices.Contains(m[0].Options, "ro") {
		t.Errorf("CDI mount = %+v", m)
	}
	if len(s.Mounts) != mountsBefore+1 {
		t.Errorf("mounts %d -> %d, want one more", mountsBefore, len(s.Mounts))
	}
	if s.Hooks == nil || len(s.Hooks.CreateContainer) != 1 || s.Hooks.CreateContainer[0].Path != "/bin/true" {
		t.Errorf("hooks = %+v", s.Hooks)
	}
}

func TestApplyCDIErrors(t *testing.T) {
	missingHost := strings.ReplaceAll(cdiTestYAML, "/dev/zero", "/dev/crid-missing-device")
	tests := []struct {
		name    string
		files   map[string]string
		devices []string
		noDirs  bool
		want    error
		msg     string // substring of the error
	}{
		{name: "unknown device", files: map[string]string{"null.json": cdiTestJSON}, devices: []string{"example.com/null=nope"}, want: errdefs.ErrInvalidArgument, msg: "example.com/null=nope"},
		{name: "broken spec named", files: map[string]string{"bad.json": `{"cdiVersion": "0.6.0", "kind": "example.com/bad", "devices": [{"name": "x"}]}`}, devices: []string{"example.com/bad=x"}, want: errdefs.ErrInvalidArgument, msg: "bad.json"},
		{name: "host device missing", files: map[string]string{"zero.yaml": missingHost}, devices: []string{"example.com/zero=z"}, want: errdefs.ErrFailedPrecondition, msg: "/dev/crid-missing-device"},
		{name: "no spec dirs", noDirs: true, devices: []string{"example.com/null=a"}, want: errdefs.ErrInvalidArgument, msg: "no CDI spec dirs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dirs := []string{cdiDir(t, tc.files)}
			if tc.noDirs {
				dirs = nil
			}
			s := mustContainer(t, baseContainer(t))
			err := ApplyCDI(s, tc.devices, dirs)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	// No devices: the spec dirs are not even read.
	s := mustContainer(t, baseContainer(t))
	if err := ApplyCDI(s, nil, nil); err != nil {
		t.Errorf("no devices: %v", err)
	}
}
