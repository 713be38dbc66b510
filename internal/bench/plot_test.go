package bench

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func TestCurve(t *testing.T) {
	cs := []Combined{
		{Metric: Metric{"list", "containers=300", "ListContainers p50", "ms", 3}},
		{Metric: Metric{"list", "containers=10", "ListContainers p50", "ms", 1}},
		{Metric: Metric{"list", "containers=100", "ListContainers p50", "ms", 2}},
		{Metric: Metric{"list", "containers=100", "ListContainers p99", "ms", 9}},
		{Metric: Metric{"list", "sequential", "ListContainers p50", "ms", 7}},
		{Metric: Metric{"memory", "containers=10", "ListContainers p50", "ms", 8}},
	}
	key, pts := Curve(cs, "list", "ListContainers p50")
	want := []Point{{10, 1}, {100, 2}, {300, 3}}
	if key != "containers" || len(pts) != len(want) {
		t.Fatalf("Curve = %q %v", key, pts)
	}
	for i := range want {
		if pts[i] != want[i] {
			t.Fatalf("Curve = %v, want %v", pts, want)
		}
	}
}

func TestPlotSVG(t *testing.T) {
	var b strings.Builder
	err := PlotSVG(&b, "ListContainers p50 <ms>", "containers", "ms", []Series{
		{"containerd", []Point{{10, 1.5}, {100, 2.5}, {300, 14.8}}},
		{"crid", []Point{{10, 0.5}, {100, 1}, {300, 1.6}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	// Well-formed XML, both series drawn, the title escaped, a log x axis.
	dec := xml.NewDecoder(strings.NewReader(svg))
	paths := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "path" {
			paths++
		}
	}
	if paths != 3 { // the axes and two series
		t.Errorf("%d paths, want 3", paths)
	}
	for _, want := range []string{"&lt;ms&gt;", "(log scale)", ">containerd<", ">crid<", ">20<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	if err := PlotSVG(io.Discard, "x", "x", "y", []Series{{"empty", nil}}); err == nil {
		t.Error("a series without points was plotted")
	}
}

func TestNiceCeil(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.7: 1, 1: 1, 1.2: 2, 14.8: 20, 42: 50, 51: 100, 1067: 2000} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}
