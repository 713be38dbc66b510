package bench

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func ms(vs ...int) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		// Reverse order: Percentile must sort a copy.
		hundred[i] = time.Duration(100-i) * time.Millisecond
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", ms(7), 50, 7 * time.Millisecond},
		{"single p99", ms(7), 99, 7 * time.Millisecond},
		{"two p50 is the lower (nearest rank)", ms(10, 20), 50, 10 * time.Millisecond},
		{"two p51 is the upper", ms(10, 20), 51, 20 * time.Millisecond},
		{"odd median", ms(3, 1, 2), 50, 2 * time.Millisecond},
		{"1..100 p50", hundred, 50, 50 * time.Millisecond},
		{"1..100 p90", hundred, 90, 90 * time.Millisecond},
		{"1..100 p99", hundred, 99, 99 * time.Millisecond},
		{"1..100 p100", hundred, 100, 100 * time.Millisecond},
		{"p0 is min", ms(5, 9, 1), 0, 1 * time.Millisecond},
		{"negative p is min", ms(5, 9, 1), -3, 1 * time.Millisecond},
		{"p above 100 is max", ms(5, 9, 1), 150, 9 * time.Millisecond},
		{"NaN p is min", ms(5, 9, 1), math.NaN(), 1 * time.Millisecond},
		{"10 samples p99 is max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"10 samples p90 is 9th", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"duplicates", ms(4, 4, 4, 4), 75, 4 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.samples, tc.p); got != tc.want {
				t.Fatalf("Percentile(%v, %v) = %v, want %v", tc.samples, tc.p, got, tc.want)
			}
		})
	}
	if hundred[0] != 100*time.Millisecond {
		t.Fatalf("Percentile modified its input")
	}
}

func TestSummarize(t *testing.T) {
	if s := Summarize(nil); s != (Summary{}) {
		t.Fatalf("Summarize(nil) = %+v, want zero", s)
	}
	s := Summarize(ms(40, 10, 30, 20))
	want := Summary{N: 4, Min: 10 * time.Millisecond, P50: 20 * time.Millisecond, P90: 40 * time.Millisecond,
		P99: 40 * time.Millisecond, Max: 40 * time.Millisecond, Mean: 25 * time.Millisecond}
	if s != want {
		t.Fatalf("Summarize = %+v, want %+v", s, want)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{-1, 1}, 0},
	}
	for _, tc := range tests {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Errorf("Median(nil) should be NaN")
	}
}

func TestFormatRatio(t *testing.T) {
	tests := []struct {
		target, base float64
		want         string
	}{
		{10, 10, "1.00x"},
		{5, 10, "0.50x"},
		{12.345, 10, "1.23x"},
		{0, 10, "0.00x"},
		{150, 10, "15.0x"},
		{2000, 10, "200x"},
		{10, 0, "n/a"},
		{math.NaN(), 10, "n/a"},
		{10, math.NaN(), "n/a"},
		{math.Inf(1), 10, "n/a"},
		{0.001, 0.003, "0.33x"},
	}
	for _, tc := range tests {
		if got := FormatRatio(tc.target, tc.base); got != tc.want {
			t.Errorf("FormatRatio(%v, %v) = %q, want %q", tc.target, tc.base, got, tc.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{0, "ms", "0 ms"},
		{0.4567, "ms", "0.457 ms"},
		{4.567, "ms", "4.57 ms"},
		{45.67, "ms", "45.7 ms"},
		{456.7, "ms", "457 ms"},
		{3, "", "3.00"},
		{math.NaN(), "ms", "-"},
	}
	for _, tc := range tests {
		if got := FormatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("FormatValue(%v, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
}

func TestTableRender(t *testing.T) {
	tb := &Table{Title: "t", Header: []string{"name", "value"}, RightAlign: map[int]bool{1: true}}
	tb.AddRow("a", "1 ms")
	tb.AddRow("longer", "100 ms")
	var buf bytes.Buffer
	if err := tb.Render(&buf); err != nil {
		t.Fatal(err)
	}
	want := "t\n" +
		"name     value\n" +
		"------  ------\n" +
		"a         1 ms\n" +
		"longer  100 ms\n"
	if buf.String() != want {
		t.Fatalf("Render:\n%q\nwant\n%q", buf.String(), want)
	}
}

func TestTableRenderMarkdown(t *testing.T) {
	tb := &Table{Title: "pull", Header: []string{"m", "v"}, RightAlign: map[int]bool{1: true}}
	tb.AddRow("a|b", "2")
	tb.AddRow("short row") // missing cell renders empty
	var buf bytes.Buffer
	if err := tb.RenderMarkdown(&buf); err != nil {
		t.Fatal(err)
	}
	want := "### pull\n\n" +
		"| m         |   v |\n" +
		"| --------- | --: |\n" +
		"| a\\|b      |   2 |\n" +
		"| short row |     |\n\n"
	if buf.String() != want {
		t.Fatalf("RenderMarkdown:\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestCombineAndCompare(t *testing.T) {
	run := func(vals ...float64) *Report {
		return &Report{Metrics: []Metric{
			{"pod-lifecycle", "sequential", "runp p50", "ms", vals[0]},
			{"memory", "idle", "daemon RSS", "MiB", vals[1]},
		}}
	}
	base := CombineRuns([]*Report{run(10, 40), run(30, 50), run(20, 45)})
	if len(base) != 2 || base[0].Value != 20 || base[0].Runs != 3 || base[1].Value != 45 {
		t.Fatalf("CombineRuns = %+v", base)
	}
	target := CombineRuns([]*Report{run(5, 90), {Metrics: []Metric{{"pod-lifecycle", "sequential", "only-target", "ms", 1}}}})
	tables := ComparisonTables("containerd", base, "crid", target)
	if len(tables) != 2 || tables[0].Title != "pod-lifecycle" || tables[1].Title != "memory" {
		t.Fatalf("tables = %+v", tables)
	}
	rows := tables[0].Rows
	if got := strings.Join(rows[0], ","); got != "sequential,runp p50,20.0 ms,5.00 ms,0.25x" {
		t.Errorf("row 0 = %s", got)
	}
	if got := strings.Join(rows[1], ","); got != "sequential,only-target,-,1.00 ms,n/a" {
		t.Errorf("target-only row = %s", got)
	}
	if got := strings.Join(tables[1].Rows[0], ","); got != "idle,daemon RSS,45.0 MiB,90.0 MiB,2.00x" {
		t.Errorf("memory row = %s", got)
	}
	// Baseline only: no target columns.
	only := ComparisonTables("containerd", base, "crid", nil)
	if len(only[0].Header) != 3 || len(only[0].Rows[0]) != 3 {
		t.Errorf("baseline-only table has target columns: %+v", only[0])
	}
}

func TestLifecycleMetrics(t *testing.T) {
	var all []cycleTimes
	for i := 1; i <= 4; i++ {
		var c cycleTimes
		for k := range c {
			c[k] = time.Duration(i*(k+1)) * time.Millisecond
		}
		all = append(all, c)
	}
	ms := lifecycleMetrics("sequential", all, 2*time.Second)
	get := func(name string) float64 {
		for _, m := range ms {
			if m.Name == name {
				return m.Value
			}
		}
		t.Fatalf("no metric %q", name)
		return 0
	}
	// startup of cycle i = i*(1+2+3) ms; p50 of {6,12,18,24} is 12.
	if v := get("startup(runp+create+start) p50"); v != 12 {
		t.Errorf("startup p50 = %v, want 12", v)
	}
	if v := get("create max"); v != 8 {
		t.Errorf("create max = %v, want 8", v)
	}
	if v := get("cycle p99"); v != 4*28 {
		t.Errorf("cycle p99 = %v, want 112", v)
	}
	if v := get("throughput"); v != 2 {
		t.Errorf("throughput = %v, want 2", v)
	}
}
