package oci

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testHost is a v1 host like the development machine: every capability
// but CAP_SYS_RESOURCE, swap accounting, no hugetlb, no AppArmor.
func testHost() hostFacts {
	return hostFacts{
		caps:           capsFromMask(0x1fffeffffff),
		swap:           true,
		apparmorLoaded: func(string) (bool, error) { return false, nil },
		hostname:       func() (string, error) { return "node-1", nil },
		hostDevices: func() ([]specs.LinuxDevice, error) {
			return []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}, {Path: "/dev/sda", Type: "b", Major: 8}}, nil
		},
		ensurePropagate: func(string, bool) error { return nil },
	}
}

// writeRootfs makes a rootfs with /etc/passwd and /etc/group.
func writeRootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := `root:x:0:0:root:/root:/bin/sh
# comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000::/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
broken line
`
	group := `root:x:0:
daemon:x:1:
wheel:x:10:root,alice
alice:x:1000:
bob:x:1001:
staff:x:50:alice, bob
audio:x:29:bob
`
	for name, body := range map[string]string{"etc/passwd": passwd, "etc/group": group} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func i64(v int64) *runtime.Int64Value { return &runtime.Int64Value{Value: v} }

func baseSandboxConfig() *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-1"},
		Hostname:     "web-pod",
		LogDirectory: "/var/log/pods/x",
		Annotations:  map[string]string{"team": "a"},
		Linux: &runtime.LinuxPodSandboxConfig{
			Sysctls:         map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{}},
		},
	}
}

func baseContainer(t *testing.T) ContainerParams {
	return ContainerParams{
		ID: "c1", SandboxID: "s1",
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "app"},
			Command:  []string{"/bin/app"},
			Linux: &runtime.LinuxContainerConfig{
				SecurityContext: &runtime.LinuxContainerSecurityContext{NamespaceOptions: &runtime.NamespaceOption{}},
			},
		},
		SandboxConfig: baseSandboxConfig(),
		ImageName:     "example.com/app:1",
		RootfsPath:    writeRootfs(t),
		SandboxPID:    4242,
		NetNSPath:     "/var/run/netns/cni-1",
		CgroupsPath:   "/crid/c1",
	}
}

func mustContainer(t *testing.T, p ContainerParams) *specs.Spec {
	t.Helper()
	s, err := containerSpec(p, testHost())
	if err != nil {
		t.Fatalf("containerSpec: %v", err)
	}
	return s
}

func TestProcessArgs(t *testing.T) {
	for _, tc := range []struct {
		name          string
		command, args []string
		ep, cmd       []string
		want          []string
		wantErr       bool
	}{
		{name: "image only", ep: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/ep", "a"}},
		{name: "image cmd only", cmd: []string{"/bin/sh", "-c", "x"}, want: []string{"/bin/sh", "-c", "x"}},
		{name: "command replaces entrypoint and cmd", command: []string{"/c"}, ep: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/c"}},
		{name: "command and args", command: []string{"/c"}, args: []string{"x"}, ep: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/c", "x"}},
		{name: "args replace cmd", args: []string{"x", "y"}, ep: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/ep", "x", "y"}},
		{name: "args without entrypoint", args: []string{"/bin/x"}, cmd: []string{"a"}, want: []string{"/bin/x"}},
		{name: "reset entrypoint", ep: []string{""}, cmd: []string{"/a"}, want: []string{"/a"}},
		{name: "nothing", wantErr: true},
		{name: "reset entrypoint and no cmd", ep: []string{""}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := processArgs(&runtime.ContainerConfig{Command: tc.command, Args: tc.args},
				ocispec.ImageConfig{Entrypoint: tc.ep, Cmd: tc.cmd})
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "no command specified") {
					t.Fatalf("err = %v, want invalid argument 'no command specified'", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// The spec builder reports it as a container config error.
	p := baseContainer(t)
	p.Config.Command = nil
	if _, err := containerSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "container config:") {
		t.Fatalf("err = %v", err)
	}
}

func TestEnvAndCwd(t *testing.T) {
	p := baseContainer(t)
	p.Image = ocispec.ImageConfig{Env: []string{"PATH=/img/bin", "A=1", "B=2"}, WorkingDir: "/srv"}
	p.Config.Envs = []*runtime.KeyValue{{Key: "B", Value: []byte("override")}, {Key: "C", Value: []byte("3=x")}}
	s := mustContainer(t, p)
	want := []string{"HOSTNAME=web-pod", "PATH=/img/bin", "A=1", "B=override", "C=3=x"}
	if !reflect.DeepEqual(s.Process.Env, want) {
		t.Errorf("env %q, want %q", s.Process.Env, want)
	}
	if s.Process.Cwd != "/srv" {
		t.Errorf("cwd %q", s.Process.Cwd)
	}

	p = baseContainer(t)
	p.SandboxConfig.Hostname = "" // host network pods may leave it empty
	p.Config.WorkingDir = "/work"
	p.Image.WorkingDir = "/srv"
	p.Config.Envs = []*runtime.KeyValue{{Key: "HOSTNAME", Value: []byte("mine")}}
	s = mustContainer(t, p)
	want = []string{"HOSTNAME=mine", defaultPathEnv}
	if !reflect.DeepEqual(s.Process.Env, want) {
		t.Errorf("env %q, want %q", s.Process.Env, want)
	}
	if s.Process.Cwd != "/work" {
		t.Errorf("cwd %q", s.Process.Cwd)
	}
	p.Config.WorkingDir, p.Image.WorkingDir = "", ""
	if s = mustContainer(t, p); s.Process.Cwd != "/" {
		t.Errorf("default cwd %q", s.Process.Cwd)
	}
	p.Config.Tty = true
	if s = mustContainer(t, p); !s.Process.Terminal {
		t.Error("tty not set")
	}
}

func TestResolveUser(t *testing.T) {
	root := writeRootfs(t)
	for _, tc := range []struct {
		name    string
		req     userRequest
		rootfs  string // "" = the test rootfs; "none" = no /etc files
		uid     uint32
		gid     uint32
		gids    []uint32
		wantErr string
	}{
		{name: "default root", uid: 0, gid: 0, gids: []uint32{0, 10}},
		{name: "image uid known", req: userRequest{image: "1000"}, uid: 1000, gid: 1000, gids: []uint32{10, 50, 1000}},
		{name: "image uid unknown", req: userRequest{image: "4321"}, uid: 4321, gid: 0, gids: []uint32{0}},
		{name: "image uid:gid", req: userRequest{image: "1000:77"}, uid: 1000, gid: 77, gids: []uint32{10, 50, 77}},
		{name: "image name", req: userRequest{image: "bob"}, uid: 1001, gid: 1001, gids: []uint32{29, 50, 1001}},
		{name: "image name:group", req: userRequest{image: "bob:wheel"}, uid: 1001, gid: 10, gids: []uint32{10, 29, 50}},
		{name: "image unknown name", req: userRequest{image: "carol"}, wantErr: `user "carol" not found`},
		{name: "image unknown group", req: userRequest{image: "bob:nogroup"}, wantErr: `group "nogroup" not found`},
		{name: "run_as_user overrides image", req: userRequest{image: "bob", uid: ptr(int64(1000))}, uid: 1000, gid: 1000, gids: []uint32{10, 50, 1000}},
		{name: "run_as_user + run_as_group", req: userRequest{uid: ptr(int64(1000)), gid: ptr(int64(3000))}, uid: 1000, gid: 3000, gids: []uint32{10, 50, 3000}},
		{name: "run_as_username", req: userRequest{username: "alice", uid: ptr(int64(5))}, uid: 1000, gid: 1000, gids: []uint32{10, 50, 1000}},
		{name: "run_as_group alone", req: userRequest{image: "bob", gid: ptr(int64(5))}, wantErr: "run_as_group set without run_as_user or run_as_username"},
		{name: "negative uid", req: userRequest{uid: ptr(int64(-1))}, wantErr: "out of range"},
		{name: "supplemental merge", req: userRequest{uid: ptr(int64(1000)), supplemental: []int64{5000, 10}}, uid: 1000, gid: 1000, gids: []uint32{10, 50, 1000, 5000}},
		{name: "supplemental strict", req: userRequest{uid: ptr(int64(1000)), supplemental: []int64{5000}, strict: true}, uid: 1000, gid: 1000, gids: []uint32{1000, 5000}},
		{name: "no passwd numeric", rootfs: "none", req: userRequest{image: "1000:1000"}, uid: 1000, gid: 1000, gids: []uint32{1000}},
		{name: "no passwd name", rootfs: "none", req: userRequest{image: "alice"}, wantErr: `user "alice" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := root
			if tc.rootfs == "none" {
				r = t.TempDir()
			}
			u, err := resolveUser(r, tc.req)
			if tc.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want invalid argument containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != tc.uid || u.GID != tc.gid || !reflect.DeepEqual(u.AdditionalGids, tc.gids) {
				t.Fatalf("got uid %d gid %d gids %v; want %d %d %v", u.UID, u.GID, u.AdditionalGids, tc.uid, tc.gid, tc.gids)
			}
		})
	}
}

func TestPasswdSymlinkCannotEscape(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// An image pointing /etc/passwd at the host's must not make crid read it.
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveUser(root, userRequest{image: "root"}); err == nil {
		t.Fatal("resolved a user through a symlink leaving the rootfs")
	}
}

func ptr[T any](v T) *T { return &v }

func nsMap(s *specs.Spec) map[specs.LinuxNamespaceType]string {
	m := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		m[n.Type] = n.Path
	}
	return m
}

func TestContainerNamespaces(t *testing.T) {
	const (
		net = specs.NetworkNamespace
		ipc = specs.IPCNamespace
		uts = specs.UTSNamespace
		pid = specs.PIDNamespace
		mnt = specs.MountNamespace
	)
	for _, tc := range []struct {
		name      string
		opts      *runtime.NamespaceOption
		netns     string
		targetPID int
		want      map[specs.LinuxNamespaceType]string
		wantErr   string
	}{
		{name: "pod defaults", opts: &runtime.NamespaceOption{}, netns: "/run/netns/x",
			want: map[specs.LinuxNamespaceType]string{mnt: "", net: "/run/netns/x", uts: "/proc/4242/ns/uts", ipc: "/proc/4242/ns/ipc", pid: "/proc/4242/ns/pid"}},
		{name: "no netns path joins sandbox", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
			want: map[specs.LinuxNamespaceType]string{mnt: "", net: "/proc/4242/ns/net", uts: "/proc/4242/ns/uts", ipc: "/proc/4242/ns/ipc", pid: ""}},
		{name: "host everything", opts: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE},
			want: map[specs.LinuxNamespaceType]string{mnt: ""}},
		{name: "target", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: "other"}, netns: "/n", targetPID: 777,
			want: map[specs.LinuxNamespaceType]string{mnt: "", net: "/n", uts: "/proc/4242/ns/uts", ipc: "/proc/4242/ns/ipc", pid: "/proc/777/ns/pid"}},
		{name: "target not running", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: "other"}, wantErr: "not running"},
		{name: "target without id", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET}, targetPID: 1, wantErr: "without target_id"},
		{name: "userns pod", opts: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}}, wantErr: "user namespaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := baseContainer(t)
			p.NetNSPath = tc.netns
			p.TargetPID = tc.targetPID
			p.Config.Linux.SecurityContext.NamespaceOptions = tc.opts
			s, err := containerSpec(p, testHost())
			if tc.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := nsMap(s); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("namespaces %v, want %v", got, tc.want)
			}
			if s.Hostname != "" {
				t.Errorf("container sets hostname %q", s.Hostname)
			}
		})
	}
	// Without the sandbox pid, joins are impossible: say so.
	p := baseContainer(t)
	p.SandboxPID = 0
	if _, err := containerSpec(p, testHost()); err == nil || !strings.Contains(err.Error(), "sandbox pid") {
		t.Fatalf("err = %v", err)
	}
	// A pod without a pause (no shared PID namespace asked for) and a
	// container that leaves its options empty (PID mode POD): the
	// container gets what the pod asked for, not an error.
	for _, tc := range []struct {
		podPID runtime.NamespaceMode
		want   map[specs.LinuxNamespaceType]string
	}{
		{runtime.NamespaceMode_CONTAINER, map[specs.LinuxNamespaceType]string{mnt: "", net: "/n", uts: "/pins/uts", ipc: "/pins/ipc", pid: ""}},
		{runtime.NamespaceMode_NODE, map[specs.LinuxNamespaceType]string{mnt: "", net: "/n", uts: "/pins/uts", ipc: "/pins/ipc"}},
	} {
		p := baseContainer(t)
		p.SandboxPID = 0
		p.NetNSPath, p.UTSNSPath, p.IPCNSPath = "/n", "/pins/uts", "/pins/ipc"
		p.SandboxConfig.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: tc.podPID}}
		s, err := containerSpec(p, testHost())
		if err != nil {
			t.Fatalf("pod pid %v, container POD: %v", tc.podPID, err)
		}
		if got := nsMap(s); !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("pod pid %v, container POD: namespaces %v, want %v", tc.podPID, got, tc.want)
		}
	}
	// cgroup v2 hosts give unprivileged containers a cgroup namespace.
	h := testHost()
	h.unified = true
	s, err := containerSpec(baseContainer(t), h)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := nsMap(s)[specs.CgroupNamespace]; !ok {
		t.Error("no cgroup namespace on v2")
	}
}

func mountByDest(s *specs.Spec, dst string) []specs.Mount {
	var out []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination == dst {
			out = append(out, m)
		}
	}
	return out
}

func TestContainerMounts(t *testing.T) {
	hostDir := t.TempDir()
	target := filepath.Join(hostDir, "real")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(hostDir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(hostDir, "new", "dir")
	myHosts := filepath.Join(hostDir, "my-hosts")
	if err := os.WriteFile(myHosts, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	p := baseContainer(t)
	p.HostsPath, p.ResolvConfPath, p.HostnamePath, p.ShmPath = "/pod/hosts", "/pod/resolv", "/pod/hostname", "/pod/shm"
	p.Config.Mounts = []*runtime.Mount{
		{ContainerPath: "/data/sub", HostPath: target, Readonly: true},
		{ContainerPath: "/data", HostPath: link, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
		{ContainerPath: "/new", HostPath: missing, Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL},
		{ContainerPath: "/etc/hosts", HostPath: myHosts},
		{ContainerPath: "/rro", HostPath: target, Readonly: true, RecursiveReadOnly: true},
	}
	var checked []string
	h := testHost()
	h.ensurePropagate = func(p string, shared bool) error {
		checked = append(checked, p)
		return nil
	}
	s, err := containerSpec(p, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(missing); err != nil {
		t.Errorf("missing host path not created: %v", err)
	}
	check := func(dst, src string, opts ...string) {
		t.Helper()
		ms := mountByDest(s, dst)
		if len(ms) != 1 {
			t.Fatalf("%s: %d mounts", dst, len(ms))
		}
		if ms[0].Source != src || !reflect.DeepEqual(ms[0].Options, opts) {
			t.Errorf("%s: source %s options %v; want %s %v", dst, ms[0].Source, ms[0].Options, src, opts)
		}
	}
	check("/data", target, "rbind", "rslave", "rw")
	check("/data/sub", target, "rbind", "rprivate", "ro")
	check("/new", missing, "rbind", "rshared", "rw")
	check("/rro", target, "rbind", "rprivate", "rro")
	check("/etc/hosts", myHosts, "rbind", "rprivate", "rw")
	check("/etc/resolv.conf", "/pod/resolv", "rbind", "rprivate", "nosuid", "nodev", "noexec", "rw")
	check("/etc/hostname", "/pod/hostname", "rbind", "rprivate", "nosuid", "nodev", "noexec", "rw")
	check("/dev/shm", "/pod/shm", "rbind", "rprivate", "nosuid", "nodev", "noexec", "rw")
	check("/sys", "sysfs", "nosuid", "noexec", "nodev", "ro")
	check("/sys/fs/cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro")
	if s.Linux.RootfsPropagation != "rshared" {
		t.Errorf("rootfs propagation %q, want rshared", s.Linux.RootfsPropagation)
	}
	if !slices.Equal(checked, []string{target, missing}) {
		t.Errorf("propagation checked for %v", checked)
	}
	// /data must be mounted before /data/sub.
	di := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/data" })
	si := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/data/sub" })
	if di > si {
		t.Error("/data/sub is mounted before /data")
	}

	// Read-only rootfs makes the pod files read-only; a requested /dev
	// replaces every default under /dev.
	p = baseContainer(t)
	p.HostsPath = "/pod/hosts"
	p.Config.Linux.SecurityContext.ReadonlyRootfs = true
	p.Config.Mounts = []*runtime.Mount{{ContainerPath: "/dev", HostPath: "/dev"}}
	s = mustContainer(t, p)
	if !s.Root.Readonly {
		t.Error("root not read-only")
	}
	check("/etc/hosts", "/pod/hosts", "rbind", "rprivate", "nosuid", "nodev", "noexec", "ro")
	for _, m := range s.Mounts {
		if strings.HasPrefix(m.Destination, "/dev/") {
			t.Errorf("default %s kept under a requested /dev", m.Destination)
		}
	}
	// No ShmPath: private tmpfs; host IPC: the host's /dev/shm.
	p = baseContainer(t)
	s = mustContainer(t, p)
	if m := mountByDest(s, "/dev/shm"); len(m) != 1 || m[0].Type != "tmpfs" {
		t.Errorf("shm %+v", m)
	}
	p.Config.Linux.SecurityContext.NamespaceOptions.Ipc = runtime.NamespaceMode_NODE
	s = mustContainer(t, p)
	if m := mountByDest(s, "/dev/shm"); len(m) != 1 || m[0].Source != "/dev/shm" {
		t.Errorf("host ipc shm %+v", m)
	}

	for _, tc := range []struct {
		name string
		m    *runtime.Mount
		want string
	}{
		{"rro without ro", &runtime.Mount{ContainerPath: "/x", HostPath: target, RecursiveReadOnly: true}, "needs readonly"},
		{"rro with propagation", &runtime.Mount{ContainerPath: "/x", HostPath: target, Readonly: true, RecursiveReadOnly: true,
			Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}, "private propagation"},
		{"relative dest", &runtime.Mount{ContainerPath: "x", HostPath: target}, "absolute"},
		{"no host path", &runtime.Mount{ContainerPath: "/x"}, "host_path is empty"},
		{"image volume", &runtime.Mount{ContainerPath: "/x", Image: &runtime.ImageSpec{Image: "busybox"}}, "image volume"},
	} {
		p := baseContainer(t)
		p.Config.Mounts = []*runtime.Mount{tc.m}
		if _, err := containerSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	// A propagation precondition failure is reported as such.
	p = baseContainer(t)
	p.Config.Mounts = []*runtime.Mount{{ContainerPath: "/x", HostPath: target, Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
	h = testHost()
	h.ensurePropagate = checkPropagation // real: the temp dir is not on a shared mount here
	if _, err := containerSpec(p, h); isShared(t, target) == (err != nil) {
		t.Errorf("bidirectional on shared=%v mount: err = %v", isShared(t, target), err)
	}
}

// isShared reports whether path's mount is shared, read independently from
// checkPropagation via /proc/self/mountinfo's longest matching mount point.
func isShared(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	best, shared := "", false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		mp := f[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best = mp
			shared = false
			for _, o := range f[6:] {
				if o == "-" {
					break
				}
				if strings.HasPrefix(o, "shared:") {
					shared = true
				}
			}
		}
	}
	return shared
}

func TestCapabilities(t *testing.T) {
	host := testHost().caps
	for _, tc := range []struct {
		name       string
		caps       *runtime.Capability
		privileged bool
		want       []string // exact bounding set, in bit order
		has, lacks []string
		ambient    []string
		wantErr    string
	}{
		{name: "default", want: ordered(setOf(defaultCaps...))},
		{name: "add drop", caps: &runtime.Capability{AddCapabilities: []string{"NET_ADMIN", "cap_sys_time"}, DropCapabilities: []string{"CHOWN", "KILL"}},
			has: []string{"CAP_NET_ADMIN", "CAP_SYS_TIME", "CAP_SETUID"}, lacks: []string{"CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"}},
		{name: "add all drop one", caps: &runtime.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"CHOWN"}},
			want: without(host, "CAP_CHOWN")},
		{name: "drop all add one", caps: &runtime.Capability{AddCapabilities: []string{"NET_RAW"}, DropCapabilities: []string{"all"}},
			want: []string{"CAP_NET_RAW"}},
		{name: "drop all", caps: &runtime.Capability{DropCapabilities: []string{"ALL"}}, want: []string{}},
		{name: "privileged gets host caps", privileged: true, want: host, lacks: []string{"CAP_SYS_RESOURCE"}},
		{name: "ambient", caps: &runtime.Capability{AddAmbientCapabilities: []string{"NET_BIND_SERVICE", "SYS_NICE"}},
			has: []string{"CAP_SYS_NICE"}, ambient: []string{"CAP_NET_BIND_SERVICE", "CAP_SYS_NICE"}},
		{name: "unknown", caps: &runtime.Capability{AddCapabilities: []string{"FLY"}}, wantErr: `unknown capability "FLY"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := capabilities(tc.caps, tc.privileged, host)
			if tc.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !reflect.DeepEqual(c.Bounding, tc.want) {
				t.Errorf("bounding %v, want %v", c.Bounding, tc.want)
			}
			if !reflect.DeepEqual(c.Bounding, c.Permitted) || !reflect.DeepEqual(c.Bounding, c.Effective) {
				t.Error("bounding, permitted and effective differ")
			}
			for _, h := range tc.has {
				if !slices.Contains(c.Bounding, h) {
					t.Errorf("missing %s", h)
				}
			}
			for _, l := range tc.lacks {
				if slices.Contains(c.Bounding, l) {
					t.Errorf("has %s", l)
				}
			}
			if !reflect.DeepEqual(c.Ambient, tc.ambient) || !reflect.DeepEqual(c.Inheritable, tc.ambient) {
				t.Errorf("ambient %v inheritable %v, want %v", c.Ambient, c.Inheritable, tc.ambient)
			}
		})
	}
}

func setOf(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func without(xs []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(xs), func(x string) bool { return x == drop })
}

func TestPrivileged(t *testing.T) {
	p := baseContainer(t)
	p.Config.Linux.SecurityContext.Privileged = true
	p.Config.Linux.SecurityContext.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	p.Config.Linux.SecurityContext.MaskedPaths = []string{"/proc/kcore"}
	if _, err := containerSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not privileged") {
		t.Fatalf("privileged container in unprivileged sandbox: %v", err)
	}
	p.SandboxConfig.Linux.SecurityContext.Privileged = true
	p.Config.Devices = []*runtime.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"}}
	s := mustContainer(t, p)
	if s.Linux.Seccomp != nil {
		t.Error("privileged container has seccomp")
	}
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("privileged masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if !reflect.DeepEqual(s.Process.Capabilities.Bounding, testHost().caps) {
		t.Error("privileged caps are not the host's")
	}
	if !reflect.DeepEqual(s.Linux.Resources.Devices, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}) {
		t.Errorf("device rules %+v", s.Linux.Resources.Devices)
	}
	var paths []string
	for _, d := range s.Linux.Devices {
		paths = append(paths, d.Path)
	}
	if !reflect.DeepEqual(paths, []string{"/dev/mynull", "/dev/null", "/dev/sda"}) {
		t.Errorf("devices %v", paths)
	}
	if m := mountByDest(s, "/sys"); len(m) != 1 || !slices.Contains(m[0].Options, "rw") {
		t.Errorf("privileged /sys %+v", m)
	}
	if m := mountByDest(s, "/sys/fs/cgroup"); len(m) != 1 || !slices.Contains(m[0].Options, "rw") {
		t.Errorf("privileged cgroup %+v", m)
	}
}

func TestHostDevicesReal(t *testing.T) {
	devs, err := hostDevices()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(devs, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" })
	if i < 0 || devs[i].Type != "c" || devs[i].Major != 1 || devs[i].Minor != 3 {
		t.Fatalf("/dev/null not listed correctly: %+v", devs)
	}
	for _, d := range devs {
		if strings.HasPrefix(d.Path, "/dev/pts/") || d.Path == "/dev/console" {
			t.Errorf("listed %s", d.Path)
		}
	}
}

func TestDevices(t *testing.T) {
	p := baseContainer(t)
	p.Config.Devices = []*runtime.Device{{HostPath: "/dev/null", ContainerPath: "/dev/xnull", Permissions: "rw"}}
	s := mustContainer(t, p)
	if len(s.Linux.Devices) != 1 {
		t.Fatalf("devices %+v", s.Linux.Devices)
	}
	d := s.Linux.Devices[0]
	if d.Path != "/dev/xnull" || d.Type != "c" || d.Major != 1 || d.Minor != 3 || d.FileMode == nil || *d.FileMode != 0o666 {
		t.Errorf("device %+v", d)
	}
	rules := s.Linux.Resources.Devices
	if len(rules) != 2 || rules[0].Allow || !rules[1].Allow || rules[1].Access != "rw" || *rules[1].Major != 1 || *rules[1].Minor != 3 || rules[1].Type != "c" {
		t.Errorf("rules %+v", rules)
	}

	// A directory of devices is walked.
	dir := t.TempDir()
	if err := os.Symlink("/dev/null", filepath.Join(dir, "n")); err != nil {
		t.Fatal(err)
	}
	p.Config.Devices = []*runtime.Device{{HostPath: filepath.Join(dir, "n"), ContainerPath: "/dev/n", Permissions: ""}}
	s = mustContainer(t, p)
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Major != 1 || s.Linux.Resources.Devices[1].Access != "rwm" {
		t.Errorf("symlinked device %+v %+v", s.Linux.Devices, s.Linux.Resources.Devices)
	}

	for _, d := range []*runtime.Device{
		{HostPath: "/dev/null", ContainerPath: "/dev/x", Permissions: "rwx"},
		{HostPath: "/dev/does-not-exist", ContainerPath: "/dev/x"},
		{HostPath: "/etc/hostname", ContainerPath: "/dev/x"},
	} {
		p.Config.Devices = []*runtime.Device{d}
		if _, err := containerSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("device %v: err = %v, want invalid argument", d, err)
		}
	}
}

func TestSeccomp(t *testing.T) {
	dir := t.TempDir()
	profile := filepath.Join(dir, "p.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{not json`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		sp         *runtime.SecurityProfile
		legacy     string
		privileged bool
		want       specs.LinuxSeccompAction // "" = no filter
		wantErr    string
	}{
		{name: "nothing"},
		{name: "runtime default", sp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}, want: specs.ActErrno},
		{name: "unconfined", sp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}},
		{name: "localhost", sp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: profile}, want: specs.ActAllow},
		{name: "localhost prefixed", sp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "localhost/" + profile}, want: specs.ActAllow},
		{name: "localhost missing", sp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: dir + "/nope.json"}, wantErr: "does not exist"},
		{name: "localhost garbage", sp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: bad}, wantErr: "bad.json"},
		{name: "ref without localhost", sp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault, LocalhostRef: profile}, wantErr: "only valid"},
		{name: "privileged ignores", sp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}, privileged: true},
		{name: "legacy runtime/default", legacy: "runtime/default", want: specs.ActErrno},
		{name: "legacy docker/default", legacy: "docker/default", want: specs.ActErrno},
		{name: "legacy unconfined", legacy: "unconfined"},
		{name: "legacy localhost", legacy: "localhost/" + profile, want: specs.ActAllow},
		{name: "legacy junk", legacy: "whatever", wantErr: "invalid profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := baseContainer(t)
			sc := p.Config.Linux.SecurityContext
			//lint:ignore SA1019 the deprecated field must keep working
			sc.Seccomp, sc.SeccompProfilePath, sc.Privileged = tc.sp, tc.legacy, tc.privileged
			p.SandboxConfig.Linux.SecurityContext.Privileged = tc.privileged
			s, err := containerSpec(p, testHost())
			if tc.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if s.Linux.Seccomp != nil {
					t.Fatalf("seccomp set: %v", s.Linux.Seccomp.DefaultAction)
				}
				return
			}
			if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != tc.want || len(s.Linux.Seccomp.Syscalls) == 0 {
				t.Fatalf("seccomp %+v, want default action %s", s.Linux.Seccomp, tc.want)
			}
		})
	}
	// The default profile depends on capabilities: CAP_SYS_ADMIN unlocks
	// mount and friends, so it must be computed after them.
	p := baseContainer(t)
	p.Config.Linux.SecurityContext.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	plain := mustContainer(t, p)
	p.Config.Linux.SecurityContext.Capabilities = &runtime.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
	admin := mustContainer(t, p)
	if !allowsSyscall(admin.Linux.Seccomp, "mount") || allowsSyscall(plain.Linux.Seccomp, "mount") {
		t.Error("default seccomp profile does not follow CAP_SYS_ADMIN")
	}
}

func allowsSyscall(s *specs.LinuxSeccomp, name string) bool {
	for _, sc := range s.Syscalls {
		if sc.Action == specs.ActAllow && slices.Contains(sc.Names, name) {
			return true
		}
	}
	return false
}

// TestAppArmor: the profile a process gets, as containerd 2.x chooses it
// (see apparmorProfile).
func TestAppArmor(t *testing.T) {
	local := func(ref string) *runtime.SecurityProfile {
		return &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: ref}
	}
	rtDefault := &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	unconfined := &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}
	tests := []struct {
		name       string
		sp         *runtime.SecurityProfile
		legacy     string
		privileged bool
		enabled    bool
		want       string
		invalid    bool
	}{
		{name: "host without AppArmor: unset", enabled: false, want: ""},
		{name: "host without AppArmor: RuntimeDefault", sp: rtDefault, want: ""},
		{name: "host without AppArmor: Localhost not loaded is ignored", sp: local("nope"), want: ""},
		{name: "unset", enabled: true, want: "crid-default"},
		{name: "RuntimeDefault", sp: rtDefault, enabled: true, want: "crid-default"},
		{name: "legacy runtime/default", legacy: "runtime/default", enabled: true, want: "crid-default"},
		{name: "legacy docker/default", legacy: "docker/default", enabled: true, want: "crid-default"},
		{name: "Unconfined", sp: unconfined, enabled: true, want: ""},
		{name: "legacy unconfined", legacy: "unconfined", enabled: true, want: ""},
		{name: "Localhost", sp: local("my-profile"), enabled: true, want: "my-profile"},
		{name: "Localhost with prefix", sp: local("localhost/my-profile"), enabled: true, want: "my-profile"},
		{name: "legacy localhost/", legacy: "localhost/my-profile", enabled: true, want: "my-profile"},
		{name: "structured field wins over legacy", sp: unconfined, legacy: "localhost/my-profile", enabled: true, want: ""},
		{name: "Localhost not loaded", sp: local("nope"), enabled: true, invalid: true},
		{name: "privileged: unset", privileged: true, enabled: true, want: ""},
		{name: "privileged: RuntimeDefault", sp: rtDefault, privileged: true, enabled: true, want: ""},
		{name: "privileged: Localhost applies", sp: local("my-profile"), privileged: true, enabled: true, want: "my-profile"},
		{name: "privileged: Localhost not loaded", sp: local("nope"), privileged: true, enabled: true, invalid: true},
		{name: "localhost_ref with RuntimeDefault", sp: &runtime.SecurityProfile{LocalhostRef: "x"}, enabled: true, invalid: true},
		{name: "Localhost without ref", sp: local(""), enabled: true, invalid: true},
		{name: "unknown type", sp: &runtime.SecurityProfile{ProfileType: 9}, enabled: true, invalid: true},
		{name: "bad legacy", legacy: "my-profile", enabled: true, invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHost()
			h.apparmor = tt.enabled
			h.apparmorLoaded = func(n string) (bool, error) { return n == "my-profile", nil }
			got, err := apparmorProfile(tt.sp, tt.legacy, tt.privileged, h)
			if tt.invalid {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("got %q, %v; want an invalid-argument error", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestAppArmorInSpecs: the choice reaches both specs, privileged or not.
func TestAppArmorInSpecs(t *testing.T) {
	h := testHost()
	h.apparmor = true
	p := baseContainer(t)
	s, err := containerSpec(p, h)
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.ApparmorProfile != "crid-default" {
		t.Errorf("container: profile %q, want crid-default", s.Process.ApparmorProfile)
	}
	p.Config.Linux.SecurityContext.Privileged = true
	p.SandboxConfig.Linux.SecurityContext.Privileged = true
	if s, err = containerSpec(p, h); err != nil {
		t.Fatal(err)
	}
	if s.Process.ApparmorProfile != "" {
		t.Errorf("privileged container: profile %q, want none", s.Process.ApparmorProfile)
	}
	sp := SandboxParams{ID: "s1", Config: baseSandboxConfig(), RootfsPath: writeRootfs(t), Image: ocispec.ImageConfig{Entrypoint: []string{"/pause"}}}
	if s, err = sandboxSpec(sp, h); err != nil {
		t.Fatal(err)
	}
	if s.Process.ApparmorProfile != "crid-default" {
		t.Errorf("pause: profile %q, want crid-default", s.Process.ApparmorProfile)
	}
	sp.Config.Linux.SecurityContext.Privileged = true
	if s, err = sandboxSpec(sp, h); err != nil {
		t.Fatal(err)
	}
	if s.Process.ApparmorProfile != "" {
		t.Errorf("privileged pod's pause: profile %q, want none", s.Process.ApparmorProfile)
	}
}

func TestMaskedPaths(t *testing.T) {
	p := baseContainer(t)
	s := mustContainer(t, p)
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("no request, defaults off: masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	p.DefaultMaskedPaths = true
	s = mustContainer(t, p)
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !reflect.DeepEqual(s.Linux.ReadonlyPaths, defaultReadonlyPaths) {
		t.Errorf("defaults on: masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	p.Config.Linux.SecurityContext.MaskedPaths = []string{"/bin/ls"}
	p.Config.Linux.SecurityContext.ReadonlyPaths = []string{"/etc"}
	s = mustContainer(t, p)
	if !reflect.DeepEqual(s.Linux.MaskedPaths, []string{"/bin/ls"}) || !reflect.DeepEqual(s.Linux.ReadonlyPaths, []string{"/etc"}) {
		t.Errorf("requested: masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}

func TestResources(t *testing.T) {
	r := &runtime.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0", CpusetMems: "0",
		MemoryLimitInBytes: 64 << 20, OomScoreAdj: -999,
		HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 0}},
		Unified:        map[string]string{"memory.high": "1"},
	}
	got := resourcesFromCRI(r, true, true)
	if *got.CPU.Shares != 512 || *got.CPU.Quota != 50000 || *got.CPU.Period != 100000 || got.CPU.Cpus != "0" || got.CPU.Mems != "0" {
		t.Errorf("cpu %+v", got.CPU)
	}
	if *got.Memory.Limit != 64<<20 || *got.Memory.Swap != 64<<20 {
		t.Errorf("memory %+v", got.Memory)
	}
	if len(got.HugepageLimits) != 1 || got.HugepageLimits[0].Pagesize != "2MB" {
		t.Errorf("hugepages %+v", got.HugepageLimits)
	}
	if got.Unified["memory.high"] != "1" {
		t.Errorf("unified %v", got.Unified)
	}
	r.MemorySwapLimitInBytes = 128 << 20
	if got = resourcesFromCRI(r, false, true); *got.Memory.Swap != 128<<20 || got.HugepageLimits != nil {
		t.Errorf("explicit swap / no hugetlb: %+v %+v", got.Memory, got.HugepageLimits)
	}
	if got = resourcesFromCRI(r, false, false); got.Memory.Swap != nil {
		t.Errorf("swap set without swap accounting: %v", *got.Memory.Swap)
	}
	if got = resourcesFromCRI(&runtime.LinuxContainerResources{}, true, true); got.CPU != nil || got.Memory != nil {
		t.Errorf("empty resources: %+v", got)
	}
	if resourcesFromCRI(nil, true, true) != nil {
		t.Error("nil resources not nil")
	}
	if OOMScoreAdj(r, 0) != 0 || OOMScoreAdj(r, -1000) != -999 || OOMScoreAdj(&runtime.LinuxContainerResources{OomScoreAdj: 5000}, 0) != 1000 {
		t.Error("OOMScoreAdj clamp")
	}

	// In a container spec: OOM clamped, unified refused on v1.
	p := baseContainer(t)
	p.MinOOMScoreAdj = -500
	r.Unified = nil
	p.Config.Linux.Resources = r
	s := mustContainer(t, p)
	if *s.Process.OOMScoreAdj != -500 {
		t.Errorf("oom %d, want clamped -500", *s.Process.OOMScoreAdj)
	}
	if s.Linux.Resources.HugepageLimits != nil {
		t.Error("hugepages on a host without hugetlb")
	}
	if s.Linux.CgroupsPath != "/crid/c1" {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	r.Unified = map[string]string{"memory.high": "1"}
	if _, err := containerSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "cgroup v2") {
		t.Errorf("unified on v1: %v", err)
	}
}

func TestCgroupsPath(t *testing.T) {
	for _, tc := range []struct{ driver, parent, want string }{
		{"cgroupfs", "", "/crid/abc"},
		{"cgroupfs", "/kubepods/burstable/pod1", "/kubepods/burstable/pod1/abc"},
		{"cgroupfs", "kubepods", "/kubepods/abc"},
		{"", "/p", "/p/abc"},
		{"systemd", "", "system.slice:crid:abc"},
		{"systemd", "kubepods-burstable-pod1.slice", "kubepods-burstable-pod1.slice:crid:abc"},
		{"systemd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice", "kubepods-burstable-pod1.slice:crid:abc"},
	} {
		if got := CgroupsPath(tc.driver, tc.parent, "abc"); got != tc.want {
			t.Errorf("CgroupsPath(%q, %q) = %q, want %q", tc.driver, tc.parent, got, tc.want)
		}
	}
}

func TestContainerAnnotationsAndSecurity(t *testing.T) {
	p := baseContainer(t)
	p.Config.Annotations = map[string]string{"x": "y", AnnotationContainerType: "sandbox"}
	p.Config.Linux.SecurityContext.NoNewPrivs = true
	s := mustContainer(t, p)
	want := map[string]string{
		"x": "y", AnnotationContainerType: "container", AnnotationSandboxID: "s1", AnnotationContainerName: "app",
		AnnotationImageName: "example.com/app:1", AnnotationSandboxName: "web", AnnotationSandboxNamespace: "default", AnnotationSandboxUID: "uid-1",
	}
	if !reflect.DeepEqual(s.Annotations, want) {
		t.Errorf("annotations %v", s.Annotations)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privs not set")
	}
	if s.Linux.Sysctl != nil {
		t.Error("container has sysctls")
	}
	if s.Process.OOMScoreAdj != nil {
		t.Error("oom score set without resources")
	}
	if !reflect.DeepEqual(s.Linux.Resources.Devices, []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}) {
		t.Errorf("device rules %+v", s.Linux.Resources.Devices)
	}
	if s.Version != specs.Version || s.Root.Path != p.RootfsPath {
		t.Errorf("version %s root %+v", s.Version, s.Root)
	}
}

func TestSandboxSpec(t *testing.T) {
	base := func() SandboxParams {
		return SandboxParams{
			ID: "s1", Config: baseSandboxConfig(), RootfsPath: writeRootfs(t), NetNSPath: "/run/netns/cni-1",
			Image:          ocispec.ImageConfig{Entrypoint: []string{"/pause"}, Env: []string{"A=1"}, User: "65535:65535"},
			ResolvConfPath: "/pod/resolv", HostsPath: "/pod/hosts", ShmPath: "/pod/shm",
			CgroupsPath: "/crid/s1",
		}
	}
	s, err := sandboxSpec(base(), testHost())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Process.Args, []string{"/pause"}) || s.Process.Cwd != "/" || !reflect.DeepEqual(s.Process.Env, []string{"A=1", defaultPathEnv}) {
		t.Errorf("process %+v", s.Process)
	}
	if s.Process.User.UID != 65535 || s.Process.User.GID != 65535 {
		t.Errorf("user %+v", s.Process.User)
	}
	if s.Hostname != "web-pod" || !s.Root.Readonly || s.Linux.CgroupsPath != "/crid/s1" {
		t.Errorf("hostname %q root %+v cgroups %q", s.Hostname, s.Root, s.Linux.CgroupsPath)
	}
	if *s.Process.OOMScoreAdj != 0 {
		t.Errorf("oom %d, want -998 clamped to 0", *s.Process.OOMScoreAdj)
	}
	if *s.Linux.Resources.CPU.Shares != 2 {
		t.Errorf("shares %d", *s.Linux.Resources.CPU.Shares)
	}
	if s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" {
		t.Errorf("sysctls %v", s.Linux.Sysctl)
	}
	if !reflect.DeepEqual(nsMap(s), map[specs.LinuxNamespaceType]string{
		specs.MountNamespace: "", specs.PIDNamespace: "", specs.IPCNamespace: "", specs.UTSNamespace: "", specs.NetworkNamespace: "/run/netns/cni-1"}) {
		t.Errorf("namespaces %v", nsMap(s))
	}
	if !reflect.DeepEqual(s.Process.Capabilities.Bounding, ordered(setOf(defaultCaps...))) {
		t.Errorf("caps %v", s.Process.Capabilities.Bounding)
	}
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Errorf("masked %v ro %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if m := mountByDest(s, "/dev/shm"); len(m) != 1 || m[0].Source != "/pod/shm" || !slices.Contains(m[0].Options, "ro") {
		t.Errorf("shm %+v", m)
	}
	if m := mountByDest(s, "/etc/hosts"); len(m) != 1 || !slices.Contains(m[0].Options, "ro") {
		t.Errorf("hosts %+v", m)
	}
	if len(mountByDest(s, "/etc/hostname")) != 0 {
		t.Error("hostname mounted without a path")
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} {
		if len(mountByDest(s, d)) != 1 {
			t.Errorf("mount %s missing", d)
		}
	}
	wantAnn := map[string]string{"team": "a", AnnotationContainerType: "sandbox", AnnotationSandboxID: "s1",
		AnnotationSandboxName: "web", AnnotationSandboxNamespace: "default", AnnotationSandboxUID: "uid-1", AnnotationSandboxLogDir: "/var/log/pods/x"}
	if !reflect.DeepEqual(s.Annotations, wantAnn) {
		t.Errorf("annotations %v", s.Annotations)
	}
	if s.Linux.Seccomp != nil {
		t.Error("seccomp without request")
	}

	// Host namespaces.
	p := base()
	p.NetNSPath = ""
	p.ShmPath = ""
	p.Config.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{
		Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE}
	s, err = sandboxSpec(p, testHost())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(nsMap(s), map[specs.LinuxNamespaceType]string{specs.MountNamespace: ""}) {
		t.Errorf("host namespaces %v", nsMap(s))
	}
	if s.Hostname != "" {
		t.Errorf("hostname %q set with host network", s.Hostname)
	}
	if m := mountByDest(s, "/dev/shm"); len(m) != 1 || m[0].Source != "/dev/shm" {
		t.Errorf("host ipc shm %+v", m)
	}
	// pid CONTAINER: the sandbox still has its own.
	p = base()
	p.Config.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_CONTAINER
	if s, err = sandboxSpec(p, testHost()); err != nil || !hasNS(s, specs.PIDNamespace) {
		t.Errorf("pid CONTAINER: %v %v", err, nsMap(s))
	}

	// Security context, seccomp, privileged, defaults.
	p = base()
	p.Image = ocispec.ImageConfig{}
	p.ShmPath = ""
	sc := p.Config.Linux.SecurityContext
	sc.RunAsUser, sc.RunAsGroup = i64(1000), i64(2000)
	sc.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	p.MinOOMScoreAdj = -1000
	s, err = sandboxSpec(p, testHost())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Process.Args, []string{"/pause"}) || s.Process.User.UID != 1000 || s.Process.User.GID != 2000 || *s.Process.OOMScoreAdj != -998 {
		t.Errorf("args %v user %+v oom %d", s.Process.Args, s.Process.User, *s.Process.OOMScoreAdj)
	}
	if s.Linux.Seccomp == nil {
		t.Error("sandbox seccomp not applied")
	}
	if m := mountByDest(s, "/dev/shm"); len(m) != 1 || m[0].Type != "tmpfs" {
		t.Errorf("default shm %+v", m)
	}
	sc.Privileged = true
	s, err = sandboxSpec(p, testHost())
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 || !reflect.DeepEqual(s.Process.Capabilities.Bounding, testHost().caps) {
		t.Error("privileged sandbox still confined")
	}

	// Invalid.
	p = base()
	p.Config.Linux.SecurityContext.RunAsUser = nil
	p.Config.Linux.SecurityContext.RunAsGroup = i64(5)
	p.Image.User = ""
	if _, err := sandboxSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("run_as_group alone: %v", err)
	}
	p = base()
	p.Config = nil
	if _, err := sandboxSpec(p, testHost()); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("nil config: %v", err)
	}
}

func hasNS(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	_, ok := nsMap(s)[t]
	return ok
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "NOVALUE"}, "B=3", "C=4", "NOVALUE=x", "A=")
	want := []string{"A=", "B=3", "NOVALUE=x", "C=4"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestCurrentCaps(t *testing.T) {
	caps := currentCaps()
	// Root in this environment holds CAP_SYS_ADMIN; the list must be in
	// bit order and only contain known names.
	if !slices.Contains(caps, "CAP_SYS_ADMIN") {
		t.Errorf("caps %v lack CAP_SYS_ADMIN", caps)
	}
	if !reflect.DeepEqual(caps, ordered(setOf(caps...))) {
		t.Errorf("caps not in bit order: %v", caps)
	}
	if got := capsFromMask(1<<0 | 1<<21); !reflect.DeepEqual(got, []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}) {
		t.Errorf("capsFromMask %v", got)
	}
}
