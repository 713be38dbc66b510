package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Metric is one figure of a run. Scenario+Group+Name is its key when runs
// are compared; lower is better for every unit except "1/s".
type Metric struct {
	Scenario string  `json:"scenario"`
	Group    string  `json:"group"`
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Value    float64 `json:"value"`
}

// Key identifies a metric across runs.
func (m Metric) Key() string { return m.Scenario + "|" + m.Group + "|" + m.Name }

// Meta describes where and against what a run was made.
type Meta struct {
	Endpoint       string    `json:"endpoint"`
	RuntimeName    string    `json:"runtime_name"`
	RuntimeVersion string    `json:"runtime_version"`
	Image          string    `json:"image"`
	Started        time.Time `json:"started"`
	RunID          string    `json:"run_id"`
	Machine        Machine   `json:"machine"`
	Options        Options   `json:"options"`
}

// Report is what a run writes with --json.
type Report struct {
	Meta    Meta     `json:"meta"`
	Metrics []Metric `json:"metrics"`
}

// WriteJSON writes r to path.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode report %s: %w", path, err)
	}
	return &r, nil
}

// latencyMetrics expands a summary into p50/p90/p99/max metrics in ms.
func latencyMetrics(scenario, group, name string, s Summary) []Metric {
	return []Metric{
		{scenario, group, name + " p50", "ms", Ms(s.P50)},
		{scenario, group, name + " p90", "ms", Ms(s.P90)},
		{scenario, group, name + " p99", "ms", Ms(s.P99)},
		{scenario, group, name + " max", "ms", Ms(s.Max)},
	}
}
