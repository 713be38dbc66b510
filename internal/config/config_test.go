package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		wantErr string // substring; "" = no error
		check   func(t *testing.T, c *Config)
	}{
		{name: "empty keeps defaults", toml: "", check: func(t *testing.T, c *Config) {
			if c.Socket != "/run/crid/crid.sock" || c.Images.SandboxImage != "registry.k8s.io/pause:3.10" {
				t.Errorf("defaults lost: %+v", c)
			}
		}},
		{name: "issue example", toml: `
root = "/var/lib/crid"
state = "/run/crid"
socket = "/run/crid/crid.sock"
[images]
sandbox_image = "registry.k8s.io/pause:3.10"
[[images.registries]]
host = "registry.k8s.io"
mirrors = ["http://127.0.0.1:5000/registry.k8s.io"]
fallback = false
[network]
conf_dir = "/etc/cni/net.d"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[streaming]
address = "127.0.0.1"
port = 0
`, check: func(t *testing.T, c *Config) {
			if len(c.Images.Registries) != 1 {
				t.Fatalf("registries = %v", c.Images.Registries)
			}
			r := c.Images.Registries[0]
			if r.Host != "registry.k8s.io" || r.AllowFallback() || r.Mirrors[0] != "http://127.0.0.1:5000/registry.k8s.io" {
				t.Errorf("registry = %+v", r)
			}
		}},
		{name: "fallback defaults to true", toml: "[[images.registries]]\nhost = \"docker.io\"\n", check: func(t *testing.T, c *Config) {
			if !c.Images.Registries[0].AllowFallback() {
				t.Error("fallback should default to true")
			}
		}},
		{name: "durations", toml: "[images]\npull_progress_timeout = \"30s\"\n", check: func(t *testing.T, c *Config) {
			if c.Images.PullProgressTimeout.Duration != 30*time.Second {
				t.Errorf("got %v", c.Images.PullProgressTimeout)
			}
		}},
		{name: "extra handler keeps default runc", toml: "[runtime.handlers.crun]\npath = \"crun\"\n", check: func(t *testing.T, c *Config) {
			if _, ok := c.Runtime.Handlers["runc"]; !ok {
				t.Error("runc handler lost")
			}
			if c.Runtime.Handlers["crun"].Path != "crun" {
				t.Error("crun handler missing")
			}
		}},
		{name: "unknown top-level key", toml: "sockett = \"/x\"\n", wantErr: "sockett"},
		{name: "unknown nested key", toml: "[images]\nsandbox = \"x\"\n", wantErr: "images.sandbox"},
		{name: "wrong type", toml: "[streaming]\nport = \"abc\"\n", wantErr: "streaming.port"},
		{name: "relative root", toml: "root = \"var/lib\"\n", wantErr: "key root"},
		{name: "bad log level", toml: "log_level = \"loud\"\n", wantErr: "log_level"},
		{name: "bad cgroup driver", toml: "cgroup_driver = \"x\"\n", wantErr: "cgroup_driver"},
		{name: "bad mirror", toml: "[[images.registries]]\nhost = \"a.io\"\nmirrors = [\"127.0.0.1:5000\"]\n", wantErr: "mirrors[0]"},
		{name: "duplicate registry", toml: "[[images.registries]]\nhost = \"a.io\"\n[[images.registries]]\nhost = \"a.io\"\n", wantErr: "configured twice"},
		{name: "unknown default handler", toml: "[runtime]\ndefault_handler = \"kata\"\n", wantErr: "runtime.default_handler"},
		{name: "bad port", toml: "[streaming]\nport = 70000\n", wantErr: "streaming.port"},
		{name: "bad address", toml: "[streaming]\naddress = \"localhost\"\n", wantErr: "streaming.address"},
		{name: "bad duration", toml: "[images]\npull_progress_timeout = \"soon\"\n", wantErr: "pull_progress_timeout"},
		{name: "cdi spec dirs default", toml: "", check: func(t *testing.T, c *Config) {
			if got := strings.Join(c.Runtime.CDISpecDirs, ","); got != "/etc/cdi,/var/run/cdi" {
				t.Errorf("cdi_spec_dirs = %v", c.Runtime.CDISpecDirs)
			}
		}},
		{name: "cdi spec dirs set", toml: "[runtime]\ncdi_spec_dirs = [\"/opt/cdi\"]\n[runtime.handlers.crun]\npath = \"crun\"\n", check: func(t *testing.T, c *Config) {
			if got := strings.Join(c.Runtime.CDISpecDirs, ","); got != "/opt/cdi" {
				t.Errorf("cdi_spec_dirs = %v", c.Runtime.CDISpecDirs)
			}
		}},
		{name: "relative cdi spec dir", toml: "[runtime]\ncdi_spec_dirs = [\"cdi\"]\n", wantErr: "runtime.cdi_spec_dirs[0]"},
		{name: "zero command timeout", toml: "[runtime]\ncommand_timeout = \"0s\"\n", wantErr: "runtime.command_timeout"},
		{name: "negative plugin timeout", toml: "[network]\nplugin_timeout = \"-1s\"\n", wantErr: "network.plugin_timeout"},
		{name: "tls half set", toml: "[streaming]\ntls_cert = \"/c\"\n", wantErr: "tls_cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := Parse([]byte(tt.toml), c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	b, err := Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Socket = "/changed"
	if err := Parse(b, c); err != nil {
		t.Fatalf("default config does not parse back: %v\n%s", err, b)
	}
	if c.Socket != "/run/crid/crid.sock" {
		t.Errorf("socket = %q after round trip", c.Socket)
	}
	if !strings.Contains(string(b), "# ") {
		t.Error("default config has no comments")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.toml"), false); err != nil {
		t.Errorf("missing implicit config: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml"), true); err == nil {
		t.Error("missing explicit config should fail")
	}
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte("bogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, true); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("error = %v, want unknown key bogus", err)
	}
}

func TestExecDirectDefault(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name string
		h    Handler
		want bool
	}{
		{"default runc", Handler{Path: DefaultRuncPath}, true},
		{"runc in $PATH", Handler{Path: "runc"}, true},
		{"debian runc", Handler{Path: "/usr/sbin/runc"}, true},
		{"crun", Handler{Path: "/usr/bin/crun"}, true},
		{"gVisor", Handler{Path: "/usr/local/bin/runsc"}, false},
		{"kata", Handler{Path: "/opt/kata/bin/kata-runtime"}, false},
		{"runc under another name", Handler{Path: "/opt/runc-1.5/runc.amd64"}, false},
		{"a directory named runc", Handler{Path: "/opt/runc/runsc"}, false},
		{"a wrapper named like runc", Handler{Path: "/usr/bin/runc-wrapper"}, false},
		{"runsc with direct_exec = true", Handler{Path: "runsc", DirectExec: &yes}, true},
		{"runc with direct_exec = false", Handler{Path: "runc", DirectExec: &no}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.ExecDirect(); got != tc.want {
				t.Errorf("ExecDirect(%+v) = %v, want %v", tc.h, got, tc.want)
			}
		})
	}
}

// A handler table in a file merges into the default handler of that name:
// pointing runc's path at runsc turns direct exec off with it.
func TestExecDirectFollowsConfiguredPath(t *testing.T) {
	c := Default()
	if !c.Runtime.Handlers["runc"].ExecDirect() || c.Runtime.Handlers["runc"].Path != DefaultRuncPath {
		t.Fatalf("default runc handler = %+v, want %s with direct exec", c.Runtime.Handlers["runc"], DefaultRuncPath)
	}
	if err := Parse([]byte("[runtime.handlers.runc]\npath = \"/usr/local/bin/runsc\"\n[runtime.handlers.gvisor]\npath = \"runsc\"\n"), c); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"runc", "gvisor"} {
		if c.Runtime.Handlers[n].ExecDirect() {
			t.Errorf("handler %s (%s) execs directly", n, c.Runtime.Handlers[n].Path)
		}
	}
}

// `crid config default` shows direct_exec's comment and effective value,
// commented out, so the file it writes does not pin direct exec on.
func TestMarshalShowsDirectExecDefault(t *testing.T) {
	cfg := Default()
	off := false
	cfg.Runtime.Handlers["gvisor"] = Handler{Path: "/usr/local/bin/runsc"}
	cfg.Runtime.Handlers["pinned"] = Handler{Path: "crun", DirectExec: &off}
	b, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, want := range []string{
		"[runtime.handlers.runc]\n# OCI runtime binary",
		"path = '" + DefaultRuncPath + "'\nroot = ''\n# exec through crid-nsexec",
		"true only when path's file name is runc or crun, false for any other runtime (runsc, VM runtimes",
		"# direct_exec = false\n\n[runtime.handlers.pinned]", // gvisor's
		"# direct_exec = true\n\n[network]",                  // runc's
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config default lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "# direct_exec = ") != 2 {
		t.Errorf("want the commented default only for the two unset handlers:\n%s", out)
	}
	if !strings.Contains(out, "direct_exec = false\n") {
		t.Errorf("explicit direct_exec of handler pinned not written:\n%s", out)
	}
	back := Default()
	if err := Parse(b, back); err != nil {
		t.Fatalf("does not parse back: %v\n%s", err, out)
	}
	if back.Runtime.Handlers["runc"].DirectExec != nil || back.Runtime.Handlers["gvisor"].ExecDirect() || back.Runtime.Handlers["pinned"].ExecDirect() {
		t.Errorf("round trip changed direct_exec: %+v", back.Runtime.Handlers)
	}
}

func TestCheckRuntimePaths(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "runc")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Stands for DefaultRuncPath, which this machine may well have.
	missingRunc := filepath.Join(dir, "sbin", "runc")
	tests := []struct {
		name     string
		handlers map[string]Handler
		wantErr  []string // substrings; nil = no error
	}{
		{"present", map[string]Handler{"runc": {Path: bin}, "sh": {Path: "sh"}}, nil},
		{"other handler missing", map[string]Handler{"runc": {Path: bin}, "kata": {Path: filepath.Join(dir, "kata-runtime")}},
			[]string{"key runtime.handlers.kata.path", "kata-runtime"}},
		{"not executable", map[string]Handler{"runc": {Path: dir}}, []string{"key runtime.handlers.runc.path"}},
		{"default runc missing", map[string]Handler{"runc": {Path: missingRunc}},
			[]string{"key runtime.handlers.runc.path", missingRunc + " not found", "scripts/build-runc.sh"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Runtime.Handlers = tc.handlers
			err := c.checkRuntimePaths(missingRunc)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckRuntimePaths: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckRuntimePaths succeeded")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
