package oci

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidateSysctls(t *testing.T) {
	for _, tc := range []struct {
		name             string
		sysctls          map[string]string
		hostNet, hostIPC bool
		ok               bool
	}{
		{"none", nil, false, false, true},
		{"safe namespaced", map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shm_rmid_forced": "1"}, false, false, true},
		{"unsafe namespaced", map[string]string{"net.core.somaxconn": "2048", "kernel.msgmax": "65536", "fs.mqueue.msg_max": "20"}, false, false, true},
		{"slash form", map[string]string{"net/ipv4/ip_forward": "1"}, false, false, true},
		{"uts", map[string]string{"kernel.domainname": "example.com"}, false, false, true},
		{"vm.swappiness", map[string]string{"vm.swappiness": "10"}, false, false, false},
		{"kernel.panic", map[string]string{"kernel.panic": "10"}, false, false, false},
		{"kernel prefix of an ipc name", map[string]string{"kernel.shmmax_extra": "1"}, false, false, false},
		{"fs not mqueue", map[string]string{"fs.file-max": "1"}, false, false, false},
		{"empty name", map[string]string{"": "1"}, false, false, false},
		{"net with host network", map[string]string{"net.core.somaxconn": "2048"}, true, false, false},
		{"net with host ipc", map[string]string{"net.core.somaxconn": "2048"}, false, true, true},
		{"ipc with host ipc", map[string]string{"kernel.shm_rmid_forced": "1"}, false, true, false},
		{"ipc with host network", map[string]string{"kernel.shm_rmid_forced": "1"}, true, false, true},
		{"uts with host network", map[string]string{"kernel.hostname": "x"}, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateSysctls(tc.sysctls, tc.hostNet, tc.hostIPC)
			if tc.ok && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tc.ok && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v, want InvalidArgument", err)
			}
		})
	}
}
