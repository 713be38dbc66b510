// Package config holds crid's TOML configuration: its schema, defaults,
// strict loading and validation. Every field has a default so crid runs
// without a file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// DefaultPath is where crid looks for its config when --config is not given.
const DefaultPath = "/etc/crid/config.toml"

// DefaultRuncPath is the runtime of the default "runc" handler: the runc
// scripts/build-runc.sh builds from a pinned upstream release, not the
// distribution's (Debian 12's runc 1.1.5 lacks the fixes for several
// container escapes). When it is missing crid does not start (see
// CheckRuntimePaths) rather than fall back to another runc: an operator
// who set up a node with a patched runc expects untrusted images to run on
// it, and a silent fallback would run them on an escapable runtime while
// the node looks healthy. Setting the path explicitly is the opt-in.
const DefaultRuncPath = "/usr/local/sbin/runc"

// installRuncHint is how the operator gets DefaultRuncPath.
const installRuncHint = "install it with scripts/build-runc.sh (scripts/install.sh runs it)"

// Config is the whole of crid's configuration.
type Config struct {
	// Root holds persistent state: metadata db, blobs, snapshots.
	Root string `toml:"root" comment:"persistent state: metadata db, images, snapshots"`
	// State holds volatile state: sockets, monitors, netns pins, bundles.
	State string `toml:"state" comment:"volatile state: sockets, monitors, netns pins"`
	// Socket is the CRI gRPC unix socket.
	Socket string `toml:"socket" comment:"CRI gRPC unix socket kubelet and crictl connect to"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `toml:"log_level" comment:"debug, info, warn or error (the --log-level flag overrides it)"`
	// CgroupDriver is cgroupfs or systemd.
	CgroupDriver string `toml:"cgroup_driver" comment:"cgroupfs or systemd; systemd needs systemd as PID 1"`

	Images    Images    `toml:"images"`
	Runtime   Runtime   `toml:"runtime"`
	Network   Network   `toml:"network"`
	Streaming Streaming `toml:"streaming"`
	Tracing   Tracing   `toml:"tracing"`
	Metrics   Metrics   `toml:"metrics"`
	NRI       NRI       `toml:"nri"`
}

// Images configures the image service.
type Images struct {
	SandboxImage string `toml:"sandbox_image" comment:"image of the pause container holding each pod's namespaces; always pinned"`
	// PinnedImages are reported pinned so kubelet's image GC keeps them.
	PinnedImages []string `toml:"pinned_images" comment:"further images reported pinned (kubelet's image GC skips them)"`
	// MaxConcurrentDownloads bounds parallel layer downloads per pull.
	MaxConcurrentDownloads int `toml:"max_concurrent_downloads" comment:"layers downloaded in parallel per pull"`
	// GCInterval is how often blobs and layer snapshots no image (hence no
	// container) uses are freed, besides right after RemoveImage and a
	// failed pull; 0 disables the periodic collection only.
	GCInterval Duration `toml:"gc_interval" comment:"free blobs and unpacked layers no image or container uses this often, besides right after RemoveImage and a failed pull (\"0s\": only then)"`
	// PullProgressTimeout cancels a pull that received no bytes for this long; 0 disables.
	PullProgressTimeout Duration   `toml:"pull_progress_timeout" comment:"cancel a pull that made no progress for this long (\"0s\" disables)"`
	Registries          []Registry `toml:"registries" comment:"one table per upstream registry host"`
}

// Registry configures how one upstream registry host is reached.
type Registry struct {
	// Host is the registry host name as it appears in image references, e.g. registry.k8s.io.
	Host string `toml:"host"`
	// Mirrors are endpoints tried in order; http:// means plain HTTP and a
	// path is a repository prefix.
	Mirrors []string `toml:"mirrors"`
	// Fallback allows contacting Host itself after the mirrors; nil means true.
	Fallback *bool `toml:"fallback"`
	// PlainHTTP talks HTTP (not HTTPS) to Host itself.
	PlainHTTP bool `toml:"plain_http"`
	// InsecureSkipVerify disables TLS verification for Host and its mirrors.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
}

// AllowFallback reports whether the upstream host may be contacted.
func (r Registry) AllowFallback() bool { return r.Fallback == nil || *r.Fallback }

// Runtime configures OCI runtime handlers and container monitors.
type Runtime struct {
	DefaultHandler string             `toml:"default_handler" comment:"handler used when a pod names none"`
	Handlers       map[string]Handler `toml:"handlers" comment:"OCI runtime handlers (RuntimeClass handlers)"`
	// MonitorPath is the crid-monitor binary; empty means next to crid, then $PATH.
	MonitorPath string `toml:"monitor_path" comment:"crid-monitor binary; empty: next to the crid binary, then $PATH"`
	// NsexecPath is the crid-nsexec binary that runs exec and ExecSync
	// without the runtime's CLI; empty means next to crid, then $PATH.
	NsexecPath string `toml:"nsexec_path" comment:"crid-nsexec binary (fast exec); empty: next to the crid binary, then $PATH; \"none\": always exec through the runtime"`
	// ExecSyncDrainTimeout bounds how long ExecSync waits for output after
	// the process exited (a background child may hold the pipe).
	ExecSyncDrainTimeout Duration `toml:"exec_sync_drain_timeout" comment:"after an exec'd process exits, wait at most this long for its output pipes"`
	// CommandTimeout bounds each invocation of a handler's runtime
	// (create, run, start, kill, delete, state, update) and the release of
	// a created container: a hung runtime is killed after it, so that a
	// pod or container create that outlived kubelet's deadline ends and
	// kubelet's retry gets an answer.
	CommandTimeout Duration `toml:"command_timeout" comment:"kill an OCI runtime command (create, run, start, kill, delete, state, update) that runs longer than this; not exec"`
	// RestrictOOMScoreAdj clamps requested oom_score_adj to what crid itself may set.
	RestrictOOMScoreAdj bool `toml:"restrict_oom_score_adj" comment:"clamp oom_score_adj to crid's own (needed without CAP_SYS_RESOURCE)"`
	// CDISpecDirs are searched for CDI spec files resolving a container's
	// cdi_devices (and cdi.k8s.io/ annotations); later dirs win on conflict.
	CDISpecDirs []string `toml:"cdi_spec_dirs" comment:"CDI spec dirs for cdi_devices; later dirs take precedence; empty: CDI devices are refused"`
}

// Handler is one OCI runtime handler.
type Handler struct {
	// Path is the OCI runtime binary (runc, crun, ...).
	Path string `toml:"path" comment:"OCI runtime binary (absolute, or looked up in $PATH); the default runc handler's is built by scripts/build-runc.sh"`
	// Root is the runtime's --root state dir; empty means <state>/runtime/<handler>.
	Root string `toml:"root"`
	// DirectExec runs exec and ExecSync through crid-nsexec, which joins
	// the container's namespaces itself, instead of `<runtime> exec`, and
	// signals containers' init processes directly instead of through
	// `<runtime> kill`; nil means DirectExecDefault(Path).
	DirectExec *bool `toml:"direct_exec" comment:"exec through crid-nsexec and signal containers' init directly instead of '<runtime> exec'/'kill'. Unset: true only when path's file name is runc or crun, false for any other runtime (runsc, VM runtimes: their init pid is a host process outside the sandbox, so exec would run outside it)"`

	// AllowedAnnotations are path.Match patterns of the pod and container
	// annotations that take effect for this handler's pods (crid's io.crid.*
	// keys) and reach the OCI spec; others are ignored. See docs/annotations.md.
	AllowedAnnotations []string `toml:"allowed_annotations,omitempty" comment:"path.Match patterns ('*' does not cross '/') of annotations that take effect for this handler's pods and are passed into the OCI spec; empty: none. Allowing io.crid.devices or io.crid.unified lets pod authors use host devices and cgroup files: see docs/annotations.md"`
}

// ExecDirect reports whether the handler execs through crid-nsexec.
func (h Handler) ExecDirect() bool {
	if h.DirectExec != nil {
		return *h.DirectExec
	}
	return DirectExecDefault(h.Path)
}

// DirectExecDefault is direct_exec for a handler that does not set it:
// true only for runc and crun, whose containers are plain namespaces and
// cgroups with the init pid (what `<runtime> state` reports) inside them.
// For gVisor's runsc or a VM runtime driven through the OCI CLI that pid
// is a host-side process (the sandbox's supervisor or VMM): crid-nsexec
// would join its namespaces and run pod authors' exec commands and probes
// on the host side of the sandbox, and signals would hit the supervisor.
//
// It goes by the binary's file name rather than by what `--version` or
// `features` print: it is known without running anything, so config
// validation and `crid config default` state it and it cannot change when a
// binary is swapped under a running node; `features` tells nothing about
// where a runtime's init lives; and the mistake it can make is the safe
// one: a runc under another name only takes the slower `<runtime> exec`
// path until direct_exec = true is set. The daemon also compares the name
// with what `--version` reports at start and warns on a mismatch.
func DirectExecDefault(path string) bool {
	switch filepath.Base(path) {
	case "runc", "crun":
		return true
	}
	return false
}

// Network configures CNI.
type Network struct {
	ConfDir string   `toml:"conf_dir" comment:"CNI network configs; the first one (lexically) is the pod network"`
	BinDirs []string `toml:"bin_dirs" comment:"directories searched for CNI plugins"`
	// ConfTemplate is a conflist template written when kubelet sends a pod
	// CIDR through UpdateRuntimeConfig; empty disables that.
	ConfTemplate string `toml:"conf_template" comment:"conflist template written on UpdateRuntimeConfig pod CIDR ({{.PodCIDR}}); empty disables"`
	// PluginTimeout bounds each CNI ADD, DEL or CHECK of a network (the
	// whole chain of its plugins): a hung plugin is killed after it.
	PluginTimeout Duration `toml:"plugin_timeout" comment:"kill a CNI ADD, DEL or CHECK of a network (its chain of plugins) that runs longer than this"`
}

// Streaming configures the exec/attach/port-forward server.
type Streaming struct {
	Address     string   `toml:"address" comment:"address the streaming server listens on"`
	Port        int      `toml:"port" comment:"0 picks any free port"`
	TLSCert     string   `toml:"tls_cert" comment:"PEM certificate; with tls_key enables TLS"`
	TLSKey      string   `toml:"tls_key"`
	IdleTimeout Duration `toml:"idle_timeout" comment:"close an idle stream after this long"`
}

// Duration is a time.Duration written as a Go duration string in TOML.
type Duration struct{ time.Duration }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// Default returns the configuration crid uses when no file is given.
func Default() *Config {
	return &Config{
		Root:         "/var/lib/crid",
		State:        "/run/crid",
		Socket:       "/run/crid/crid.sock",
		LogLevel:     "info",
		CgroupDriver: "cgroupfs",
		Images: Images{
			SandboxImage:           "registry.k8s.io/pause:3.10",
			PinnedImages:           []string{},
			MaxConcurrentDownloads: 3,
			PullProgressTimeout:    Duration{5 * time.Minute},
			GCInterval:             Duration{5 * time.Minute},
			Registries:             []Registry{},
		},
		Runtime: Runtime{
			DefaultHandler: "runc",
			Handlers: map[string]Handler{
				"runc": {Path: DefaultRuncPath},
			},
			ExecSyncDrainTimeout: Duration{time.Second},
			CommandTimeout:       Duration{2 * time.Minute},
			RestrictOOMScoreAdj:  true,
			CDISpecDirs:          []string{"/etc/cdi", "/var/run/cdi"},
		},
		Network: Network{
			ConfDir:       "/etc/cni/net.d",
			BinDirs:       []string{"/usr/lib/cni", "/opt/cni/bin"},
			PluginTimeout: Duration{2 * time.Minute},
		},
		Streaming: Streaming{
			Address:     "127.0.0.1",
			Port:        0,
			IdleTimeout: Duration{4 * time.Hour},
		},
		Tracing: Tracing{SamplingRatio: 1},
		NRI:     DefaultNRI(),
	}
}

// Load reads path over the defaults. A missing file at the default path is
// not an error; a missing file named explicitly is.
func Load(path string, explicit bool) (*Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !explicit {
			return cfg, cfg.Validate()
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := Parse(data, cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes TOML data over cfg strictly and validates the result.
func Parse(data []byte, cfg *Config) error {
	// Handlers given in the file replace the default set only for names they
	// mention; keep defaults for the rest.
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			keys := make([]string, 0, len(sm.Errors))
			for _, e := range sm.Errors {
				keys = append(keys, strings.Join(e.Key(), "."))
			}
			return fmt.Errorf("unknown key(s): %s", strings.Join(keys, ", "))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			return fmt.Errorf("key %s: %w", strings.Join(de.Key(), "."), err)
		}
		return err
	}
	return cfg.Validate()
}

// Validate checks values that TOML types cannot, naming the offending key.
func (c *Config) Validate() error {
	for key, p := range map[string]string{"root": c.Root, "state": c.State, "socket": c.Socket} {
		if p == "" || !filepath.IsAbs(p) {
			return fmt.Errorf("key %s: must be an absolute path, got %q", key, p)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("key log_level: must be debug, info, warn or error, got %q", c.LogLevel)
	}
	switch c.CgroupDriver {
	case "cgroupfs", "systemd":
	default:
		return fmt.Errorf("key cgroup_driver: must be cgroupfs or systemd, got %q", c.CgroupDriver)
	}
	if c.Images.SandboxImage == "" {
		return errors.New("key images.sandbox_image: must not be empty")
	}
	if c.Images.MaxConcurrentDownloads < 1 {
		return fmt.Errorf("key images.max_concurrent_downloads: must be at least 1, got %d", c.Images.MaxConcurrentDownloads)
	}
	if c.Images.PullProgressTimeout.Duration < 0 {
		return errors.New("key images.pull_progress_timeout: must not be negative")
	}
	if c.Images.GCInterval.Duration < 0 {
		return errors.New("key images.gc_interval: must not be negative")
	}
	seen := map[string]bool{}
	for i, r := range c.Images.Registries {
		if r.Host == "" || strings.ContainsAny(r.Host, "/ ") {
			return fmt.Errorf("key images.registries[%d].host: must be a registry host name, got %q", i, r.Host)
		}
		if seen[r.Host] {
			return fmt.Errorf("key images.registries[%d].host: %q is configured twice", i, r.Host)
		}
		seen[r.Host] = true
		for j, m := range r.Mirrors {
			u, err := url.Parse(m)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("key images.registries[%d].mirrors[%d]: must be an http:// or https:// URL, got %q", i, j, m)
			}
		}
	}
	if len(c.Runtime.Handlers) == 0 {
		return errors.New("key runtime.handlers: at least one handler is required")
	}
	if _, ok := c.Runtime.Handlers[c.Runtime.DefaultHandler]; !ok {
		return fmt.Errorf("key runtime.default_handler: %q is not in runtime.handlers", c.Runtime.DefaultHandler)
	}
	for name, h := range c.Runtime.Handlers {
		if h.Path == "" {
			return fmt.Errorf("key runtime.handlers.%s.path: must not be empty", name)
		}
		for i, p := range h.AllowedAnnotations {
			if err := validAnnotationPattern(p); err != nil {
				return fmt.Errorf("key runtime.handlers.%s.allowed_annotations[%d]: %w", name, i, err)
			}
		}
	}
	if c.Runtime.ExecSyncDrainTimeout.Duration < 0 {
		return errors.New("key runtime.exec_sync_drain_timeout: must not be negative")
	}
	if c.Runtime.CommandTimeout.Duration <= 0 {
		return errors.New("key runtime.command_timeout: must be positive")
	}
	if c.Network.PluginTimeout.Duration <= 0 {
		return errors.New("key network.plugin_timeout: must be positive")
	}
	for i, d := range c.Runtime.CDISpecDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("key runtime.cdi_spec_dirs[%d]: must be an absolute path, got %q", i, d)
		}
	}
	if c.Network.ConfDir == "" {
		return errors.New("key network.conf_dir: must not be empty")
	}
	if len(c.Network.BinDirs) == 0 {
		return errors.New("key network.bin_dirs: at least one directory is required")
	}
	if net.ParseIP(c.Streaming.Address) == nil {
		return fmt.Errorf("key streaming.address: must be an IP address, got %q", c.Streaming.Address)
	}
	if c.Streaming.Port < 0 || c.Streaming.Port > 65535 {
		return fmt.Errorf("key streaming.port: must be 0..65535, got %d", c.Streaming.Port)
	}
	if (c.Streaming.TLSCert == "") != (c.Streaming.TLSKey == "") {
		return errors.New("key streaming.tls_cert/tls_key: set both or neither")
	}
	if err := c.Tracing.validate(); err != nil {
		return err
	}
	if err := c.NRI.validate(); err != nil {
		return err
	}
	if err := c.Metrics.validate(); err != nil {
		return err
	}
	return nil
}

// CheckRuntimePaths fails, naming the key, when a handler's runtime binary
// cannot be found. For the default runc it says how to install it instead
// of falling back to another runc (see DefaultRuncPath). The daemon calls
// it at start; it is not part of Validate, which checks the file alone.
func (c *Config) CheckRuntimePaths() error { return c.checkRuntimePaths(DefaultRuncPath) }

// checkRuntimePaths is CheckRuntimePaths with the default runc's path given.
func (c *Config) checkRuntimePaths(defaultRunc string) error {
	names := make([]string, 0, len(c.Runtime.Handlers))
	for n := range c.Runtime.Handlers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		p := c.Runtime.Handlers[name].Path
		if _, err := exec.LookPath(p); err != nil {
			if p == defaultRunc {
				return fmt.Errorf("key runtime.handlers.%s.path: %s not found: %s; to run another runc knowingly, set this key to its path: %w", name, p, installRuncHint, err)
			}
			return fmt.Errorf("key runtime.handlers.%s.path: %w", name, err)
		}
	}
	return nil
}

// HandlerRoot is the --root directory of the named runtime handler.
func (c *Config) HandlerRoot(name string) string {
	if h := c.Runtime.Handlers[name]; h.Root != "" {
		return h.Root
	}
	return filepath.Join(c.State, "runtime", name)
}

// Marshal renders cfg as commented TOML (used by `crid config default`).
func Marshal(cfg *Config) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# crid configuration. Every key is optional; shown are the defaults.\n")
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(false)
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	out := showDirectExecDefaults(buf.Bytes(), cfg.Runtime.Handlers)
	buf.Reset()
	buf.Write(out)
	buf.WriteString(`
# Example registry mirror (air-gapped nodes):
# [[images.registries]]
# host = "registry.k8s.io"
# mirrors = ["http://127.0.0.1:5000/registry.k8s.io"]  # tried in order; http:// = plain HTTP; a path is a repository prefix
# fallback = false                                      # never contact registry.k8s.io itself
`)
	return buf.Bytes(), nil
}

// showDirectExecDefaults adds, to each handler table of out whose
// direct_exec is unset (so the encoder left the key and its comment out),
// the key's comment and its effective value, commented out: writing the
// value itself would pin it, and a file copied from `crid config default`
// whose path is later pointed at runsc would keep direct exec on.
func showDirectExecDefaults(out []byte, handlers map[string]Handler) []byte {
	field, _ := reflect.TypeOf(Handler{}).FieldByName("DirectExec")
	comment := field.Tag.Get("comment")
	lines := strings.SplitAfter(string(out), "\n")
	var res strings.Builder
	pending := "" // lines to add at the end of the current handler table
	for _, l := range lines {
		trimmed := strings.TrimSpace(l)
		if pending != "" && (trimmed == "" || strings.HasPrefix(trimmed, "[")) {
			res.WriteString(pending)
			pending = ""
		}
		if name, ok := handlerTable(trimmed); ok {
			if h, ok := handlers[name]; ok && h.DirectExec == nil {
				pending = fmt.Sprintf("# %s\n# direct_exec = %t\n", comment, h.ExecDirect())
			}
		}
		res.WriteString(l)
	}
	res.WriteString(pending)
	return []byte(res.String())
}

// handlerTable returns the handler name of a "[runtime.handlers.NAME]" line.
func handlerTable(line string) (string, bool) {
	name, ok := strings.CutPrefix(line, "[runtime.handlers.")
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, "]")
	if !ok || name == "" {
		return "", false
	}
	return strings.Trim(name, `'"`), true
}
