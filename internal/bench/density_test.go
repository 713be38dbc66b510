package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestStatCPUTicks(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want int64
		ok   bool
	}{
		// utime 1234 and stime 56 (fields 14 and 15); the command name
		// holds a space and a parenthesis.
		{"42 (crid (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 12 0 100 0 0", 1290, true},
		{"42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 0 0", 0, true},
		{"42 (short) S 1 2 3", 0, false},
		{"no parenthesis", 0, false},
		{"42 (x) S 1 42 42 0 -1 0 0 0 0 0 u s", 0, false},
	} {
		got, ok := statCPUTicks([]byte(tc.stat))
		if got != tc.want || ok != tc.ok {
			t.Errorf("statCPUTicks(%q) = %d, %v; want %d, %v", tc.stat, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDensityMeasuresAndLeavesNothing(t *testing.T) {
	f := newFakeCRI()
	b, _ := newTestBench(t, f, Options{ListN: 2, DaemonPID: os.Getpid(),
		DensityPods: 6, DensityIdle: Duration{10 * time.Millisecond}, DensityBurst: 4, DensityChurn: 4,
		SettleMemory: Duration{time.Millisecond}})
	if err := b.Run(context.Background(), []string{"density"}); err != nil {
		t.Fatal(err)
	}
	if p, c, _ := f.counts(); p != 0 || c != 0 {
		t.Fatalf("after the run: %d pods, %d containers", p, c)
	}
	got := map[string]bool{}
	for _, m := range b.Metrics() {
		if m.Scenario != "density" {
			t.Errorf("metric of scenario %s: %+v", m.Scenario, m)
		}
		got[m.Key()] = true
	}
	for _, k := range []string{
		"density|pods=6|pod startup, second half p99",
		"density|pods=6|memory per pod (PSS, runtime only)",
		"density|pods=6|idle CPU of the runtime (daemon+monitors+pause)",
		"density|containers=12|ListContainers p50",
		"density|containers=12|ListContainerStats p99",
		"density|burst=4|pod startup (runp+2×create+start at once) p99",
		"density|churn=4|daemon fd growth",
		"density|churn=4|cycle, second half p50",
	} {
		if !got[k] {
			t.Errorf("no metric %s", k)
		}
	}
}
