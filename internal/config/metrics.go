package config

import (
	"fmt"
	"net"
	"strconv"
)

// Metrics configures crid's Prometheus endpoint.
type Metrics struct {
	// Address is the host:port /metrics is served on; empty disables the
	// endpoint and every recording.
	Address string `toml:"address" comment:"host:port of the Prometheus endpoint (/metrics), e.g. \"127.0.0.1:9090\"; empty: no endpoint, nothing recorded. The endpoint has no authentication: keep it on loopback or a private network. See docs/metrics.md"`
}

// validate checks Address: empty, or an IP address (empty host: every
// interface) and a port 1..65535. Host names are refused so that crid's
// start never waits on DNS.
func (m Metrics) validate() error {
	if m.Address == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(m.Address)
	if err != nil {
		return fmt.Errorf("key metrics.address: must be host:port, got %q: %w", m.Address, err)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("key metrics.address: host must be an IP address (or empty for all interfaces), got %q", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("key metrics.address: port must be 1..65535, got %q", port)
	}
	return nil
}
