package image

import (
	"time"

	"github.com/crid-dev/crid/internal/metrics"
)

// SetMetrics makes the service record pulls (count, duration, bytes,
// failures by reason) into m; nil records nothing. Call it before the
// service is used.
func (s *Service) SetMetrics(m *metrics.Metrics) { s.metrics = m }

// observePull records a finished Pull that started at start and ended
// with *err. A pull joining another's in flight counts as a pull of its
// own: each CRI PullImage is one.
func (s *Service) observePull(start time.Time, err *error) {
	s.metrics.ImagePull(time.Since(start), *err)
}
