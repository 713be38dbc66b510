package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// annotHandler allows io.crid.* and example.com/* (harness_test.go); the
// default handler "runc" allows none.
const annotHandler = "runc-annot"

// annotatedPod is a pod as kubelet sends it by default (no shared PID
// namespace, so crid would run it without a pause) carrying crid's pod
// annotations, a container default (umask) and a pass-through key.
func annotatedPod(t *testing.T) *runtime.PodSandboxConfig {
	pod := podConfig(t)
	pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
	}
	pod.Annotations = map[string]string{
		"io.crid.shm-size":    "256Mi",
		"io.crid.force-pause": "true",
		"io.crid.umask":       "0027",
		"example.com/pod":     "p",
		"not-allowed.io/pod":  "q",
	}
	return pod
}

// annotatedContainer carries crid's container annotations.
func annotatedContainer(name string) *runtime.ContainerConfig {
	c := containerConfig(name, "sleep", "1000")
	c.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
	}}
	c.Annotations = map[string]string{
		"io.crid.devices":     "/dev/fuse:rw,/dev/loop-control:/dev/annot-loop:r",
		"io.crid.rlimits":     "nofile=4096:8192",
		"example.com/ctr":     "c",
		"not-allowed.io/ctr1": "d",
	}
	return c
}

// runcList lists the containers the handler's runc knows.
func runcList(t *testing.T, handler string) string {
	t.Helper()
	out, err := runOut("runc", "--root", filepath.Join(h.base, "state", "runtime", handler), "list", "-q")
	if err != nil {
		t.Fatalf("runc list: %v: %s", err, out)
	}
	return out
}

// specAnnotations reads the annotations of the OCI spec crid wrote for
// id, of kind "containers" or "sandboxes" (a pause).
func specAnnotations(t *testing.T, kind, id string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.base, "state", kind, id, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	return spec.Annotations
}

// shmKiB is the size of /dev/shm in the container, in KiB, from df.
func shmKiB(t *testing.T, id string) string {
	t.Helper()
	lines := strings.Split(must(t, id, "df -k /dev/shm"), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	if len(fields) < 2 {
		t.Fatalf("df -k /dev/shm: %q", lines)
	}
	return fields[1]
}

// TestAnnotationsAllowed runs a pod of a handler that allows crid's
// annotations: each takes effect in the container, the allowed keys reach
// the OCI spec and the others do not.
func TestAnnotationsAllowed(t *testing.T) {
	pull(t, busybox)
	pod := annotatedPod(t)
	podID := runPod(t, pod, annotHandler)
	if out := runcList(t, annotHandler); !strings.Contains(out, podID) {
		t.Errorf("io.crid.force-pause: no pause container for pod %s in %q", podID, out)
	}
	a := createStart(t, podID, pod, annotatedContainer("a"))

	if got := shmKiB(t, a); got != "262144" {
		t.Errorf("io.crid.shm-size 256Mi: /dev/shm is %s KiB, want 262144", got)
	}
	// The umask comes from the pod's annotation, a default for its containers.
	if got := must(t, a, "umask"); got != "0027" {
		t.Errorf("io.crid.umask 0027 (pod): umask %q", got)
	}
	if got := must(t, a, "ulimit -n; ulimit -Hn"); got != "4096\n8192" {
		t.Errorf("io.crid.rlimits nofile=4096:8192: ulimit -n, -Hn = %q", got)
	}
	// /dev/fuse opens read-write; /dev/loop-control appears at
	// /dev/annot-loop and opens for reading but not for writing (the device
	// cgroup allows "r" only; runc's own default devices, such as /dev/null,
	// are always rwm, so they cannot show this).
	must(t, a, "test -c /dev/fuse && exec 3<>/dev/fuse")
	must(t, a, "test -c /dev/annot-loop && exec 3</dev/annot-loop")
	fails(t, a, "exec 3>/dev/annot-loop")

	ann := specAnnotations(t, "containers", a)
	for k, want := range map[string]string{
		"example.com/pod": "p", "example.com/ctr": "c", "io.crid.umask": "0027",
		"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": podID,
		"io.kubernetes.cri.sandbox-name": pod.Metadata.Name, "io.kubernetes.cri.sandbox-namespace": "e2e",
		"io.kubernetes.cri.container-name": "a", "io.kubernetes.cri.image-name": busybox,
	} {
		if ann[k] != want {
			t.Errorf("spec annotation %s = %q, want %q (all: %v)", k, ann[k], want, ann)
		}
	}
	for _, k := range []string{"not-allowed.io/pod", "not-allowed.io/ctr1"} {
		if _, ok := ann[k]; ok {
			t.Errorf("spec has annotation %s the handler does not allow", k)
		}
	}
	if ann := specAnnotations(t, "sandboxes", podID); ann["io.kubernetes.cri.container-type"] != "sandbox" ||
		ann["io.kubernetes.cri.podsandbox.image-name"] != "registry.k8s.io/pause:3.10" ||
		ann["example.com/pod"] != "p" || ann["not-allowed.io/pod"] != "" {
		t.Errorf("pause spec annotations %v", ann)
	}

	// A container's own umask wins over the pod's.
	b := annotatedContainer("b")
	b.Annotations["io.crid.umask"] = "0077"
	if got := must(t, createStart(t, podID, pod, b), "umask"); got != "0077" {
		t.Errorf("io.crid.umask 0077 (container over pod 0027): umask %q", got)
	}
}

// TestAnnotationsIgnoredOnDefaultHandler sends the same annotations, and a
// malformed one, to the default handler, which allows none: the pod and
// container run as without them.
func TestAnnotationsIgnoredOnDefaultHandler(t *testing.T) {
	pull(t, busybox)
	pod := annotatedPod(t)
	pod.Annotations["io.crid.rlimits"] = "not a limit"
	podID := runPod(t, pod, "")
	if out := runcList(t, "runc"); strings.Contains(out, podID) {
		t.Errorf("io.crid.force-pause took effect on the default handler: pause in %q", out)
	}
	a := createStart(t, podID, pod, annotatedContainer("a"))
	if got := shmKiB(t, a); got != "65536" {
		t.Errorf("/dev/shm is %s KiB, want the default 65536", got)
	}
	if got := must(t, a, "umask"); got != "0022" {
		t.Errorf("umask %q, want the default 0022", got)
	}
	if got := must(t, a, "ulimit -n"); got == "4096" {
		t.Errorf("io.crid.rlimits took effect on the default handler: ulimit -n %s", got)
	}
	fails(t, a, "test -e /dev/fuse || test -e /dev/annot-loop")
	ann := specAnnotations(t, "containers", a)
	for _, k := range []string{"example.com/pod", "example.com/ctr", "io.crid.umask", "not-allowed.io/ctr1"} {
		if _, ok := ann[k]; ok {
			t.Errorf("spec has annotation %s the default handler does not allow", k)
		}
	}
	if ann["io.kubernetes.cri.container-type"] != "container" || ann["io.kubernetes.cri.sandbox-id"] != podID {
		t.Errorf("spec lacks crid's own annotations: %v", ann)
	}
}

// TestAnnotationsRefused: a malformed value of an allowed annotation is an
// InvalidArgument naming it, for the pod and for a container; unified
// cgroup keys are refused on a host whose cgroups are not v2 only.
func TestAnnotationsRefused(t *testing.T) {
	pull(t, busybox)
	for key, value := range map[string]string{
		"io.crid.shm-size":         "lots",
		"io.crid.force-pause":      "maybe",
		"io.crid.umask":            "999",  // container keys on a pod are its containers' defaults
		"io.crid.devices":          "fuse", // not an absolute path
		"io.crid.seccomp-notifier": "kill",
	} {
		pod := podConfig(t)
		pod.Metadata.Name += "-" + strings.ReplaceAll(key, ".", "-")
		pod.Annotations = map[string]string{key: value}
		resp, err := h.rt.RunPodSandbox(ctxT(t), &runtime.RunPodSandboxRequest{Config: pod, RuntimeHandler: annotHandler})
		if err == nil {
			removePod(t, resp.PodSandboxId)
		}
		wantAnnotationErr(t, "pod "+key+"="+value, err, codes.InvalidArgument, key)
	}

	pod := podConfig(t)
	podID := runPod(t, pod, annotHandler)
	type badCase struct {
		key, value string
		code       codes.Code
	}
	cases := []badCase{
		{"io.crid.umask", "0o22", codes.InvalidArgument},
		{"io.crid.rlimits", "nofile=10:5", codes.InvalidArgument},
		{"io.crid.devices", "/etc/hostname", codes.InvalidArgument}, // not a device node
		{"io.crid.unified", "memory/../x=1", codes.InvalidArgument},
		{"io.crid.seccomp-notifier", "Log", codes.InvalidArgument},
	}
	if !cgroupV2() {
		// On cgroup v1 or hybrid runc cannot apply unified keys.
		cases = append(cases, badCase{"io.crid.unified", "pids.max=10", codes.FailedPrecondition})
	}
	for _, tc := range cases {
		cfg := containerConfig("bad", "sleep", "1000")
		cfg.Annotations = map[string]string{tc.key: tc.value}
		err := tryCreate(t, podID, pod, cfg)
		wantAnnotationErr(t, "container "+tc.key+"="+tc.value, err, tc.code, tc.key)
	}
	if cgroupV2() {
		// On cgroup v2 (the VM of test/vm) the same key is applied.
		cfg := containerConfig("unified", "sleep", "1000")
		cfg.Annotations = map[string]string{"io.crid.unified": "pids.max=10"}
		id := createStart(t, podID, pod, cfg)
		p := filepath.Join("/sys/fs/cgroup", pod.Linux.CgroupParent, id, "pids.max")
		if b, err := os.ReadFile(p); err != nil || strings.TrimSpace(string(b)) != "10" {
			t.Errorf("io.crid.unified=pids.max=10 on cgroup v2: %s = %q (%v), want 10", p, b, err)
		}
	}
}

func wantAnnotationErr(t *testing.T, what string, err error, code codes.Code, key string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), "annotation "+key) {
		t.Errorf("%s: %v (code %v), want %v naming annotation %s", what, err, status.Code(err), code, key)
	}
}

func removePod(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := h.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
}
