package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSlopePer1000(t *testing.T) {
	xs := []float64{0, 100, 200, 300}
	for _, c := range []struct {
		ys   []float64
		want float64
	}{
		{[]float64{10, 10, 10, 10}, 0},
		{[]float64{10, 11, 12, 13}, 10},  // 1 per 100 cycles
		{[]float64{50, 49, 48, 47}, -10}, // shrinking
		{[]float64{10, 12, 10, 12}, 4},   // noise around a flat line has a small slope
	} {
		if got := slopePer1000(xs, c.ys); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("slope of %v = %v, want %v", c.ys, got, c.want)
		}
	}
	if got := slopePer1000([]float64{5}, []float64{1}); got != 0 {
		t.Errorf("slope of one point = %v, want 0", got)
	}
}

func TestParseGoroutines(t *testing.T) {
	for line, want := range map[string]int{
		"go_goroutines 42":           42,
		"go_goroutines 1.5e+02":      150,
		"# TYPE go_goroutines gauge": -1,
		"go_goroutines_total 3":      -1,
	} {
		n, ok := parseGoroutines(line)
		if (want < 0) == ok || (ok && n != want) {
			t.Errorf("parseGoroutines(%q) = %d, %v; want %d", line, n, ok, want)
		}
	}
}

func TestChurnMetrics(t *testing.T) {
	var samples []churnSample
	for i := 0; i <= 4; i++ {
		samples = append(samples, churnSample{cycles: i * 100, fp: daemonFootprint{rssKiB: 1024 * int64(40+i), fds: 20, threads: 12}, goroutines: 50})
	}
	ms := churnMetrics(400, samples, []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond})
	got := map[string]float64{}
	for _, m := range ms {
		got[m.Group+"|"+m.Name] = m.Value
	}
	for k, want := range map[string]float64{
		"churn=400|daemon RSS, first sample":      40,
		"churn=400|daemon RSS, last sample":       44,
		"churn=400|daemon RSS slope":              10,
		"churn=400|daemon RSS slope, second half": 10,
		"churn=400|daemon fds slope":              0,
		"churn=400|daemon goroutines slope":       0,
		"cycles=300|daemon RSS":                   43,
		"churn=400|cycle, second half p50":        3,
	} {
		if v, ok := got[k]; !ok || math.Abs(v-want) > 1e-9 {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
	// Without a metrics endpoint there is no goroutine figure at all.
	samples[0].goroutines = -1
	for _, m := range churnMetrics(400, samples, nil) {
		if strings.Contains(m.Name, "goroutines") {
			t.Errorf("goroutine metric %q without goroutine samples", m.Name)
		}
	}
}

func TestStatusKiB(t *testing.T) {
	status := "Name:\tcrid\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\nThreads:\t12\n"
	if n, err := statusKiB(status, "VmHWM:"); err != nil || n != 51234 {
		t.Fatalf("VmHWM = %d, %v", n, err)
	}
	if _, err := statusKiB(status, "VmSwap:"); err == nil {
		t.Fatal("missing field read without error")
	}
	if _, err := statusKiB("VmHWM:\t12 MB\n", "VmHWM:"); err == nil {
		t.Fatal("field in another unit read without error")
	}
}

func TestDiskUsageCountsLinksOnce(t *testing.T) {
	d := t.TempDir()
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(d, "a"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	one, err := diskUsage([]string{d})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(d, "a"), filepath.Join(d, "b")); err != nil {
		t.Fatal(err)
	}
	two, err := diskUsage([]string{d, filepath.Join(d, "missing")})
	if err != nil {
		t.Fatal(err)
	}
	if one < int64(len(data)) || two != one {
		t.Fatalf("usage %d, with a hard link %d; want >= %d and equal", one, two, len(data))
	}
}

func TestPullSizeMetrics(t *testing.T) {
	g := bigImage{SizeMiB: 256, Layers: 20, Compression: "zstd"}
	// The ratio is taken repetition by repetition, then the median.
	pulls, write := []float64{200, 300, 900}, []float64{100, 100, 300}
	get := func(ms []Metric, name string) Metric {
		for _, m := range ms {
			if m.Name == name {
				return m
			}
		}
		t.Fatalf("no metric %q in %v", name, ms)
		return Metric{}
	}
	ms := pullSizeMetrics(g, false, pulls, []float64{30, 40, 35}, write, write, write)
	if m := get(ms, "zstd 20 layers: pull / floor fetch+decompress+write"); m.Value != 3 || m.Group != "size_mib=256" {
		t.Errorf("ratio %v in %s, want 3 in size_mib=256", m.Value, m.Group)
	}
	if m := get(ms, "zstd 20 layers: daemon peak RSS"); m.Value != 40 {
		t.Errorf("peak RSS %v, want the highest, 40", m.Value)
	}
	ms = pullSizeMetrics(g, true, pulls, []float64{30, 40, 35}, write, write, write)
	if m := get(ms, "zstd 256 MiB: pull p50"); m.Value != 300 || m.Group != "layers=20" {
		t.Errorf("pull p50 %v in %s, want 300 in layers=20", m.Value, m.Group)
	}
}
