//go:build faultinject

package fault

import (
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Enabled says whether this build reads fault rules.
const Enabled = true

// FromEnv returns the rules in CRID_FAULTS, or nil when it is empty.
func FromEnv(log *slog.Logger) (*Injector, error) {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return nil, nil
	}
	return Parse(spec, log)
}

// PendingTimeout is the bound of a create that outlived its caller as
// CRID_FAULTS_PENDING_TIMEOUT sets it (a Go duration), so that a test can
// wait for it; 0 (the core's default, 4 minutes) when it is not set.
func PendingTimeout() (time.Duration, error) {
	v := os.Getenv(PendingTimeoutEnvVar)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 3s", PendingTimeoutEnvVar, v)
	}
	return d, nil
}
