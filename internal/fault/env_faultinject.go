//go:build faultinject

package fault

import (
	"log/slog"
	"os"
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
