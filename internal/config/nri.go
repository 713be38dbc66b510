package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// DefaultNRISocket is where NRI plugins connect unless [nri] socket_path says
// otherwise; it is the path the NRI project and containerd use.
const DefaultNRISocket = "/var/run/nri/nri.sock"

// NRI configures the Node Resource Interface (docs/nri.md): external
// plugins that see pod and container lifecycle events and adjust
// containers before they are created.
//
// It is off by default. A plugin that connects to the socket can change
// any container on the node (mounts, devices, hooks run as root), so the
// socket is a root-equivalent interface that an operator should turn on
// knowingly; and a node may already run containerd, whose NRI listens on
// the same default socket path, where a second listener would steal or
// break its plugins' connections.
type NRI struct {
	// Enable turns NRI on.
	Enable bool `toml:"enable" comment:"run the NRI adaptation: plugins connect to socket_path or are started from plugin_path"`
	// SocketPath is the unix socket external plugins connect to.
	SocketPath string `toml:"socket_path" comment:"unix socket NRI plugins connect to"`
	// PluginPath holds plugin binaries crid starts itself (named NN-name,
	// NN the plugin's index).
	PluginPath string `toml:"plugin_path" comment:"directory of plugin executables crid starts at start (NN-name); empty: none"`
	// PluginConfigPath holds configuration for plugins crid starts.
	PluginConfigPath string `toml:"plugin_config_path" comment:"directory of configuration for the plugins crid starts"`
	// PluginRegistrationTimeout bounds how long a plugin may take to register.
	PluginRegistrationTimeout Duration `toml:"plugin_registration_timeout" comment:"a plugin that has not registered within this is disconnected"`
	// PluginRequestTimeout bounds how long a plugin may take per event.
	PluginRequestTimeout Duration `toml:"plugin_request_timeout" comment:"a plugin that does not answer an event within this is disconnected"`
	// FailOnPluginError makes a CRI request fail when a plugin times out
	// or crashes while handling it; by default that plugin is disconnected
	// and the request goes on without it.
	FailOnPluginError bool `toml:"fail_on_plugin_error" comment:"true: a plugin that times out or crashes fails the CRI request; false: it is disconnected, logged and skipped"`
}

// DefaultNRI is the [nri] table when the file has none.
func DefaultNRI() NRI {
	return NRI{
		SocketPath:                DefaultNRISocket,
		PluginPath:                "/opt/nri/plugins",
		PluginConfigPath:          "/etc/nri/conf.d",
		PluginRegistrationTimeout: Duration{5 * time.Second},
		PluginRequestTimeout:      Duration{2 * time.Second},
	}
}

// validate checks the nri keys, naming the offending one.
func (n NRI) validate() error {
	if !n.Enable {
		return nil
	}
	if n.SocketPath == "" || !filepath.IsAbs(n.SocketPath) {
		return fmt.Errorf("key nri.socket_path: must be an absolute path, got %q", n.SocketPath)
	}
	for key, p := range map[string]string{"nri.plugin_path": n.PluginPath, "nri.plugin_config_path": n.PluginConfigPath} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("key %s: must be an absolute path or empty, got %q", key, p)
		}
	}
	if n.PluginRegistrationTimeout.Duration <= 0 {
		return errors.New("key nri.plugin_registration_timeout: must be positive")
	}
	if n.PluginRequestTimeout.Duration <= 0 {
		return errors.New("key nri.plugin_request_timeout: must be positive")
	}
	return nil
}
