package config

import (
	"strings"
	"testing"
)

func TestMetricsAddress(t *testing.T) {
	for _, c := range []struct {
		addr    string
		wantErr string // "" = valid
	}{
		{"", ""},
		{"127.0.0.1:9090", ""},
		{"[::1]:9090", ""},
		{":9090", ""},
		{"0.0.0.0:65535", ""},
		{"127.0.0.1", "must be host:port"},
		{"localhost:9090", "host must be an IP address"},
		{"127.0.0.1:0", "port must be 1..65535"},
		{"127.0.0.1:70000", "port must be 1..65535"},
		{"127.0.0.1:http", "port must be 1..65535"},
	} {
		cfg := Default()
		err := Parse([]byte("[metrics]\naddress = \""+c.addr+"\"\n"), cfg)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%q: %v", c.addr, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), "key metrics.address") || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%q: error %v, want one naming key metrics.address and %q", c.addr, err, c.wantErr)
		case err == nil && cfg.Metrics.Address != c.addr:
			t.Errorf("%q: parsed as %q", c.addr, cfg.Metrics.Address)
		}
	}
}

// `crid config default` shows the key, empty (off), with its comment, and
// what it prints parses back.
func TestMetricsInDefaultConfig(t *testing.T) {
	out, err := Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	i := strings.Index(s, "\n[metrics]\n")
	if i < 0 {
		t.Fatalf("no [metrics] table in:\n%s", s)
	}
	table := s[i:]
	if !strings.Contains(table, "address = ''") && !strings.Contains(table, `address = ""`) {
		t.Errorf("[metrics] does not show address empty:\n%s", table)
	}
	if !strings.Contains(table, "# host:port of the Prometheus endpoint") {
		t.Errorf("[metrics] address has no comment:\n%s", table)
	}
	if err := Parse(out, Default()); err != nil {
		t.Errorf("default config does not parse: %v", err)
	}
}
