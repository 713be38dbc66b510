//go:build !faultinject

package fault

import (
	"log/slog"
	"os"
	"time"
)

// Enabled says whether this build reads fault rules.
const Enabled = false

// FromEnv returns nil: a default build never injects faults. CRID_FAULTS
// set on one is logged, so that a test run against the wrong binary is
// noticed.
func FromEnv(log *slog.Logger) (*Injector, error) {
	if os.Getenv(EnvVar) != "" {
		log.Warn(EnvVar + " is set but this crid was built without the faultinject tag: no fault is injected")
	}
	return nil, nil
}

// PendingTimeout is 0 in a default build: the core keeps its own bound (4
// minutes) and nothing in the environment changes it.
func PendingTimeout() (time.Duration, error) { return 0, nil }
