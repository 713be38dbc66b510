package oci

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
)

// ipcSysctls are the kernel.* sysctls that live in the IPC namespace
// (ipc/ipc_sysctl.c); fs.mqueue.* does too.
var ipcSysctls = []string{
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
}

// utsSysctls live in the UTS namespace; crid sets the hostname itself, but
// the kernel allows them per namespace, so runc would apply them.
var utsSysctls = []string{"kernel.hostname", "kernel.domainname"}

// SysctlNamespace names the namespace a sysctl belongs to ("net", "ipc",
// "uts"), or "" for a sysctl that is node-wide. Names may use "/" as
// separator, as kubelet accepts both forms.
func SysctlNamespace(name string) string {
	n := strings.ReplaceAll(name, "/", ".")
	switch {
	case strings.HasPrefix(n, "net."):
		return "net"
	case strings.HasPrefix(n, "fs.mqueue."), slices.Contains(ipcSysctls, n):
		return "ipc"
	case slices.Contains(utsSysctls, n):
		return "uts"
	}
	return ""
}

// ValidateSysctls checks a pod's sysctls before anything is created: each
// must be namespaced (a node-wide one such as vm.swappiness or
// kernel.panic would change the host, and runc refuses it only after the
// network is set up, with an error that does not say InvalidArgument), and
// its namespace must be the pod's own, not the host's. Errors wrap
// errdefs.ErrInvalidArgument.
func ValidateSysctls(sysctls map[string]string, hostNetwork, hostIPC bool) error {
	names := make([]string, 0, len(sysctls))
	for k := range sysctls {
		names = append(names, k)
	}
	sort.Strings(names) // deterministic error for the same request
	for _, k := range names {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("sysctl with an empty name: %w", errdefs.ErrInvalidArgument)
		}
		if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(sysctls[k], 0) >= 0 {
			// The write to /proc/sys would fail only after the network is set up.
			return fmt.Errorf("sysctl %q: NUL byte in the name or value: %w", k, errdefs.ErrInvalidArgument)
		}
		switch SysctlNamespace(k) {
		case "":
			return fmt.Errorf("sysctl %q is not namespaced: it would change the node, not the pod: %w", k, errdefs.ErrInvalidArgument)
		case "net":
			if hostNetwork {
				return fmt.Errorf("sysctl %q needs the pod's own network namespace, but the pod uses the host network: %w", k, errdefs.ErrInvalidArgument)
			}
		case "ipc":
			if hostIPC {
				return fmt.Errorf("sysctl %q needs the pod's own IPC namespace, but the pod uses the host IPC: %w", k, errdefs.ErrInvalidArgument)
			}
		case "uts":
			if hostNetwork {
				// Host-network pods share the host's UTS namespace too.
				return fmt.Errorf("sysctl %q needs the pod's own UTS namespace, but the pod uses the host network: %w", k, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}
