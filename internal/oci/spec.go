// Package oci generates OCI runtime specs for pod sandboxes (pause
// containers) and containers from their CRI configs and image configs.
package oci

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// SandboxParams is what a pause container's spec is made from.
type SandboxParams struct {
	ID     string
	Config *runtime.PodSandboxConfig
	Image  ocispec.ImageConfig // the pause image's config
	// RootfsPath is the mounted root filesystem.
	RootfsPath string
	// NetNSPath is the pinned network namespace; "" with host network.
	NetNSPath string
	// Files crid prepared for the pod, bind-mounted into it. Empty = none.
	ResolvConfPath, HostsPath, HostnamePath string
	// ShmPath is the pod's /dev/shm mount source; "" = private tmpfs.
	ShmPath string
	// CgroupsPath as the runtime expects it (cgroupfs path or systemd slice:prefix:name).
	CgroupsPath string
	// MinOOMScoreAdj is the lowest oom_score_adj crid may set; lower requests are clamped.
	MinOOMScoreAdj int
}

// ContainerParams is what a container's spec is made from.
type ContainerParams struct {
	ID, SandboxID string
	Config        *runtime.ContainerConfig
	SandboxConfig *runtime.PodSandboxConfig
	Image         ocispec.ImageConfig
	ImageName     string // for annotations
	RootfsPath    string
	// SandboxPID is the pause process; its ipc/uts/pid namespaces are joined via /proc/<pid>/ns.
	SandboxPID int
	NetNSPath  string // "" with host network
	ResolvConfPath, HostsPath, HostnamePath, ShmPath string
	CgroupsPath    string
	MinOOMScoreAdj int
}

// SandboxSpec builds the pause container's spec. Invalid input is an
// error wrapping errdefs.ErrInvalidArgument.
func SandboxSpec(p SandboxParams) (*specs.Spec, error) { panic("not implemented") }

// ContainerSpec builds a container's spec: command/args/env/workdir merged
// with the image config, user from the image's /etc/passwd and /etc/group,
// mounts, capabilities, masked/read-only paths, seccomp, resources.
// Invalid input is an error wrapping errdefs.ErrInvalidArgument.
func ContainerSpec(p ContainerParams) (*specs.Spec, error) { panic("not implemented") }

// ResourcesFromCRI converts CRI Linux resources (used by UpdateContainerResources).
func ResourcesFromCRI(r *runtime.LinuxContainerResources, minOOMScoreAdj int) *specs.LinuxResources {
	panic("not implemented")
}

// CgroupsPath is the cgroupsPath for container id under parent with driver "cgroupfs" or "systemd".
func CgroupsPath(driver, parent, id string) string { panic("not implemented") }
