package core

import (
	"context"

	"github.com/crid-dev/crid/internal/apparmor"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// loadAppArmorAtStart loads crid's default AppArmor profile where the
// kernel enforces AppArmor, so that a problem (no apparmor_parser, a
// parser refusing the text) shows in the start log. It is not fatal: see
// apparmor.Loader for why every container that uses the profile checks
// again.
func (s *Service) loadAppArmorAtStart(ctx context.Context) {
	if !apparmor.Enabled() {
		return
	}
	if err := s.apparmor.EnsureDefault(ctx); err != nil {
		s.log.Error("AppArmor is enabled, but crid's default profile could not be loaded: "+
			"containers that need it (RuntimeDefault or no AppArmor profile, not privileged) will fail to be created until it can",
			"profile", apparmor.DefaultProfile, "error", err)
	}
}

// ensureAppArmor makes sure the profile spec's process runs under is
// loaded when it is crid's default; the runtime refuses a spec naming a
// profile the kernel does not have. Localhost profiles were checked when
// the spec was made.
func (s *Service) ensureAppArmor(ctx context.Context, spec *specs.Spec) error {
	if spec.Process == nil || spec.Process.ApparmorProfile != apparmor.DefaultProfile {
		return nil
	}
	return s.apparmor.EnsureDefault(ctx)
}
