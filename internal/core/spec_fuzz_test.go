package core

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/oci"
)

// The spec fuzzers take CRI configs as protobuf bytes, as kubelet sends
// them, through crid's validation and then spec generation. A request
// validation accepted must come out as a spec runc runs, or be refused
// with InvalidArgument before anything is created: runc's own refusal
// comes late (after the network is set up, or only at StartContainer)
// and unclassified.

// fuzzRootfs is a rootfs with the account files the specs resolve users in.
func fuzzRootfs(f *testing.F) string {
	root := f.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		f.Fatal(err)
	}
	files := map[string]string{
		"passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
		"group":  "root:x:0:\napp:x:1000:\nusers:x:100:app\nnogroup:x:65534:\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(root, "etc", n), []byte(c), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	return root
}

func seedSandboxConfig() *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "3f1c0b3e-1", Attempt: 0},
		Hostname:     "web",
		LogDirectory: "/var/log/pods/default_web_3f1c0b3e-1",
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}, Options: []string{"ndots:5"}},
		PortMappings: []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"}},
		Labels:       map[string]string{"app": "web"},
		Annotations:  map[string]string{"kubernetes.io/config.seen": "2024-01-01T00:00:00Z"},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/besteffort/pod3f1c0b3e-1",
			Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"},
			SecurityContext: &runtime.LinuxSandboxSecurityContext{
				NamespaceOptions:   &runtime.NamespaceOption{Network: runtime.NamespaceMode_POD, Pid: runtime.NamespaceMode_CONTAINER, Ipc: runtime.NamespaceMode_POD},
				RunAsUser:          &runtime.Int64Value{Value: 65534},
				RunAsGroup:         &runtime.Int64Value{Value: 65534},
				SupplementalGroups: []int64{100},
				Seccomp:            &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
			},
		},
	}
}

func seedContainerConfig() *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata:   &runtime.ContainerMetadata{Name: "nginx", Attempt: 1},
		Image:      &runtime.ImageSpec{Image: "docker.io/library/nginx:1.27"},
		Command:    []string{"/bin/sh", "-c"},
		Args:       []string{"exec nginx -g 'daemon off;'"},
		WorkingDir: "/usr/share/nginx",
		Envs:       []*runtime.KeyValue{{Key: "KUBERNETES_SERVICE_HOST", Value: []byte("10.96.0.1")}, {Key: "MODE", Value: []byte("a=b")}},
		Mounts: []*runtime.Mount{
			{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: "/var/lib/kubelet/pods/x/volumes/token", Readonly: true},
			{ContainerPath: "/dev/termination-log", HostPath: "/var/lib/kubelet/pods/x/containers/nginx/abc", Propagation: runtime.MountPropagation_PROPAGATION_PRIVATE},
		},
		Devices:     []*runtime.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/null", Permissions: "rwm"}},
		Labels:      map[string]string{"io.kubernetes.container.name": "nginx"},
		Annotations: map[string]string{"io.kubernetes.container.hash": "1"},
		LogPath:     "nginx/1.log",
		Tty:         false,
		Linux: &runtime.LinuxContainerConfig{
			Resources: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 1000, CpusetCpus: "0"},
			SecurityContext: &runtime.LinuxContainerSecurityContext{
				Capabilities:       &runtime.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"ALL"}},
				RunAsUser:          &runtime.Int64Value{Value: 1000},
				RunAsGroup:         &runtime.Int64Value{Value: 1000},
				SupplementalGroups: []int64{100, 4},
				ReadonlyRootfs:     true,
				NoNewPrivs:         true,
				MaskedPaths:        []string{"/proc/kcore", "/proc/keys"},
				ReadonlyPaths:      []string{"/proc/sys"},
				NamespaceOptions:   &runtime.NamespaceOption{Network: runtime.NamespaceMode_POD, Pid: runtime.NamespaceMode_CONTAINER, Ipc: runtime.NamespaceMode_POD},
				Seccomp:            &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
			},
		},
	}
}

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzSandboxSpec: a pod config validateSandboxConfig accepts must make a
// pause spec (spec generation runs after the network is set up), and that
// spec must be one runc accepts.
func FuzzSandboxSpec(f *testing.F) {
	rootfs := fuzzRootfs(f)
	seed := seedSandboxConfig()
	f.Add(mustMarshal(f, seed))
	host := proto.Clone(seed).(*runtime.PodSandboxConfig)
	host.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE}
	host.Linux.SecurityContext.Privileged = true
	host.Linux.Sysctls = nil
	f.Add(mustMarshal(f, host))
	userns := proto.Clone(seed).(*runtime.PodSandboxConfig)
	userns.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
		Uids: []*runtime.IDMapping{{HostId: 65536, ContainerId: 0, Length: 65536}}, Gids: []*runtime.IDMapping{{HostId: 65536, ContainerId: 0, Length: 65536}}}
	f.Add(mustMarshal(f, userns))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := &runtime.PodSandboxConfig{}
		if proto.Unmarshal(b, cfg) != nil {
			return
		}
		if err := validateSandboxConfig(cfg); err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("validation refused with a non-InvalidArgument error: %v", err)
			}
			return
		}
		netns := "/var/run/netns/fuzz"
		if hostNetwork(cfg) {
			netns = ""
		}
		spec, err := oci.SandboxSpec(oci.SandboxParams{
			ID: "fuzzpod", Config: cfg, RootfsPath: rootfs, NetNSPath: netns,
			Image:       ocispec.ImageConfig{Entrypoint: []string{"/pause"}},
			CgroupsPath: oci.CgroupsPath("cgroupfs", cfg.GetLinux().GetCgroupParent(), "fuzzpod"),
			UsernsPath:  usernsPathFor(cfg),
		})
		if err != nil {
			t.Fatalf("validateSandboxConfig accepted the config, SandboxSpec refused it: %v\nconfig: %v", err, cfg)
		}
		if problems := runcRefusals(spec); len(problems) > 0 {
			t.Fatalf("spec runc would refuse: %s\nconfig: %v", strings.Join(problems, "; "), cfg)
		}
	})
}

func usernsPathFor(cfg *runtime.PodSandboxConfig) string {
	if oci.PodUserNamespace(cfg) != nil {
		return "/var/run/userns/fuzz"
	}
	return ""
}

// FuzzContainerSpec: for a container of a pod validation accepted, with a
// fuzzed image config (the image is untrusted too), ContainerSpec either
// refuses with InvalidArgument or makes a spec runc accepts.
func FuzzContainerSpec(f *testing.F) {
	rootfs := fuzzRootfs(f)
	sb := mustMarshal(f, seedSandboxConfig())
	img := []byte(`{"User":"app","Env":["PATH=/usr/bin:/bin","LANG=C.UTF-8"],"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx"],"WorkingDir":"/app","StopSignal":"SIGQUIT"}`)
	seed := seedContainerConfig()
	f.Add(sb, mustMarshal(f, seed), img)
	bare := &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: "busybox"}}
	f.Add(sb, mustMarshal(f, bare), img)
	priv := proto.Clone(seed).(*runtime.ContainerConfig)
	priv.Linux.SecurityContext.Privileged = true
	privSb := seedSandboxConfig()
	privSb.Linux.SecurityContext.Privileged = true
	f.Add(mustMarshal(f, privSb), mustMarshal(f, priv), []byte(`{}`))
	f.Fuzz(func(t *testing.T, sbBytes, cBytes, imgJSON []byte) {
		sbCfg, cfg := &runtime.PodSandboxConfig{}, &runtime.ContainerConfig{}
		if proto.Unmarshal(sbBytes, sbCfg) != nil || proto.Unmarshal(cBytes, cfg) != nil {
			return
		}
		var image ocispec.ImageConfig
		if json.Unmarshal(imgJSON, &image) != nil {
			return
		}
		if validateSandboxConfig(sbCfg) != nil {
			return
		}
		// Spec generation creates missing host paths of bind mounts: keep
		// them inside a temp dir, never on the host.
		hostDir := t.TempDir()
		for _, m := range cfg.GetMounts() {
			if m.GetHostPath() != "" {
				m.HostPath = filepath.Join(hostDir, filepath.Clean("/"+m.GetHostPath()))
			}
		}
		sandboxPID := 1
		if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtime.NamespaceMode_TARGET {
			if validatePIDTarget(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(), "fuzzpod", "fuzzpod") != nil {
				return
			}
		}
		spec, err := oci.ContainerSpec(oci.ContainerParams{
			ID: "fuzzctr", SandboxID: "fuzzpod", Config: cfg, SandboxConfig: sbCfg, Image: image, ImageName: cfg.GetImage().GetImage(),
			RootfsPath: rootfs, SandboxPID: sandboxPID, TargetPID: sandboxPID, NetNSPath: "/var/run/netns/fuzz",
			CgroupsPath:  oci.CgroupsPath("cgroupfs", sbCfg.GetLinux().GetCgroupParent(), "fuzzctr"),
			ImageVolumes: imageVolumes(cfg),
		})
		if err != nil {
			if !errdefs.IsInvalidArgument(err) && !errdefs.IsNotFound(err) {
				t.Fatalf("ContainerSpec refused with an unclassified error: %v", err)
			}
			return
		}
		if problems := runcRefusals(spec); len(problems) > 0 {
			t.Fatalf("ContainerSpec made a spec runc would refuse: %s\nconfig: %v\nimage: %s", strings.Join(problems, "; "), cfg, imgJSON)
		}
	})
}

// imageVolumes gives every image mount of cfg a host dir, as
// createContainer does once the images are mounted.
func imageVolumes(cfg *runtime.ContainerConfig) map[int]string {
	out := map[int]string{}
	for i, m := range cfg.GetMounts() {
		if m.GetImage() != nil {
			out[i] = "/var/lib/crid/imagevolumes/" + fmt.Sprint(i)
		}
	}
	return out
}

// maxID is the largest valid uid/gid: setuid(-1) changes nothing.
const maxID = 1<<32 - 2

// runcRefusals lists what runc (1.2+) refuses in s, at create or at start,
// or what the kernel refuses when runc applies it (a NUL byte in a path,
// argument or sysctl is EINVAL to the system call; annotations and the
// hostname are passed as bytes and may hold one).
func runcRefusals(s *specs.Spec) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	nul := func(s string) bool { return strings.IndexByte(s, 0) >= 0 }
	p := s.Process
	if p == nil || s.Root == nil || s.Linux == nil {
		return []string{"spec without process, root or linux"}
	}
	if len(p.Args) == 0 {
		bad("no args")
	}
	for _, a := range p.Args {
		if nul(a) {
			bad("arg %q has a NUL byte (execve: invalid argument)", a)
		}
	}
	if !filepath.IsAbs(p.Cwd) || nul(p.Cwd) {
		bad("cwd %q is not an absolute path", p.Cwd)
	}
	for _, e := range p.Env {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" || nul(k) || nul(v) {
			bad("env %q is not NAME=value", e)
		}
	}
	if p.User.UID > maxID || p.User.GID > maxID {
		bad("user %d:%d is (uid_t)-1, which setuid/setgid take as 'unchanged'", p.User.UID, p.User.GID)
	}
	for _, g := range p.User.AdditionalGids {
		if g > maxID {
			bad("supplemental gid %d is (gid_t)-1", g)
		}
	}
	if p.OOMScoreAdj != nil && (*p.OOMScoreAdj < -1000 || *p.OOMScoreAdj > 1000) {
		bad("oom_score_adj %d out of [-1000, 1000]", *p.OOMScoreAdj)
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range s.Linux.Namespaces {
		if seen[ns.Type] {
			bad("namespace %s twice", ns.Type)
		}
		seen[ns.Type] = true
	}
	if s.Hostname != "" && !seen[specs.UTSNamespace] {
		bad("hostname %q without a UTS namespace", s.Hostname)
	}
	for _, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) || nul(m.Destination) || nul(m.Source) || nul(m.Type) {
			bad("mount %q -> %q", m.Source, m.Destination)
		}
		for _, o := range m.Options {
			if nul(o) {
				bad("mount %q option %q has a NUL byte", m.Destination, o)
			}
		}
	}
	for _, d := range s.Linux.Devices {
		if !filepath.IsAbs(d.Path) || nul(d.Path) {
			bad("device path %q", d.Path)
		}
	}
	// runc accepts relative masked and read-only paths; a NUL it cannot.
	for _, list := range [][]string{s.Linux.MaskedPaths, s.Linux.ReadonlyPaths} {
		for _, mp := range list {
			if nul(mp) {
				bad("masked/readonly path %q", mp)
			}
		}
	}
	for k, v := range s.Linux.Sysctl {
		if nul(k) || nul(v) {
			bad("sysctl %q=%q has a NUL byte", k, v)
		}
		if ns := oci.SysctlNamespace(k); ns == "net" && !seen[specs.NetworkNamespace] || ns == "ipc" && !seen[specs.IPCNamespace] {
			bad("sysctl %q outside its namespace", k)
		}
	}
	return out
}
