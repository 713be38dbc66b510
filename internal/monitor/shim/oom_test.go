package shim

import (
	"testing"

	"github.com/crid-dev/crid/internal/monitor/wire"
)

func TestOOMEnded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		exit    wire.Exit
		counted bool
		want    bool
	}{
		{"init killed by the OOM killer", wire.Exit{Code: 137, Signal: 9}, true, true},
		{"shell reports its child's OOM kill", wire.Exit{Code: 137}, true, true},
		{"SIGKILL without an OOM kill (stop timeout)", wire.Exit{Code: 137, Signal: 9}, false, false},
		{"error exit after a child's OOM kill", wire.Exit{Code: 3}, true, false},
		{"SIGTERM on stop after an earlier OOM kill", wire.Exit{Code: 143, Signal: 15}, true, false},
		{"clean exit", wire.Exit{}, false, false},
	} {
		e := tc.exit
		if got := oomEnded(&e, tc.counted); got != tc.want {
			t.Errorf("%s: oomEnded = %v, want %v", tc.name, got, tc.want)
		}
	}
}
