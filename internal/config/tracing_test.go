package config

import (
	"strings"
	"testing"
)

func TestTracingDefaultsOff(t *testing.T) {
	c := Default()
	if c.Tracing.Enabled() || c.Tracing.Endpoint != "" {
		t.Errorf("tracing is on by default: %+v", c.Tracing)
	}
	if c.Tracing.SamplingRatio != 1 {
		t.Errorf("default sampling_ratio = %v, want 1", c.Tracing.SamplingRatio)
	}
}

func TestTracingParse(t *testing.T) {
	tests := []struct {
		name     string
		toml     string
		wantErr  string // substring; "" = valid
		endpoint string
		ratio    float64
	}{
		{name: "ipv4", toml: "endpoint = \"127.0.0.1:4317\"\nsampling_ratio = 0.25", endpoint: "127.0.0.1:4317", ratio: 0.25},
		{name: "host name", toml: "endpoint = \"otel-agent.local:4317\"", endpoint: "otel-agent.local:4317", ratio: 1},
		{name: "ipv6", toml: "endpoint = \"[::1]:4317\"\nsampling_ratio = 0.0", endpoint: "[::1]:4317", ratio: 0},
		{name: "integer ratio", toml: "endpoint = \"127.0.0.1:4317\"\nsampling_ratio = 1", endpoint: "127.0.0.1:4317", ratio: 1},
		{name: "ratio without endpoint", toml: "sampling_ratio = 0.5", ratio: 0.5},
		{name: "url", toml: "endpoint = \"http://127.0.0.1:4317\"", wantErr: "key tracing.endpoint: must be host:port of an OTLP/gRPC receiver without a scheme"},
		{name: "no port", toml: "endpoint = \"127.0.0.1\"", wantErr: "key tracing.endpoint"},
		{name: "empty host", toml: "endpoint = \":4317\"", wantErr: "key tracing.endpoint: must be host:port with a host"},
		{name: "port zero", toml: "endpoint = \"localhost:0\"", wantErr: "key tracing.endpoint: port must be 1..65535"},
		{name: "port too big", toml: "endpoint = \"localhost:70000\"", wantErr: "key tracing.endpoint: port must be 1..65535"},
		{name: "named port", toml: "endpoint = \"localhost:otlp\"", wantErr: "key tracing.endpoint: port must be 1..65535"},
		{name: "path", toml: "endpoint = \"localhost:4317/v1/traces\"", wantErr: "key tracing.endpoint"},
		{name: "negative ratio", toml: "sampling_ratio = -0.1", wantErr: "key tracing.sampling_ratio: must be within 0..1"},
		{name: "ratio above one", toml: "sampling_ratio = 1.5", wantErr: "key tracing.sampling_ratio: must be within 0..1"},
		{name: "nan ratio", toml: "sampling_ratio = nan", wantErr: "key tracing.sampling_ratio"},
		{name: "ratio as string", toml: "sampling_ratio = \"0.5\"", wantErr: "tracing.sampling_ratio"},
		{name: "unknown key", toml: "endpoint = \"127.0.0.1:4317\"\ninsecure = true", wantErr: "unknown key(s): tracing.insecure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := Parse([]byte("[tracing]\n"+tt.toml+"\n"), c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Tracing.Endpoint != tt.endpoint || c.Tracing.SamplingRatio != tt.ratio {
				t.Errorf("tracing = %+v, want endpoint %q ratio %v", c.Tracing, tt.endpoint, tt.ratio)
			}
			if c.Tracing.Enabled() != (tt.endpoint != "") {
				t.Errorf("Enabled() = %v with endpoint %q", c.Tracing.Enabled(), tt.endpoint)
			}
		})
	}
}

// The keys are a contract: `crid config default` shows both, by name.
func TestTracingKeysInDefaultConfig(t *testing.T) {
	out, err := Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[tracing]", "endpoint = ''", "sampling_ratio = 1.0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("default config lacks %q:\n%s", want, out)
		}
	}
	c := Default()
	if err := Parse(out, c); err != nil {
		t.Fatalf("default config does not parse back: %v", err)
	}
	if c.Tracing != Default().Tracing {
		t.Errorf("round trip changed tracing: %+v", c.Tracing)
	}
}
