package oci

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func idmap(c, h, l uint32) []*runtime.IDMapping {
	return []*runtime.IDMapping{{ContainerId: c, HostId: h, Length: l}}
}

func TestValidatePodUserNamespace(t *testing.T) {
	pod := func(ns *runtime.NamespaceOption) *runtime.PodSandboxConfig {
		c := baseSandboxConfig()
		c.Linux.SecurityContext.NamespaceOptions = ns
		return c
	}
	userns := func(u *runtime.UserNamespace) *runtime.PodSandboxConfig {
		return pod(&runtime.NamespaceOption{UsernsOptions: u})
	}
	two := append(idmap(0, 1000, 100000), idmap(0, 2000, 100000)...)
	for _, tc := range []struct {
		name    string
		cfg     *runtime.PodSandboxConfig
		wantErr string
	}{
		{"absent", pod(nil), ""},
		{"node", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}), ""},
		{"pod", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 1000, 100000), Gids: idmap(0, 1000, 100000)}), ""},
		{"pod, uid and gid differ", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 65536, 65536), Gids: idmap(0, 131072, 65536)}), ""},
		{"node with mappings", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE, Uids: idmap(0, 1000, 10)}), "takes no uid/gid mappings"},
		{"container mode", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}), "not supported for pods"},
		{"target mode", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}), "not supported for pods"},
		{"two mappings", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: two, Gids: two}), "exactly one uid mapping"},
		{"no gid mapping", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 1000, 10)}), "exactly one gid mapping"},
		{"root not mapped", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: idmap(1, 1000, 100000), Gids: idmap(1, 1000, 100000)}), "container id 0"},
		{"empty mapping", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 1000, 0), Gids: idmap(0, 1000, 10)}), "length 0"},
		{"overflow", userns(&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 0xffff0000, 0x10000), Gids: idmap(0, 1000, 10)}), "exceeds"},
		{"host network", pod(&runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, UsernsOptions: &runtime.UserNamespace{
			Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 1000, 10), Gids: idmap(0, 1000, 10)}}), "host network"},
		{"host pid", pod(&runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE, UsernsOptions: &runtime.UserNamespace{
			Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 1000, 10), Gids: idmap(0, 1000, 10)}}), "host pid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePodUserNamespace(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want InvalidArgument with %q", err, tc.wantErr)
			}
		})
	}
}

func TestSandboxSpecUserns(t *testing.T) {
	cfg := baseSandboxConfig()
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{
		Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 1000, 100000), Gids: idmap(0, 2000, 65536),
	}
	p := SandboxParams{
		ID: "s1", Config: cfg, RootfsPath: writeRootfs(t), NetNSPath: "/run/netns/s1",
		Image: ocispec.ImageConfig{Entrypoint: []string{"/pause"}}, CgroupsPath: "/crid/s1",
	}
	if _, err := sandboxSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("without a namespace path: err = %v", err)
	}
	p.UsernsPath = "/proc/77/ns/user"
	s, err := sandboxSpec(p, testHost())
	if err != nil {
		t.Fatal(err)
	}
	if got := nsMap(s)[specs.UserNamespace]; got != "/proc/77/ns/user" {
		t.Errorf("user namespace path %q", got)
	}
	if want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 100000}}; !reflect.DeepEqual(s.Linux.UIDMappings, want) {
		t.Errorf("uid mappings %v", s.Linux.UIDMappings)
	}
	if want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 2000, Size: 65536}}; !reflect.DeepEqual(s.Linux.GIDMappings, want) {
		t.Errorf("gid mappings %v", s.Linux.GIDMappings)
	}
	// Mode NODE: no user namespace, no mappings.
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}
	s, err = sandboxSpec(p, testHost())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := nsMap(s)[specs.UserNamespace]; ok || s.Linux.UIDMappings != nil {
		t.Errorf("mode NODE got a user namespace: %v %v", s.Linux.Namespaces, s.Linux.UIDMappings)
	}
	// Invalid requests are refused by the spec too.
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}
	if _, err := sandboxSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("mode CONTAINER: err = %v", err)
	}
}

func TestContainerSpecUserns(t *testing.T) {
	podNS := &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 1000, 100000), Gids: idmap(0, 1000, 100000)}
	for _, tc := range []struct {
		name      string
		pod, ctr  *runtime.UserNamespace
		wantJoin  bool
		wantError string
	}{
		{name: "no userns anywhere"},
		{name: "pod userns, container copies it", pod: podNS, ctr: podNS, wantJoin: true},
		{name: "pod userns, container says nothing", pod: podNS, wantJoin: true},
		{name: "pod userns, container mode only", pod: podNS, ctr: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}, wantJoin: true},
		{name: "pod userns, container NODE", pod: podNS, ctr: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}, wantError: "differ"},
		{name: "pod userns, other mappings", pod: podNS, ctr: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: idmap(0, 5000, 10), Gids: idmap(0, 5000, 10)}, wantError: "mappings"},
		{name: "host pod, container POD", ctr: podNS, wantError: "differ"},
		{name: "host pod, container NODE", ctr: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := baseContainer(t)
			p.SandboxConfig.Linux.SecurityContext.NamespaceOptions.UsernsOptions = tc.pod
			p.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = tc.ctr
			s, err := containerSpec(p, testHost())
			if tc.wantError != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("err = %v, want %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			path, ok := nsMap(s)[specs.UserNamespace]
			if ok != tc.wantJoin {
				t.Fatalf("user namespace joined = %v, want %v", ok, tc.wantJoin)
			}
			if tc.wantJoin {
				if path != "/proc/4242/ns/user" {
					t.Errorf("joins %q", path)
				}
				if len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].HostID != 1000 || len(s.Linux.GIDMappings) != 1 {
					t.Errorf("mappings %v %v", s.Linux.UIDMappings, s.Linux.GIDMappings)
				}
			}
		})
	}
}
