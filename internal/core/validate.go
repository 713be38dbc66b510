package core

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/apparmor"
	"github.com/crid-dev/crid/internal/oci"
)

// validateSandboxSecurity checks the parts of a pod's Linux config that
// runc would otherwise refuse only after the network is set up, with an
// error that is not classified: sysctls must be namespaced, and in a
// namespace the pod does not share with the host; run_as ids must be
// usable (the pause's user is resolved after the network is set up).
// Errors wrap errdefs.ErrInvalidArgument. Call it from
// validateSandboxConfig.
func validateSandboxSecurity(c *runtime.PodSandboxConfig) error {
	if err := oci.ValidateSysctls(c.GetLinux().GetSysctls(), hostNetwork(c), hostIPC(c)); err != nil {
		return fmt.Errorf("pod sandbox config: %w", err)
	}
	if err := oci.ValidateRunAs(c.GetLinux().GetSecurityContext()); err != nil {
		return fmt.Errorf("pod sandbox config: %w", err)
	}
	if err := oci.ValidateSandboxProfiles(c.GetLinux().GetSecurityContext()); err != nil {
		return fmt.Errorf("pod sandbox config: %w", err)
	}
	return nil
}

// validatePIDTarget checks a pid namespace target: the CRI requires the
// target to be a container previously created in the same pod.
// targetSandboxID is the sandbox of the container named by target_id.
func validatePIDTarget(ns *runtime.NamespaceOption, sandboxID, targetSandboxID string) error {
	if ns.GetPid() != runtime.NamespaceMode_TARGET {
		return nil
	}
	if ns.GetTargetId() == "" {
		return fmt.Errorf("pid namespace mode TARGET without target_id: %w", errdefs.ErrInvalidArgument)
	}
	if targetSandboxID != sandboxID {
		return fmt.Errorf("pid namespace target %s belongs to pod %s, not to pod %s: %w",
			ns.GetTargetId(), targetSandboxID, sandboxID, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ignoredAppArmorProfile returns the AppArmor profile a request names
// that crid does not apply because the host has no AppArmor ("" when the
// request names none or the host enforces AppArmor).
func ignoredAppArmorProfile(sp *runtime.SecurityProfile, legacy string, hostHasAppArmor bool) string {
	if hostHasAppArmor {
		return ""
	}
	if sp != nil {
		switch sp.GetProfileType() {
		case runtime.SecurityProfile_Localhost:
			return strings.TrimPrefix(sp.GetLocalhostRef(), "localhost/")
		case runtime.SecurityProfile_RuntimeDefault:
			return "runtime/default"
		}
		return ""
	}
	if legacy == "" || legacy == "unconfined" {
		return ""
	}
	return legacy
}

// logIgnoredAppArmor logs, once per request, that a requested AppArmor
// profile is ignored on a host without AppArmor (the contract:
// ignored with a log line, not an error).
func logIgnoredAppArmor(log *slog.Logger, sp *runtime.SecurityProfile, legacy string) {
	if p := ignoredAppArmorProfile(sp, legacy, apparmor.Enabled()); p != "" {
		log.Info("AppArmor is not enabled on this host: ignoring the requested AppArmor profile", "profile", p)
	}
}
