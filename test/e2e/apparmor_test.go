package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"k8s.io/client-go/tools/remotecommand"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Issue 12: crid's default AppArmor profile, crid-default, on a node that
// enforces AppArmor (the VM of test/vm: test/vm/e2e.sh -- -test.run
// TestAppArmor).

const (
	defaultProfileLabel = "crid-default (enforce)"
	// profileFlags is how crid's profile text declares its flags; the
	// restart checks load variants of the text with "complain" added.
	profileFlags = "flags=(attach_disconnected,mediate_deleted)"
)

// requireAppArmor skips the test where the kernel does not enforce
// AppArmor, and returns apparmor_parser's path.
func requireAppArmor(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	if err != nil || !strings.HasPrefix(string(b), "Y") {
		t.Skip("the kernel does not enforce AppArmor (run it on the VM: test/vm/e2e.sh -- -test.run TestAppArmor)")
	}
	if _, err := os.Stat("/sys/kernel/security/apparmor/profiles"); err != nil {
		t.Skipf("AppArmor's securityfs is not mounted: %v", err)
	}
	for _, p := range []string{"apparmor_parser", "/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("the node enforces AppArmor but has no apparmor_parser (the apparmor package)")
	return ""
}

// loadProfile loads (or replaces) an AppArmor profile from text.
func loadProfile(t *testing.T, parser, text string) {
	t.Helper()
	cmd := exec.Command(parser, "-Kr")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apparmor_parser -Kr: %v\n%s\nprofile:\n%s", err, out, text)
	}
}

// label is the AppArmor label of a process in the container (a path
// under /proc: "1" is the init, "self" the exec'd cat).
func label(t *testing.T, id, pid string) string {
	t.Helper()
	return must(t, id, "cat /proc/"+pid+"/attr/current")
}

func wantLabel(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s: AppArmor label %q, want %q", what, got, want)
	}
}

// ownPIDConfig is a container in a pid namespace of its own, so that
// /proc/1 is its init (a pod's default is one shared namespace).
func ownPIDConfig(name string, cmd ...string) *runtime.ContainerConfig {
	cfg := containerConfig(name, cmd...)
	secCtx(cfg).NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
	return cfg
}

// logSince is crid's log from byte offset on.
func logSince(offset int64) string {
	b, _ := os.ReadFile(h.logPath)
	if int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

func logSize(t *testing.T) int64 {
	t.Helper()
	st, err := os.Stat(h.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestAppArmor(t *testing.T) {
	parser := requireAppArmor(t)
	pull(t, busybox)
	// A Localhost profile of the test's own: everything but one file.
	local := "crid-e2e-local-" + runTag
	abi := ""
	if _, err := os.Stat("/etc/apparmor.d/abi/3.0"); err == nil {
		abi = "abi <abi/3.0>,\n"
	}
	loadProfile(t, parser, abi+"profile "+local+" "+profileFlags+" {\n  file,\n  network,\n  capability,\n  signal,\n  ptrace,\n  umount,\n  deny /tmp/denied-by-profile w,\n}\n")
	// Registered first, so it runs after the pods' removal.
	t.Cleanup(func() {
		if err := os.WriteFile("/sys/kernel/security/apparmor/.remove", []byte(local), 0o200); err != nil {
			t.Errorf("unload %s: %v", local, err)
		}
	})
	pod := podConfig(t)
	podID := runPod(t, pod, "")

	t.Run("default", func(t *testing.T) { appArmorDefault(t, podID, pod) })
	t.Run("denied", func(t *testing.T) { appArmorDenied(t, podID, pod) })
	t.Run("exec through runc", func(t *testing.T) {
		// runc-b has direct_exec off: ExecSync goes through `runc exec`.
		pod := podConfig(t)
		podID := runPod(t, pod, "runc-b")
		id := createStart(t, podID, pod, ownPIDConfig("sleeper", "sleep", "100000"))
		before := scrapeMetrics(t)
		wantLabel(t, "runc-b init", label(t, id, "1"), defaultProfileLabel)
		wantLabel(t, "runc-b ExecSync", label(t, id, "self"), defaultProfileLabel)
		if d := scrapeMetrics(t).value("crid_exec_duration_seconds", map[string]string{"kind": "sync", "path": "runtime"}) -
			before.value("crid_exec_duration_seconds", map[string]string{"kind": "sync", "path": "runtime"}); d != 2 {
			t.Errorf("%v ExecSyncs went through the runtime, want 2", d)
		}
	})
	t.Run("pause", func(t *testing.T) {
		// A shared pid namespace has a pause process as its pid 1.
		pod := podConfig(t)
		podSecCtx(pod).NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}
		podID := runPod(t, pod, "")
		cfg := containerConfig("sleeper", "sleep", "100000")
		secCtx(cfg).NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}
		id := createStart(t, podID, pod, cfg)
		if comm := must(t, id, "cat /proc/1/comm"); comm != "pause" {
			t.Fatalf("pid 1 of the pod is %q, want the pause", comm)
		}
		wantLabel(t, "pause", label(t, id, "1"), defaultProfileLabel)
	})
	t.Run("privileged", func(t *testing.T) {
		pod := podConfig(t)
		podSecCtx(pod).Privileged = true
		podID := runPod(t, pod, "")
		cfg := ownPIDConfig("privileged", "sleep", "100000")
		secCtx(cfg).Privileged = true
		id := createStart(t, podID, pod, cfg)
		wantLabel(t, "privileged init", label(t, id, "1"), "unconfined")
		wantLabel(t, "privileged ExecSync", label(t, id, "self"), "unconfined")
		// A profile named explicitly applies even so (containerd's rule).
		cfg = ownPIDConfig("privileged-local", "sleep", "100000")
		secCtx(cfg).Privileged = true
		secCtx(cfg).Apparmor = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: local}
		id = createStart(t, podID, pod, cfg)
		wantLabel(t, "privileged with a Localhost profile", label(t, id, "1"), local+" (enforce)")
	})
	t.Run("localhost", func(t *testing.T) {
		cfg := ownPIDConfig("localhost", "sleep", "100000")
		secCtx(cfg).Apparmor = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: local}
		id := createStart(t, podID, pod, cfg)
		wantLabel(t, "Localhost init", label(t, id, "1"), local+" (enforce)")
		wantLabel(t, "Localhost ExecSync", label(t, id, "self"), local+" (enforce)")
		fails(t, id, "touch /tmp/denied-by-profile")
		must(t, id, "touch /tmp/allowed-by-profile")

		cfg = ownPIDConfig("not-loaded", "sleep", "100000")
		secCtx(cfg).Apparmor = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "crid-e2e-not-loaded-" + runTag}
		wantCode(t, "Localhost profile not loaded", tryCreate(t, podID, pod, cfg), codes.InvalidArgument)
	})
	// Last: it restarts crid.
	t.Run("restart", func(t *testing.T) { appArmorRestart(t, parser, podID, pod) })
}

// appArmorDefault: containers without a profile and with RuntimeDefault
// run under crid-default, and so does every process exec'd into them, by
// each path: ExecSync and non-tty streaming exec through crid-nsexec, tty
// exec through runc exec.
func appArmorDefault(t *testing.T, podID string, pod *runtime.PodSandboxConfig) {
	unset := createStart(t, podID, pod, ownPIDConfig("unset", "sleep", "100000"))
	cfg := ownPIDConfig("runtime-default", "sleep", "100000")
	secCtx(cfg).Apparmor = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	rtDefault := createStart(t, podID, pod, cfg)
	cfg = ownPIDConfig("unconfined", "sleep", "100000")
	secCtx(cfg).Apparmor = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}
	unconfined := createStart(t, podID, pod, cfg)

	nsexecSync := map[string]string{"kind": "sync", "path": "nsexec"}
	before := scrapeMetrics(t)
	wantLabel(t, "no profile: init", label(t, unset, "1"), defaultProfileLabel)
	wantLabel(t, "no profile: ExecSync", label(t, unset, "self"), defaultProfileLabel)
	wantLabel(t, "RuntimeDefault: init", label(t, rtDefault, "1"), defaultProfileLabel)
	wantLabel(t, "RuntimeDefault: ExecSync", label(t, rtDefault, "self"), defaultProfileLabel)
	wantLabel(t, "Unconfined: init", label(t, unconfined, "1"), "unconfined")
	wantLabel(t, "Unconfined: ExecSync", label(t, unconfined, "self"), "unconfined")
	if d := scrapeMetrics(t).value("crid_exec_duration_seconds", nsexecSync) - before.value("crid_exec_duration_seconds", nsexecSync); d != 6 {
		t.Errorf("%v of 6 ExecSyncs went through crid-nsexec", d)
	}

	for _, tty := range []bool{false, true} {
		u := execURL(t, &runtime.ExecRequest{ContainerId: unset, Cmd: []string{"cat", "/proc/self/attr/current"}, Stdout: true, Stderr: !tty, Tty: tty})
		var out, errb bytes.Buffer
		opts := remotecommand.StreamOptions{Stdout: &out, Tty: tty}
		if !tty {
			opts.Stderr = &errb
		}
		if err := executor(t, "spdy", u).StreamWithContext(ctxT(t), opts); err != nil {
			t.Fatalf("streaming exec (tty %v): %v: %s", tty, err, errb.String())
		}
		wantLabel(t, map[bool]string{false: "streaming exec", true: "streaming exec with a tty"}[tty],
			strings.TrimSpace(out.String()), defaultProfileLabel)
	}
}

// appArmorDenied: what the profile forbids fails under it, in the init and
// in exec'd processes, and works in an otherwise identical container left
// unconfined: the profile is what stops it.
func appArmorDenied(t *testing.T, podID string, pod *runtime.PodSandboxConfig) {
	// The init tries a mount first thing and leaves the result.
	start := func(name string, sp *runtime.SecurityProfile) string {
		cfg := ownPIDConfig(name, "sh", "-c", "mkdir -p /tmp/m && mount -t tmpfs init-try /tmp/m 2>/tmp/init-mount.err; echo $? >/tmp/init-mount.rc; exec sleep 100000")
		secCtx(cfg).Capabilities = &runtime.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
		secCtx(cfg).Apparmor = sp
		return createStart(t, podID, pod, cfg)
	}
	confined := start("sysadmin-default", nil)
	unconfined := start("sysadmin-unconfined", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined})
	for _, id := range []string{confined, unconfined} {
		if !waitFor(20*time.Second, func() bool { c, _, _ := run(t, id, "test -s /tmp/init-mount.rc"); return c == 0 }) {
			t.Fatalf("the init of %s did not record its mount attempt", id[:12])
		}
	}

	if rc := must(t, confined, "cat /tmp/init-mount.rc"); rc == "0" {
		t.Errorf("crid-default: the init mounted a tmpfs with CAP_SYS_ADMIN")
	} else {
		t.Logf("crid-default init's mount: exit %s: %s", rc, must(t, confined, "cat /tmp/init-mount.err"))
	}
	fails(t, confined, "mount -t tmpfs exec-try /tmp/m")
	fails(t, confined, "printf h > /proc/sysrq-trigger")
	if m := must(t, confined, "grep -c try /proc/self/mountinfo || true"); m != "0" {
		t.Errorf("crid-default: %s tmpfs mounts made it", m)
	}
	// Still allowed: its own files and its own /proc entries.
	must(t, confined, "echo ok > /tmp/own-file && echo 500 > /proc/self/oom_score_adj")

	// The same container, unconfined: each of those works (sysrq h only
	// prints the help to the kernel log).
	if rc := must(t, unconfined, "cat /tmp/init-mount.rc"); rc != "0" {
		t.Errorf("unconfined: the init's mount failed (exit %s): %s; the comparison proves nothing", rc, must(t, unconfined, "cat /tmp/init-mount.err"))
	}
	must(t, unconfined, "mount -t tmpfs exec-try /tmp/m && umount /tmp/m")
	must(t, unconfined, "printf h > /proc/sysrq-trigger")
}

// appArmorRestart: a restarted crid keeps a loaded crid-default whose text
// is the one it would load, and replaces one whose text differs. To see
// which happened, the test loads crid's own text in complain mode: kept,
// a new container shows "(complain)"; replaced, "(enforce)" (a label
// names the kernel's current version of the profile).
func appArmorRestart(t *testing.T, parser, podID string, pod *runtime.PodSandboxConfig) {
	record := filepath.Join(h.base, "state", "apparmor", "crid-default")
	text, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("crid's record of the loaded profile: %v", err)
	}
	if !strings.Contains(string(text), "# crid-profile-sha256: ") || !strings.Contains(string(text), profileFlags) {
		t.Fatalf("record %s lacks the hash or the flags:\n%s", record, text)
	}
	// Whatever happens, the node is left with crid's profile enforced.
	t.Cleanup(func() {
		if b, err := os.ReadFile(record); err == nil {
			loadProfile(t, parser, string(b))
		}
	})
	restart := func() string {
		t.Helper()
		off := logSize(t)
		h.stop(syscall.SIGTERM)
		if err := h.start(); err != nil {
			t.Fatal(err)
		}
		return logSince(off)
	}
	complain := strings.Replace(string(text), profileFlags, strings.TrimSuffix(profileFlags, ")")+",complain)", 1)
	loadProfile(t, parser, complain)

	log := restart()
	if !strings.Contains(log, "already loaded") {
		t.Errorf("restart with the same text: no log line about reusing the loaded profile:\n%s", log)
	}
	id := createStart(t, podID, pod, ownPIDConfig("after-restart", "sleep", "100000"))
	wantLabel(t, "after a restart with the same text", label(t, id, "1"), "crid-default (complain)")

	// An older crid's record: the text differs, crid replaces the profile.
	old := strings.Replace(string(text), "# crid-profile-sha256: ", "# crid-profile-sha256: 0000", 1)
	if err := os.WriteFile(record, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	log = restart()
	if !strings.Contains(log, "loaded AppArmor profile") || !strings.Contains(log, "text changed") {
		t.Errorf("restart with a changed text: no log line about reloading:\n%s", log)
	}
	id = createStart(t, podID, pod, ownPIDConfig("after-upgrade", "sleep", "100000"))
	wantLabel(t, "after a restart with a changed text", label(t, id, "1"), defaultProfileLabel)
	if b, err := os.ReadFile(record); err != nil || !bytes.Equal(b, text) {
		t.Errorf("record after the reload: %v; equal to crid's text: %v", err, bytes.Equal(b, text))
	}
}
