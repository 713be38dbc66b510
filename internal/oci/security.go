package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/apparmor"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// normalizeCap turns a CRI capability name ("net_admin", "CAP_NET_ADMIN")
// into the OCI form, rejecting names the kernel does not know.
func normalizeCap(c string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if !slices.Contains(capNames, n) {
		return "", fmt.Errorf("unknown capability %q: %w", c, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

func isAll(c string) bool { return strings.EqualFold(strings.TrimSpace(c), "ALL") }

// capabilities computes the process capability sets. "ALL" in add means
// every capability crid holds; "ALL" in drop empties the set; named
// additions are applied after the ALL forms and named drops last, so
// add ALL + drop CHOWN is everything but CHOWN and drop ALL + add CHOWN is
// only CHOWN (the same order containerd and CRI-O use).
func capabilities(c *runtime.Capability, privileged bool, hostCaps []string) (*specs.LinuxCapabilities, error) {
	set := map[string]bool{}
	base := defaultCaps
	if privileged {
		base = hostCaps
	}
	for _, n := range base {
		set[n] = true
	}
	if !privileged {
		if slices.ContainsFunc(c.GetAddCapabilities(), isAll) {
			for _, n := range hostCaps {
				set[n] = true
			}
		}
		if slices.ContainsFunc(c.GetDropCapabilities(), isAll) {
			clear(set)
		}
		for _, a := range c.GetAddCapabilities() {
			if isAll(a) {
				continue
			}
			n, err := normalizeCap(a)
			if err != nil {
				return nil, err
			}
			set[n] = true
		}
		for _, d := range c.GetDropCapabilities() {
			if isAll(d) {
				continue
			}
			n, err := normalizeCap(d)
			if err != nil {
				return nil, err
			}
			delete(set, n)
		}
	}
	// Ambient capabilities must also be permitted and inheritable or the
	// kernel refuses to raise them.
	var ambient []string
	for _, a := range c.GetAddAmbientCapabilities() {
		n, err := normalizeCap(a)
		if err != nil {
			return nil, err
		}
		set[n] = true
		ambient = append(ambient, n)
	}
	caps := ordered(set)
	out := &specs.LinuxCapabilities{
		Bounding:  caps,
		Permitted: slices.Clone(caps),
		Effective: slices.Clone(caps),
	}
	if len(ambient) > 0 {
		amb := map[string]bool{}
		for _, a := range ambient {
			amb[a] = true
		}
		out.Ambient = ordered(amb)
		out.Inheritable = ordered(amb)
	}
	return out, nil
}

// ordered lists a capability set in kernel bit order, for stable specs.
func ordered(set map[string]bool) []string {
	out := []string{}
	for _, n := range capNames {
		if set[n] {
			out = append(out, n)
		}
	}
	return out
}

const localhostPrefix = "localhost/"

// securityProfile resolves the CRI profile, falling back to the deprecated
// path string ("runtime/default", "docker/default", "unconfined",
// "localhost/<path>"). nil means nothing was asked for.
func securityProfile(sp *runtime.SecurityProfile, legacy, what string) (*runtime.SecurityProfile, error) {
	if sp != nil {
		if _, known := runtime.SecurityProfile_ProfileType_name[int32(sp.GetProfileType())]; !known {
			return nil, fmt.Errorf("%s: unknown profile type %d: %w", what, sp.GetProfileType(), errdefs.ErrInvalidArgument)
		}
		if sp.GetProfileType() != runtime.SecurityProfile_Localhost && sp.GetLocalhostRef() != "" {
			return nil, fmt.Errorf("%s: localhost_ref is only valid with profile type Localhost: %w", what, errdefs.ErrInvalidArgument)
		}
		if sp.GetProfileType() == runtime.SecurityProfile_Localhost && sp.GetLocalhostRef() == "" {
			return nil, fmt.Errorf("%s: profile type Localhost needs a localhost_ref: %w", what, errdefs.ErrInvalidArgument)
		}
		return sp, nil
	}
	switch legacy {
	case "":
		return nil, nil
	case "runtime/default", "docker/default":
		return &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}, nil
	case "unconfined":
		return &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}, nil
	}
	ref, ok := strings.CutPrefix(legacy, localhostPrefix)
	if !ok || ref == "" {
		return nil, fmt.Errorf("%s: invalid profile %q: %w", what, legacy, errdefs.ErrInvalidArgument)
	}
	return &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: ref}, nil
}

// seccompProfile returns the filter for s. It must run after the
// capabilities are set: the default profile allows some syscalls only when
// the matching capability is in the bounding set.
func seccompProfile(sp *runtime.SecurityProfile, legacy string, privileged bool, s *specs.Spec) (*specs.LinuxSeccomp, error) {
	prof, err := securityProfile(sp, legacy, "seccomp")
	if err != nil {
		return nil, err
	}
	if privileged || prof == nil {
		return nil, nil
	}
	switch prof.GetProfileType() {
	case runtime.SecurityProfile_Unconfined:
		return nil, nil
	case runtime.SecurityProfile_RuntimeDefault:
		out, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return nil, fmt.Errorf("seccomp default profile: %w", err)
		}
		return out, nil
	case runtime.SecurityProfile_Localhost:
		path := strings.TrimPrefix(prof.GetLocalhostRef(), localhostPrefix)
		b, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("seccomp profile %s does not exist: %w", path, errdefs.ErrInvalidArgument)
			}
			return nil, fmt.Errorf("read seccomp profile %s: %w", path, err)
		}
		out, err := seccomp.LoadProfile(string(b), s)
		if err != nil {
			return nil, fmt.Errorf("seccomp profile %s: %v: %w", path, err, errdefs.ErrInvalidArgument)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("seccomp: unknown profile type %v: %w", prof.GetProfileType(), errdefs.ErrInvalidArgument)
	}
}

// apparmorProfile returns the process's AppArmor profile, as containerd
// 2.x chooses it: where the kernel enforces AppArmor, RuntimeDefault and
// no profile at all mean crid's default profile (apparmor.DefaultProfile,
// which the core loads before the runtime needs it), except for a
// privileged process, which stays unconfined unless a Localhost profile is
// asked for by name (CRI-O leaves privileged containers unconfined even
// then); Unconfined means none; Localhost names a profile that must be
// loaded already. Where AppArmor is not enforced there is no profile (the
// core logs an ignored request).
func apparmorProfile(sp *runtime.SecurityProfile, legacy string, privileged bool, h hostFacts) (string, error) {
	prof, err := securityProfile(sp, legacy, "apparmor")
	if err != nil {
		return "", err
	}
	if !h.apparmor {
		return "", nil
	}
	switch {
	case prof == nil || prof.GetProfileType() == runtime.SecurityProfile_RuntimeDefault:
		if privileged {
			return "", nil
		}
		return apparmor.DefaultProfile, nil
	case prof.GetProfileType() == runtime.SecurityProfile_Unconfined:
		return "", nil
	}
	name := strings.TrimPrefix(prof.GetLocalhostRef(), localhostPrefix)
	ok, err := h.apparmorLoaded(name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("apparmor profile %q is not loaded: %w", name, errdefs.ErrInvalidArgument)
	}
	return name, nil
}

// ValidateSandboxProfiles checks a pod's seccomp and AppArmor profiles as
// SandboxSpec will use them (known type, localhost_ref exactly with
// Localhost, a Localhost seccomp file that exists), so that a bad one is
// refused before the pod's network is set up. Errors wrap
// errdefs.ErrInvalidArgument.
func ValidateSandboxProfiles(sc *runtime.LinuxSandboxSecurityContext) error {
	//lint:ignore SA1019 older kubelets still send the deprecated seccomp_profile_path field
	prof, err := securityProfile(sc.GetSeccomp(), sc.GetSeccompProfilePath(), "seccomp")
	if err != nil {
		return err
	}
	if _, err := securityProfile(sc.GetApparmor(), "", "apparmor"); err != nil {
		return err
	}
	if sc.GetPrivileged() || prof.GetProfileType() != runtime.SecurityProfile_Localhost {
		return nil
	}
	path := strings.TrimPrefix(prof.GetLocalhostRef(), localhostPrefix)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("seccomp profile %s does not exist: %w", path, errdefs.ErrInvalidArgument)
	}
	return nil
}
