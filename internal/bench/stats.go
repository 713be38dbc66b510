// Package bench measures a CRI endpoint: pod lifecycle latency, ExecSync,
// list calls, image pulls, per-pod memory and the bare runc+CNI floor. It
// talks CRI over gRPC only (no process per call) so that the figures are the
// runtime's, not a client's.
package bench

import (
	"math"
	"sort"
	"time"
)

// Summary condenses a set of latency samples.
type Summary struct {
	N    int
	Min  time.Duration
	P50  time.Duration
	P90  time.Duration
	P99  time.Duration
	Max  time.Duration
	Mean time.Duration
}

// Percentile returns the p-th percentile (0 < p <= 100) of samples using the
// nearest-rank method: the smallest sample such that at least p% of the
// samples are at or below it. Nearest rank never invents a value that was not
// measured, which matters for small N where interpolation would blur a p99
// into a value no call ever took. It returns 0 for no samples.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := sortedCopy(samples)
	return percentileSorted(s, p)
}

func percentileSorted(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	if p <= 0 || math.IsNaN(p) {
		return s[0]
	}
	if p >= 100 {
		return s[len(s)-1]
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

func sortedCopy(samples []time.Duration) []time.Duration {
	s := make([]time.Duration, len(samples))
	copy(s, samples)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

// Summarize computes the summary of samples; the zero Summary for none.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := sortedCopy(samples)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return Summary{
		N:    len(s),
		Min:  s[0],
		P50:  percentileSorted(s, 50),
		P90:  percentileSorted(s, 90),
		P99:  percentileSorted(s, 99),
		Max:  s[len(s)-1],
		Mean: total / time.Duration(len(s)),
	}
}

// Median returns the median of values (mean of the middle two for an even
// count); NaN for none. Used to combine repeated runs, where the values are
// already aggregates and interpolating between the middle two is the usual
// definition.
func Median(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	s := make([]float64, len(values))
	copy(s, values)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ms converts a duration to fractional milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
