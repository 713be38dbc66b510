package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// FormatRatio renders target/baseline as "1.23x". Undefined ratios (a zero
// or missing baseline, NaN) render as "n/a" rather than Inf, and a zero
// target over a positive baseline as "0.00x".
func FormatRatio(target, baseline float64) string {
	if math.IsNaN(target) || math.IsNaN(baseline) || baseline == 0 || math.IsInf(target, 0) || math.IsInf(baseline, 0) {
		return "n/a"
	}
	r := target / baseline
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0fx", r)
	case r >= 10:
		return fmt.Sprintf("%.1fx", r)
	default:
		return fmt.Sprintf("%.2fx", r)
	}
}

// FormatValue renders a metric value with its unit at a precision that suits
// the magnitude.
func FormatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "-"
	}
	var num string
	switch a := math.Abs(v); {
	case a == 0:
		num = "0"
	case a >= 100:
		num = fmt.Sprintf("%.0f", v)
	case a >= 10:
		num = fmt.Sprintf("%.1f", v)
	case a >= 1:
		num = fmt.Sprintf("%.2f", v)
	default:
		num = fmt.Sprintf("%.3f", v)
	}
	if unit == "" {
		return num
	}
	return num + " " + unit
}

// Table is a titled grid of cells.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
	// RightAlign marks columns (by index) holding numbers.
	RightAlign map[int]bool
}

// AddRow appends a row.
func (t *Table) AddRow(cells ...string) { t.Rows = append(t.Rows, cells) }

func (t *Table) widths() []int {
	n := len(t.Header)
	for _, r := range t.Rows {
		if len(r) > n {
			n = len(r)
		}
	}
	w := make([]int, n)
	measure := func(row []string) {
		for i, c := range row {
			if l := utf8.RuneCountInString(c); l > w[i] {
				w[i] = l
			}
		}
	}
	measure(t.Header)
	for _, r := range t.Rows {
		measure(r)
	}
	return w
}

func pad(s string, width int, right bool) string {
	gap := width - utf8.RuneCountInString(s)
	if gap <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", gap) + s
	}
	return s + strings.Repeat(" ", gap)
}

func cell(row []string, i int) string {
	if i < len(row) {
		return row[i]
	}
	return ""
}

// Render writes t as aligned plain text for a terminal.
func (t *Table) Render(w io.Writer) error {
	ws := t.widths()
	var b strings.Builder
	if t.Title != "" {
		b.WriteString(t.Title + "\n")
	}
	line := func(row []string) {
		parts := make([]string, len(ws))
		for i := range ws {
			parts[i] = pad(cell(row, i), ws[i], t.RightAlign[i])
		}
		b.WriteString(strings.TrimRight(strings.Join(parts, "  "), " ") + "\n")
	}
	line(t.Header)
	seps := make([]string, len(ws))
	for i, n := range ws {
		seps[i] = strings.Repeat("-", n)
	}
	b.WriteString(strings.Join(seps, "  ") + "\n")
	for _, r := range t.Rows {
		line(r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// RenderMarkdown writes t as a GitHub-flavoured Markdown table.
func (t *Table) RenderMarkdown(w io.Writer) error {
	ws := t.widths()
	for i := range ws {
		if ws[i] < 3 {
			ws[i] = 3
		}
	}
	var b strings.Builder
	if t.Title != "" {
		b.WriteString("### " + t.Title + "\n\n")
	}
	line := func(row []string) {
		b.WriteString("|")
		for i := range ws {
			c := strings.ReplaceAll(cell(row, i), "|", `\|`)
			b.WriteString(" " + pad(c, ws[i], t.RightAlign[i]) + " |")
		}
		b.WriteString("\n")
	}
	line(t.Header)
	b.WriteString("|")
	for i, n := range ws {
		if t.RightAlign[i] {
			b.WriteString(" " + strings.Repeat("-", n-1) + ": |")
		} else {
			b.WriteString(" " + strings.Repeat("-", n) + " |")
		}
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		line(r)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// MetricsTables groups metrics by scenario into one table each, in first-seen
// order.
func MetricsTables(ms []Metric) []*Table {
	var order []string
	by := map[string]*Table{}
	for _, m := range ms {
		t, ok := by[m.Scenario]
		if !ok {
			t = &Table{Title: m.Scenario, Header: []string{"group", "metric", "value"}, RightAlign: map[int]bool{2: true}}
			by[m.Scenario] = t
			order = append(order, m.Scenario)
		}
		t.AddRow(m.Group, m.Name, FormatValue(m.Value, m.Unit))
	}
	out := make([]*Table, 0, len(order))
	for _, s := range order {
		out = append(out, by[s])
	}
	return out
}
