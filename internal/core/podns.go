package core

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/crid-dev/crid/internal/network"
	"github.com/crid-dev/crid/internal/oci"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod whose containers each have their own PID namespace (kubelet's
// default, unless shareProcessNamespace) needs no pause process: the pause
// only holds namespaces, and the network one is already pinned by a bind
// mount. crid pins the IPC and UTS namespaces the same way and runs no
// pause at all, as CRI-O does with drop_infra_ctr. That saves a `runc run`
// (two runtime processes started, 70-100 ms on a small node) on every pod
// start and a process per pod. Pods that share a PID namespace, or have
// their own user namespace, keep the pause.

// pinnedPod reports whether the pod runs without a pause process.
func pinnedPod(cfg *runtime.PodSandboxConfig, userns *runtime.UserNamespace) bool {
	return userns == nil && cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() != runtime.NamespaceMode_POD
}

// podNamespaces are the pins of a pod without a pause ("" = the host's).
type podNamespaces struct {
	ipc, uts string
}

// podNamespacePins are where pod id's namespaces are pinned in dir (the
// service's shared pin dir, see pinDir), whether or not it has them.
func podNamespacePins(dir, id string) podNamespaces {
	return podNamespaces{ipc: filepath.Join(dir, id+"-ipc"), uts: filepath.Join(dir, id+"-uts")}
}

// pinPodNamespaces creates the pod's IPC namespace (unless it uses the
// host's) and UTS namespace (unless host network), pinned at the paths in
// all; sets the pod's hostname; and applies the pod's sysctls where they
// live: kernel.*/fs.mqueue.* in the new IPC namespace, net.* in the pod's
// network namespace at netnsPath. The sysctls were validated against the
// namespace modes before (oci.ValidateSysctls). On failure nothing is left
// pinned.
func pinPodNamespaces(all podNamespaces, cfg *runtime.PodSandboxConfig, netnsPath string) (podNamespaces, error) {
	var out podNamespaces
	flags := 0
	if !hostIPC(cfg) {
		flags |= unix.CLONE_NEWIPC
		out.ipc = all.ipc
	}
	if !hostNetwork(cfg) {
		flags |= unix.CLONE_NEWUTS
		out.uts = all.uts
	}
	if flags == 0 {
		return out, nil
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is moved back to crid's own namespaces at the end; if
		// that fails it stays locked and Go ends it with the goroutine.
		goruntime.LockOSThread()
		restore, err := saveThreadNamespaces("ipc", "uts", "net")
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- err
			return
		}
		defer func() {
			if restore() == nil {
				goruntime.UnlockOSThread()
			}
		}()
		if err := unix.Unshare(flags); err != nil {
			errc <- fmt.Errorf("unshare pod namespaces: %w", err)
			return
		}
		errc <- setUpPinned(out, cfg, netnsPath)
	}()
	if err := <-errc; err != nil {
		unpinPodNamespaces(out)
		return podNamespaces{}, err
	}
	return out, nil
}

// setUpPinned runs on the locked thread inside the new namespaces.
func setUpPinned(ns podNamespaces, cfg *runtime.PodSandboxConfig, netnsPath string) error {
	if h := cfg.GetHostname(); h != "" && ns.uts != "" {
		if err := unix.Sethostname([]byte(h)); err != nil {
			return fmt.Errorf("set hostname %q: %w", h, err)
		}
	}
	sysctls := cfg.GetLinux().GetSysctls()
	// The network ones only once inside the pod's network namespace; the
	// key may be written with slashes (net/ipv4/...), as runc accepts.
	for k, v := range sysctls {
		if oci.SysctlNamespace(k) == "net" {
			continue
		}
		if err := writeSysctl(k, v); err != nil {
			return err
		}
	}
	joined := false
	for k, v := range sysctls {
		if oci.SysctlNamespace(k) != "net" {
			continue
		}
		if !joined {
			if netnsPath == "" {
				return fmt.Errorf("sysctl %s needs the pod's network namespace", k)
			}
			if err := setnsPath(netnsPath, unix.CLONE_NEWNET); err != nil {
				return err
			}
			joined = true
		}
		if err := writeSysctl(k, v); err != nil {
			return err
		}
	}
	for _, p := range []struct{ pin, kind string }{{ns.ipc, "ipc"}, {ns.uts, "uts"}} {
		if p.pin == "" {
			continue
		}
		if err := pinNS("/proc/thread-self/ns/"+p.kind, p.pin); err != nil {
			return err
		}
	}
	return nil
}

func writeSysctl(key, value string) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

func setnsPath(path string, kind int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, kind); err != nil {
		return fmt.Errorf("join namespace %s: %w", path, err)
	}
	return nil
}

// saveThreadNamespaces opens the calling thread's namespaces of the given
// kinds and returns a function that moves the thread back into them.
func saveThreadNamespaces(kinds ...string) (func() error, error) {
	flags := map[string]int{"ipc": unix.CLONE_NEWIPC, "uts": unix.CLONE_NEWUTS, "net": unix.CLONE_NEWNET}
	fds := map[string]int{}
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	for _, k := range kinds {
		fd, err := unix.Open("/proc/thread-self/ns/"+k, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("open own %s namespace: %w", k, err)
		}
		fds[k] = fd
	}
	return func() error {
		defer closeAll()
		var errs []error
		for k, fd := range fds {
			if err := unix.Setns(fd, flags[k]); err != nil {
				errs = append(errs, fmt.Errorf("return to own %s namespace: %w", k, err))
			}
		}
		return errors.Join(errs...)
	}, nil
}

// pinsAlive reports whether a pinned pod's namespaces are all still
// pinned (namespace files mounted at their paths).
func pinsAlive(rec sandboxRecord) bool {
	for _, p := range []string{rec.IPCNSPath, rec.UTSNSPath, rec.NetNSPath} {
		if p != "" && !network.IsNSMount(p) {
			return false
		}
	}
	return true
}

// unpinPodNamespaces removes the pins; missing ones are not an error.
func unpinPodNamespaces(ns podNamespaces) error {
	return errors.Join(network.Unpin(ns.ipc), network.Unpin(ns.uts))
}
