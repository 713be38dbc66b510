package e2e

import (
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestExecMatchesInit checks that a process started by ExecSync (through
// crid-nsexec, not runc exec) runs with exactly the container's own
// context: the same namespaces, cgroups, user and groups, capability sets,
// no_new_privs, seccomp mode and LSM label as the container's pid 1, for a
// spread of security contexts.
func TestExecMatchesInit(t *testing.T) {
	podID, pod := isoPod(t, nil)
	tests := []struct {
		name string
		sc   *runtime.LinuxContainerSecurityContext
	}{
		{"defaults", &runtime.LinuxContainerSecurityContext{}},
		{"restricted", &runtime.LinuxContainerSecurityContext{
			RunAsUser:          &runtime.Int64Value{Value: 1000},
			RunAsGroup:         &runtime.Int64Value{Value: 3000},
			SupplementalGroups: []int64{2001, 2002},
			NoNewPrivs:         true,
			ReadonlyRootfs:     true,
			Capabilities:       &runtime.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"CAP_NET_BIND_SERVICE"}},
			Seccomp:            &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
		}},
		{"root-seccomp-no-nnp", &runtime.LinuxContainerSecurityContext{
			Seccomp:      &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
			Capabilities: &runtime.Capability{AddCapabilities: []string{"CAP_SYS_ADMIN"}},
		}},
	}
	fields := []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := containerConfig(tt.name, "sleep", "1000")
			// Its own pid namespace makes the init pid 1 for the checks.
			tt.sc.NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
			cfg.Linux = &runtime.LinuxContainerConfig{SecurityContext: tt.sc}
			id := createStart(t, podID, pod, cfg)
			const initPid = "1"
			init := procStatus(t, id, initPid)
			self := procStatus(t, id, "self")
			for _, f := range fields {
				if init[f] != self[f] {
					t.Errorf("%s: exec'd process has %q, the container's init %q", f, self[f], init[f])
				}
			}
			if tt.sc.Seccomp != nil && self["Seccomp"] != "2" {
				t.Errorf("Seccomp %q, want 2 (filter)", self["Seccomp"])
			}
			for _, ns := range []string{"mnt", "net", "ipc", "uts", "pid", "cgroup", "user"} {
				a := must(t, id, "readlink /proc/"+initPid+"/ns/"+ns)
				b := must(t, id, "readlink /proc/self/ns/"+ns)
				if a != b {
					t.Errorf("namespace %s: exec'd process in %s, the container's init in %s", ns, b, a)
				}
			}
			// The LSM label (AppArmor's crid-default where the kernel
			// enforces it, entered by crid-nsexec; none elsewhere).
			label := func(pid string) string {
				return must(t, id, "cat /proc/"+pid+"/attr/current 2>/dev/null || echo none")
			}
			if a, b := label(initPid), label("self"); a != b {
				t.Errorf("LSM label: exec'd process %q, the container's init %q", b, a)
			}
			if a, b := must(t, id, "cat /proc/"+initPid+"/cgroup"), must(t, id, "cat /proc/self/cgroup"); a != b {
				t.Errorf("cgroups differ:\nexec'd:\n%s\ninit:\n%s", b, a)
			}
			// Only stdio reaches the process.
			fds := strings.Fields(must(t, id, "ls /proc/self/fd"))
			if len(fds) > 4 { // 0 1 2 and ls's own directory fd
				t.Errorf("exec'd process has descriptors %v, want only stdio", fds)
			}
		})
	}
}

// TestExecFailures checks the errors and codes of an exec that cannot start.
func TestExecFailures(t *testing.T) {
	podID, pod := isoPod(t, nil)
	id := createStart(t, podID, pod, containerConfig("c", "sleep", "1000"))
	ctx := ctxT(t)
	_, err := h.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"no-such-command"}, Timeout: 10})
	if err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("missing command: %v, want an error saying the executable is not found", err)
	}
	_, err = h.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"/etc/hostname"}, Timeout: 10})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "permission denied") {
		t.Errorf("non-executable file: %v, want permission denied", err)
	}
	// Relative to the image's PATH, with an exit code passed through.
	r := execSync(t, id, 10, "sh", "-c", "exit 7")
	if r.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", r.ExitCode)
	}
	// Killed by a signal: 128+n, as a shell reports it.
	r = execSync(t, id, 10, "sh", "-c", "kill -TERM $$")
	if r.ExitCode != 128+15 {
		t.Errorf("exit code %d, want 143", r.ExitCode)
	}
}
