package oci

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestAnnotationAllowed(t *testing.T) {
	tests := []struct {
		key      string
		patterns []string
		want     bool
	}{
		{"io.crid.umask", nil, false},
		{"io.crid.umask", []string{"io.crid.umask"}, true},
		{"io.crid.umask", []string{"io.crid.*"}, true},
		{"io.crid.umask", []string{"io.crid.shm-size"}, false},
		{"io.crid.umask", []string{"io.crid.shm-size", "io.crid.u*"}, true},
		{"run.oci.keep_original_groups", []string{"run.oci.*"}, true},
		// '*' does not cross '/': a domain's keys need "domain/*".
		{"cdi.k8s.io/gpu", []string{"*"}, false},
		{"cdi.k8s.io/gpu", []string{"cdi.k8s.io/*"}, true},
		{"io.crid.umask", []string{"io.crid.[a-t]*"}, false},
		{"io.crid.umask", []string{"[bad"}, false},
	}
	for _, tt := range tests {
		if got := AnnotationAllowed(tt.key, tt.patterns); got != tt.want {
			t.Errorf("AnnotationAllowed(%q, %q) = %v, want %v", tt.key, tt.patterns, got, tt.want)
		}
	}
}

func TestFilterAnnotations(t *testing.T) {
	allowed, ignored := FilterAnnotations(map[string]string{
		"io.crid.umask": "0027", "kubernetes.io/config.seen": "x", "io.crid.devices": "/dev/fuse", "a": "b",
	}, []string{"io.crid.umask", "io.crid.devices"})
	if want := map[string]string{"io.crid.umask": "0027", "io.crid.devices": "/dev/fuse"}; !reflect.DeepEqual(allowed, want) {
		t.Errorf("allowed %v, want %v", allowed, want)
	}
	if want := []string{"a", "kubernetes.io/config.seen"}; !reflect.DeepEqual(ignored, want) {
		t.Errorf("ignored %v, want %v", ignored, want)
	}
}

func TestParsePodOptions(t *testing.T) {
	tests := []struct {
		ann     map[string]string
		want    PodOptions
		wantErr string // the annotation the error must name; "" = no error
	}{
		{nil, PodOptions{}, ""},
		{map[string]string{AnnotationShmSize: "256Mi"}, PodOptions{ShmSize: 256 << 20}, ""},
		{map[string]string{AnnotationShmSize: "1G"}, PodOptions{ShmSize: 1e9}, ""},
		{map[string]string{AnnotationShmSize: "4096"}, PodOptions{ShmSize: 4096}, ""},
		{map[string]string{AnnotationShmSize: "2Ki"}, PodOptions{ShmSize: 2048}, ""},
		{map[string]string{AnnotationShmSize: "0"}, PodOptions{}, AnnotationShmSize},
		{map[string]string{AnnotationShmSize: "-1Mi"}, PodOptions{}, AnnotationShmSize},
		{map[string]string{AnnotationShmSize: "Mi"}, PodOptions{}, AnnotationShmSize},
		{map[string]string{AnnotationShmSize: "1.5Gi"}, PodOptions{}, AnnotationShmSize},
		{map[string]string{AnnotationShmSize: "64MB"}, PodOptions{}, AnnotationShmSize},
		{map[string]string{AnnotationShmSize: "99999999999Ti"}, PodOptions{}, AnnotationShmSize},
		{map[string]string{AnnotationForcePause: "true"}, PodOptions{ForcePause: true}, ""},
		{map[string]string{AnnotationForcePause: "false"}, PodOptions{}, ""},
		{map[string]string{AnnotationForcePause: "yes"}, PodOptions{}, AnnotationForcePause},
	}
	for _, tt := range tests {
		got, err := ParsePodOptions(tt.ann)
		checkAnnotationErr(t, tt.ann, err, tt.wantErr)
		if tt.wantErr == "" && got != tt.want {
			t.Errorf("ParsePodOptions(%v) = %+v, want %+v", tt.ann, got, tt.want)
		}
	}
}

// checkAnnotationErr wants no error for want "", else an InvalidArgument
// naming annotation want.
func checkAnnotationErr(t *testing.T, in any, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%v: unexpected error %v", in, err)
	case want != "" && err == nil:
		t.Errorf("%v: no error, want one naming %s", in, want)
	case want != "" && (!errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "annotation "+want+":") || !strings.Contains(err.Error(), "want ")):
		t.Errorf("%v: error %v is not an InvalidArgument naming %s and the accepted form", in, err, want)
	}
}

func TestShmMountOptions(t *testing.T) {
	if got := (PodOptions{}).ShmMountOptions(); got != "mode=1777,size=67108864" {
		t.Errorf("default %q", got)
	}
	if got := (PodOptions{ShmSize: 1 << 30}).ShmMountOptions(); got != "mode=1777,size=1073741824" {
		t.Errorf("1Gi %q", got)
	}
}

func TestParseContainerOptions(t *testing.T) {
	u := func(v uint32) *uint32 { return &v }
	tests := []struct {
		key, value string
		want       ContainerOptions
		wantErr    bool
	}{
		{AnnotationUmask, "0027", ContainerOptions{Umask: u(0o27)}, false},
		{AnnotationUmask, "077", ContainerOptions{Umask: u(0o77)}, false},
		{AnnotationUmask, "0", ContainerOptions{Umask: u(0)}, false},
		{AnnotationUmask, "0777", ContainerOptions{Umask: u(0o777)}, false},
		{AnnotationUmask, "1777", ContainerOptions{}, true},
		{AnnotationUmask, "0089", ContainerOptions{}, true},
		{AnnotationUmask, "00022", ContainerOptions{}, true},
		{AnnotationUmask, "", ContainerOptions{}, true},
		{AnnotationRlimits, "nofile=4096:8192", ContainerOptions{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 4096, Hard: 8192}}}, false},
		{AnnotationRlimits, "nofile=100,core=unlimited", ContainerOptions{Rlimits: []specs.POSIXRlimit{
			{Type: "RLIMIT_NOFILE", Soft: 100, Hard: 100}, {Type: "RLIMIT_CORE", Soft: math.MaxUint64, Hard: math.MaxUint64}}}, false},
		{AnnotationRlimits, "nofile=10:5", ContainerOptions{}, true},
		{AnnotationRlimits, "files=10", ContainerOptions{}, true},
		{AnnotationRlimits, "nofile", ContainerOptions{}, true},
		{AnnotationRlimits, "nofile=-1", ContainerOptions{}, true},
		{AnnotationRlimits, "nofile=1,nofile=2", ContainerOptions{}, true},
		{AnnotationUnified, "memory.high=1000;pids.max=10", ContainerOptions{Unified: map[string]string{"memory.high": "1000", "pids.max": "10"}}, false},
		{AnnotationUnified, "cpu.max=max 100000", ContainerOptions{Unified: map[string]string{"cpu.max": "max 100000"}}, false},
		{AnnotationUnified, "../../escape=1", ContainerOptions{}, true},
		{AnnotationUnified, "memory/high=1", ContainerOptions{}, true},
		{AnnotationUnified, "nodot=1", ContainerOptions{}, true},
		{AnnotationUnified, "memory.high", ContainerOptions{}, true},
		{AnnotationUnified, "memory.high=1\n2", ContainerOptions{}, true},
		{AnnotationDevices, "/dev/fuse", ContainerOptions{Devices: devs("/dev/fuse", "", "")}, false},
		{AnnotationDevices, "/dev/fuse:rw", ContainerOptions{Devices: devs("/dev/fuse", "", "rw")}, false},
		{AnnotationDevices, "/dev/null:/dev/mynull", ContainerOptions{Devices: devs("/dev/null", "/dev/mynull", "")}, false},
		{AnnotationDevices, "/dev/null:/dev/mynull:r", ContainerOptions{Devices: devs("/dev/null", "/dev/mynull", "r")}, false},
		{AnnotationDevices, "dev/fuse", ContainerOptions{}, true},
		{AnnotationDevices, "/dev/fuse:rwx", ContainerOptions{}, true},
		{AnnotationDevices, "/dev/null:/a:r:w", ContainerOptions{}, true},
		{AnnotationDevices, "/dev/null:/a:q", ContainerOptions{}, true},
		{AnnotationDevices, "", ContainerOptions{}, true},
		{AnnotationSeccompNotifier, "log", ContainerOptions{SeccompNotifier: NotifierLog}, false},
		{AnnotationSeccompNotifier, "stop", ContainerOptions{SeccompNotifier: NotifierStop}, false},
		{AnnotationSeccompNotifier, "Stop", ContainerOptions{}, true},
		{AnnotationSeccompNotifier, "", ContainerOptions{}, true},
	}
	for _, tt := range tests {
		ann := map[string]string{tt.key: tt.value}
		got, err := ParseContainerOptions(ann)
		want := ""
		if tt.wantErr {
			want = tt.key
		}
		checkAnnotationErr(t, ann, err, want)
		if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseContainerOptions(%v) = %+v, want %+v", ann, got, tt.want)
		}
	}
}

func TestApplyContainerOptions(t *testing.T) {
	umask := uint32(0o27)
	opts := ContainerOptions{
		Umask:   &umask,
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}},
		Devices: devs("/dev/null", "/dev/annotated-null", "r"),
		Unified: map[string]string{"pids.max": "10"},
	}
	newSpec := func() *specs.Spec {
		return &specs.Spec{
			Process: &specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}}},
			Linux:   &specs.Linux{},
		}
	}
	s := newSpec()
	if err := ApplyContainerOptions(s, opts, true); err != nil {
		t.Fatal(err)
	}
	if s.Process.User.Umask == nil || *s.Process.User.Umask != umask {
		t.Errorf("umask %v", s.Process.User.Umask)
	}
	if !reflect.DeepEqual(s.Process.Rlimits, opts.Rlimits) {
		t.Errorf("rlimits %v, want the annotation's replacing the default", s.Process.Rlimits)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/annotated-null" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
		t.Errorf("devices %+v", s.Linux.Devices)
	}
	if r := s.Linux.Resources.Devices; len(r) != 1 || !r[0].Allow || r[0].Access != "r" || *r[0].Major != 1 || *r[0].Minor != 3 {
		t.Errorf("device rules %+v", r)
	}
	if !reflect.DeepEqual(s.Linux.Resources.Unified, opts.Unified) {
		t.Errorf("unified %v", s.Linux.Resources.Unified)
	}
	// Where cgroups are not v2 only, unified keys are refused up front.
	err := ApplyContainerOptions(newSpec(), opts, false)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), AnnotationUnified) {
		t.Errorf("unified on a v1 host: %v, want FailedPrecondition naming %s", err, AnnotationUnified)
	}
	// A host path that is not a device is an InvalidArgument naming the key.
	err = ApplyContainerOptions(newSpec(), ContainerOptions{Devices: devs("/etc/hostname", "", "")}, true)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), AnnotationDevices) {
		t.Errorf("non-device: %v", err)
	}
}

func TestRestrictSpecAnnotations(t *testing.T) {
	s := &specs.Spec{Annotations: map[string]string{
		AnnotationContainerType: ContainerTypeContainer, AnnotationSandboxID: "sb", "from-request": "x", "run.oci.hook": "y",
	}}
	RestrictSpecAnnotations(s, map[string]string{"run.oci.pod": "p", "both": "pod"},
		map[string]string{"both": "ctr", AnnotationSandboxID: "forged"})
	want := map[string]string{
		AnnotationContainerType: ContainerTypeContainer, AnnotationSandboxID: "sb", "run.oci.pod": "p", "both": "ctr",
	}
	if !reflect.DeepEqual(s.Annotations, want) {
		t.Errorf("annotations %v, want %v", s.Annotations, want)
	}
}

func devs(host, ctr, perms string) []*runtime.Device {
	return []*runtime.Device{{HostPath: host, ContainerPath: ctr, Permissions: perms}}
}

func TestAddSandboxAnnotations(t *testing.T) {
	s := &specs.Spec{Annotations: map[string]string{}}
	AddSandboxAnnotations(s, &runtime.PodSandboxConfig{}, "registry.k8s.io/pause:3.10")
	if want := map[string]string{AnnotationSandboxImageName: "registry.k8s.io/pause:3.10"}; !reflect.DeepEqual(s.Annotations, want) {
		t.Errorf("without resources: %v, want %v", s.Annotations, want)
	}
	s = &specs.Spec{Annotations: map[string]string{}}
	AddSandboxAnnotations(s, &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
		Resources: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30},
	}}, "pause")
	want := map[string]string{
		AnnotationSandboxImageName: "pause", AnnotationSandboxCPUPeriod: "100000", AnnotationSandboxCPUQuota: "50000",
		AnnotationSandboxCPUShares: "512", AnnotationSandboxMemory: "1073741824",
	}
	if !reflect.DeepEqual(s.Annotations, want) {
		t.Errorf("with resources: %v, want %v", s.Annotations, want)
	}
	// They survive the restriction to allowed annotations.
	RestrictSpecAnnotations(s, nil, nil)
	if !reflect.DeepEqual(s.Annotations, want) {
		t.Errorf("after RestrictSpecAnnotations: %v, want %v", s.Annotations, want)
	}
}
