package config

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
)

// Tracing configures OpenTelemetry tracing (docs/tracing.md). It is off
// while Endpoint is empty.
type Tracing struct {
	// Endpoint is the host:port of an OTLP/gRPC trace receiver (an
	// OpenTelemetry Collector or agent, usually on the node itself),
	// reached without TLS. Empty disables tracing.
	Endpoint string `toml:"endpoint" comment:"host:port of an OTLP/gRPC trace receiver (plaintext, e.g. \"127.0.0.1:4317\"); empty disables tracing"`
	// SamplingRatio is the share of traces crid starts itself (calls
	// without a sampled or unsampled parent) that are recorded; a call
	// whose client sent a trace context follows that parent's decision.
	SamplingRatio float64 `toml:"sampling_ratio" comment:"0..1: share of calls without a parent trace context that are traced; calls with one (kubelet's) follow its sampling decision"`
}

// Enabled reports whether spans are exported.
func (t Tracing) Enabled() bool { return t.Endpoint != "" }

// validate checks the tracing keys, naming the offending one.
func (t Tracing) validate() error {
	if t.Endpoint != "" {
		if err := checkHostPort(t.Endpoint); err != nil {
			return fmt.Errorf("key tracing.endpoint: %w", err)
		}
	}
	// NaN fails both comparisons.
	if !(t.SamplingRatio >= 0 && t.SamplingRatio <= 1) {
		return fmt.Errorf("key tracing.sampling_ratio: must be within 0..1, got %v", t.SamplingRatio)
	}
	return nil
}

// checkHostPort accepts "host:port" with a non-empty host and a port in
// 1..65535. A URL is refused with a hint: the exporter would take
// "http://x:4317" for a host named "http" and fail only at the first
// export, long after start.
func checkHostPort(ep string) error {
	if strings.Contains(ep, "://") {
		return fmt.Errorf("must be host:port of an OTLP/gRPC receiver without a scheme (e.g. \"127.0.0.1:4317\"), got %q", ep)
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return fmt.Errorf("must be host:port of an OTLP/gRPC receiver (e.g. \"127.0.0.1:4317\"), got %q: %w", ep, err)
	}
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("must be host:port with a host name or IP address, got %q", ep)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > math.MaxUint16 {
		return fmt.Errorf("port must be 1..65535, got %q", port)
	}
	return nil
}
