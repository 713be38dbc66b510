package network

import (
	"time"

	"github.com/crid-dev/crid/internal/metrics"
)

// WithMetrics records the time and failures of every CNI ADD and DEL in m
// (default: nil, nothing recorded).
func WithMetrics(m *metrics.Metrics) Option {
	return func(mgr *Manager) { mgr.metrics = m }
}

// observe records the CNI operation op that started at start and ended
// with *err.
func (m *Manager) observe(op string, start time.Time, err *error) {
	m.metrics.CNI(op, time.Since(start), *err)
}
