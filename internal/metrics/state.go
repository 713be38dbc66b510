package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Pod and container states reported at every scrape, 0 when none is in
// them: a state absent from a scrape would read as "no data", not 0.
var (
	PodStates       = []string{"creating", "ready", "notready"}
	ContainerStates = []string{"creating", "created", "running", "exited", "unknown"}
)

// State is what the runtime holds at the moment of a scrape.
type State struct {
	Pods       map[string]int // by state (PodStates)
	Containers map[string]int // by state (ContainerStates)
	Monitors   int            // crid-monitor processes alive for crid's containers
}

// stateCollector reads State from its source at every scrape: the gauges
// are the core's own state, not counters kept in step with every
// transition, so no missed or doubled transition can make them drift.
type stateCollector struct {
	source     func() State
	pods       *prometheus.Desc
	containers *prometheus.Desc
	monitors   *prometheus.Desc
}

// RegisterState adds the pods, containers and monitors gauges, read from
// source at each scrape. source runs on the scraping goroutine and must
// be safe to call concurrently with everything else.
func (m *Metrics) RegisterState(source func() State) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(newStateCollector(source))
}

func newStateCollector(source func() State) *stateCollector {
	return &stateCollector{
		source: source,
		pods: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "pods"),
			"Pod sandboxes crid holds, by state (creating: RunPodSandbox in progress).", []string{"state"}, nil),
		containers: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "containers"),
			"Containers crid holds, by state (creating: CreateContainer in progress).", []string{"state"}, nil),
		monitors: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "monitors"),
			"crid-monitor processes running for crid's containers (one per created or running container).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pods
	ch <- c.containers
	ch <- c.monitors
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.source()
	emitStates(ch, c.pods, PodStates, st.Pods)
	emitStates(ch, c.containers, ContainerStates, st.Containers)
	ch <- prometheus.MustNewConstMetric(c.monitors, prometheus.GaugeValue, float64(st.Monitors))
}

// emitStates sends one gauge per known state, and one for any other state
// the source reported (the source's states are a fixed set in code, so
// this cannot grow without bound).
func emitStates(ch chan<- prometheus.Metric, desc *prometheus.Desc, known []string, counts map[string]int) {
	for _, s := range known {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(counts[s]), s)
	}
	for s, n := range counts {
		if !slices.Contains(known, s) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), s)
		}
	}
}
