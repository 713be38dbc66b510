package bench

import "math"

// Combined is the median of one metric over repeated runs of one runtime.
type Combined struct {
	Metric
	Runs int
}

// CombineRuns takes the per-metric median over reports of the same runtime,
// keeping the order in which metrics first appear.
func CombineRuns(reports []*Report) []Combined {
	var order []string
	first := map[string]Metric{}
	vals := map[string][]float64{}
	for _, r := range reports {
		for _, m := range r.Metrics {
			k := m.Key()
			if _, ok := first[k]; !ok {
				first[k] = m
				order = append(order, k)
			}
			vals[k] = append(vals[k], m.Value)
		}
	}
	out := make([]Combined, 0, len(order))
	for _, k := range order {
		m := first[k]
		m.Value = Median(vals[k])
		out = append(out, Combined{Metric: m, Runs: len(vals[k])})
	}
	return out
}

// ComparisonTables renders, per scenario, baseline and target medians side by
// side with the ratio target/baseline. Metrics present on one side only show
// "-" on the other. With no target reports, only the baseline column is
// shown.
func ComparisonTables(baseName string, base []Combined, targetName string, target []Combined) []*Table {
	tv := map[string]Combined{}
	for _, c := range target {
		tv[c.Key()] = c
	}
	withTarget := len(target) > 0
	var order []string
	by := map[string]*Table{}
	newTable := func(s string) *Table {
		t, ok := by[s]
		if ok {
			return t
		}
		h := []string{"group", "metric", baseName}
		ra := map[int]bool{2: true}
		if withTarget {
			h = append(h, targetName, targetName+"/"+baseName)
			ra[3], ra[4] = true, true
		}
		t = &Table{Title: s, Header: h, RightAlign: ra}
		by[s] = t
		order = append(order, s)
		return t
	}
	seen := map[string]bool{}
	for _, b := range base {
		seen[b.Key()] = true
		t := newTable(b.Scenario)
		row := []string{b.Group, b.Name, FormatValue(b.Value, b.Unit)}
		if withTarget {
			if c, ok := tv[b.Key()]; ok {
				row = append(row, FormatValue(c.Value, c.Unit), FormatRatio(c.Value, b.Value))
			} else {
				row = append(row, "-", "n/a")
			}
		}
		t.AddRow(row...)
	}
	for _, c := range target {
		if seen[c.Key()] {
			continue
		}
		t := newTable(c.Scenario)
		t.AddRow(c.Group, c.Name, "-", FormatValue(c.Value, c.Unit), FormatRatio(c.Value, math.NaN()))
	}
	out := make([]*Table, 0, len(order))
	for _, s := range order {
		out = append(out, by[s])
	}
	return out
}
