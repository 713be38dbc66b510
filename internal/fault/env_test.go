package fault

import (
	"testing"
	"time"
)

// TestPendingTimeout: only a faultinject build reads the bound of a create
// that outlived its caller from the environment; a default build keeps the
// core's own (0 here) whatever the environment says.
func TestPendingTimeout(t *testing.T) {
	t.Setenv(PendingTimeoutEnvVar, "3s")
	d, err := PendingTimeout()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Duration(0)
	if Enabled {
		want = 3 * time.Second
	}
	if d != want {
		t.Fatalf("PendingTimeout() = %v with %s=3s (faultinject %v), want %v", d, PendingTimeoutEnvVar, Enabled, want)
	}
	t.Setenv(PendingTimeoutEnvVar, "soon")
	if _, err := PendingTimeout(); Enabled && err == nil {
		t.Fatal("a bound that is no duration was accepted")
	}
}
