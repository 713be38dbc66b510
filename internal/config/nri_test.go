package config

import (
	"strings"
	"testing"
	"time"
)

func TestNRIDefaultsOff(t *testing.T) {
	c := Default()
	if c.NRI.Enable {
		t.Error("NRI is on by default")
	}
	if c.NRI.SocketPath != "/var/run/nri/nri.sock" {
		t.Errorf("default socket_path %q", c.NRI.SocketPath)
	}
}

func TestNRIParse(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		wantErr string // substring; "" = valid
	}{
		{name: "enable and socket are enough", toml: "enable = true\nsocket_path = \"/run/x/nri.sock\""},
		{name: "enable alone uses the default socket", toml: "enable = true"},
		{name: "all keys", toml: "enable = true\nsocket_path = \"/run/nri.sock\"\nplugin_path = \"\"\nplugin_config_path = \"/etc/nri/conf.d\"\nplugin_registration_timeout = \"3s\"\nplugin_request_timeout = \"500ms\"\nfail_on_plugin_error = true"},
		{name: "relative socket", toml: "enable = true\nsocket_path = \"nri.sock\"", wantErr: "nri.socket_path"},
		{name: "relative plugin dir", toml: "enable = true\nplugin_path = \"plugins\"", wantErr: "nri.plugin_path"},
		{name: "zero request timeout", toml: "enable = true\nplugin_request_timeout = \"0s\"", wantErr: "nri.plugin_request_timeout"},
		{name: "off is not validated", toml: "enable = false\nsocket_path = \"rel\""},
		{name: "unknown key", toml: "enabled = true", wantErr: "enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := Parse([]byte("[nri]\n"+tt.toml+"\n"), c)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse: err %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
	c := Default()
	if err := Parse([]byte("[nri]\nenable = true\nplugin_request_timeout = \"500ms\"\n"), c); err != nil {
		t.Fatal(err)
	}
	if c.NRI.PluginRequestTimeout.Duration != 500*time.Millisecond || c.NRI.PluginRegistrationTimeout.Duration != 5*time.Second {
		t.Errorf("timeouts %+v", c.NRI)
	}
}
