package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// A plot of how one figure grows with a size (containers, pods, image
// size): the groups of a scenario that read "key=N" give the x values.
// Hand-written SVG: a line chart is a few dozen elements, and a plotting
// library would be the largest dependency of crid-bench.

// Point is one measurement of a curve.
type Point struct{ X, Y float64 }

// Series is one runtime's curve.
type Series struct {
	Name   string
	Points []Point
}

// Curve returns the points of metric name of scenario along the groups
// "key=N" (N a number), sorted by N, and key.
func Curve(cs []Combined, scenario, name string) (string, []Point) {
	var key string
	var pts []Point
	for _, c := range cs {
		if c.Scenario != scenario || c.Name != name {
			continue
		}
		k, v, ok := strings.Cut(c.Group, "=")
		x, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || (key != "" && k != key) {
			continue
		}
		key = k
		pts = append(pts, Point{x, c.Value})
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
	return key, pts
}

// plot geometry, in SVG user units.
const (
	plotW, plotH             = 640, 400
	padL, padR, padT, padB   = 70, 20, 40, 50
	innerW                   = plotW - padL - padR
	innerH                   = plotH - padT - padB
	tickCount                = 5
	legendLineLen, legendGap = 24, 18
)

var seriesColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}

// PlotSVG draws the series on shared axes: x logarithmic when its range
// spans more than a factor of 20 (10, 100, 300 containers), y linear from
// 0. It fails on series without points.
func PlotSVG(w io.Writer, title, xLabel, yLabel string, series []Series) error {
	var xs, ys []float64
	for _, s := range series {
		if len(s.Points) == 0 {
			return fmt.Errorf("plot %q: series %s has no points", title, s.Name)
		}
		for _, p := range s.Points {
			xs = append(xs, p.X)
			ys = append(ys, p.Y)
		}
	}
	if len(xs) == 0 {
		return fmt.Errorf("plot %q: no series", title)
	}
	xmin, xmax := minMax(xs)
	_, ymax := minMax(ys)
	logX := xmin > 0 && xmax/xmin > 20
	fx := func(x float64) float64 {
		if xmax == xmin {
			return padL + innerW/2
		}
		if logX {
			return padL + innerW*(math.Log(x)-math.Log(xmin))/(math.Log(xmax)-math.Log(xmin))
		}
		return padL + innerW*(x-xmin)/(xmax-xmin)
	}
	ytop := niceCeil(ymax)
	fy := func(y float64) float64 { return padT + innerH*(1-y/ytop) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14" text-anchor="middle">%s</text>`+"\n", plotW/2, esc(title))
	// Axes, y grid and ticks.
	fmt.Fprintf(&b, `<path d="M%d %d V%d H%d" stroke="black" fill="none"/>`+"\n", padL, padT, padT+innerH, padL+innerW)
	for i := 0; i <= tickCount; i++ {
		v := ytop * float64(i) / tickCount
		y := fy(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", padL, padL+innerW, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, y+4, fmtTick(v))
	}
	seen := map[float64]bool{}
	for _, x := range xs {
		if seen[x] {
			continue
		}
		seen[x] = true
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", fx(x), padT+innerH+18, fmtTick(x))
	}
	xl := xLabel
	if logX {
		xl += " (log scale)"
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", padL+innerW/2, plotH-10, esc(xl))
	fmt.Fprintf(&b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", padT+innerH/2, esc(yLabel))
	// Series and legend.
	for i, s := range series {
		color := seriesColors[i%len(seriesColors)]
		var d strings.Builder
		for j, p := range s.Points {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, fx(p.X), fy(p.Y))
		}
		fmt.Fprintf(&b, `<path d="%s" stroke="%s" stroke-width="2" fill="none"/>`+"\n", strings.TrimSpace(d.String()), color)
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s</title></circle>`+"\n", fx(p.X), fy(p.Y), color, esc(s.Name), fmtTick(p.Y))
		}
		ly := padT + 8 + i*legendGap
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", padL+12, padL+12+legendLineLen, ly, ly, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", padL+18+legendLineLen, ly+4, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func minMax(v []float64) (float64, float64) {
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (the y axis'
// top), so that the ticks are round numbers.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
