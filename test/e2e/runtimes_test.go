package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newRunc is the runc scripts/build-runc.sh installs, the default handler's.
const newRunc = "/usr/local/sbin/runc"

// TestInfoShowsRuntimes: `crictl info` names each handler's binary and the
// version it reported, and finds no known escape in the runc the default
// handler runs.
func TestInfoShowsRuntimes(t *testing.T) {
	crictl := os.Getenv("CRICTL")
	if crictl == "" {
		t.Fatal("CRICTL not set (scripts/test.sh builds crictl)")
	}
	want, err := exec.Command(newRunc, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v (scripts/build-runc.sh installs it)", newRunc, err)
	}
	wantLine, _, _ := strings.Cut(string(want), "\n")
	out, err := exec.Command(crictl, "--runtime-endpoint", "unix://"+h.socket, "info").Output()
	if err != nil {
		t.Fatalf("crictl info: %v", err)
	}
	// crictl shows the verbose Status info map under its key, "info".
	var resp struct {
		Info struct {
			DefaultRuntimeName string `json:"defaultRuntimeName"`
			Runtimes           []struct {
				Name, Path, Version string
				DirectExec          bool
				KnownEscapes        []struct{ CVEs []string }
				Problems            []string
			} `json:"runtimes"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("crictl info output: %v\n%s", err, out)
	}
	info := resp.Info
	if info.DefaultRuntimeName != "runc" {
		t.Errorf("defaultRuntimeName = %q", info.DefaultRuntimeName)
	}
	seen := map[string]bool{}
	for _, r := range info.Runtimes {
		seen[r.Name] = true
		switch r.Name {
		case "runc":
			if r.Path != newRunc || r.Version != wantLine || !r.DirectExec || len(r.KnownEscapes) > 0 || len(r.Problems) > 0 {
				t.Errorf("runc handler = %+v, want %s reporting %q, direct exec, no escapes, no problems", r, newRunc, wantLine)
			}
		case "runc-b":
			if r.DirectExec || !strings.HasPrefix(r.Version, "runc version ") {
				t.Errorf("runc-b handler = %+v, want direct_exec off as configured", r)
			}
		case "broken":
			// /bin/false: no version, and direct exec off by its name.
			if r.DirectExec || r.Version != "" || len(r.Problems) == 0 {
				t.Errorf("broken handler = %+v, want no version, a problem, no direct exec", r)
			}
		}
	}
	for _, n := range []string{"runc", "runc-b", "broken"} {
		if !seen[n] {
			t.Errorf("handler %s missing from crictl info:\n%s", n, out)
		}
	}
}

// privateCrid writes a config of handlers with private dirs under a new
// temporary directory and returns its path.
func privateCrid(t *testing.T, handlers string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "crid-rt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// crid makes its netns and pin dirs mount points of their own.
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	cni := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cni, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "root = \"" + dir + "/root\"\nstate = \"" + dir + "/state\"\nsocket = \"" + dir + "/crid.sock\"\n" +
		"[runtime]\ndefault_handler = \"runc\"\n" + handlers +
		"[network]\nconf_dir = \"" + cni + "\"\n"
	p := filepath.Join(dir, "crid.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDaemonWarnsAboutEscapableRuntime: a handler on Debian's runc 1.1.5
// starts, with a warning naming the November 2025 escapes.
func TestDaemonWarnsAboutEscapableRuntime(t *testing.T) {
	cfg := privateCrid(t, "[runtime.handlers.debian]\npath = \"/usr/sbin/runc\"\n")
	var log bytes.Buffer
	cmd := exec.Command(filepath.Join(h.binDir, "crid"), "--config", cfg)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Wait for the socket (crid logs its handlers before serving), then
	// stop it; the log is read once it has exited.
	deadline := time.After(30 * time.Second)
	socket := filepath.Join(filepath.Dir(cfg), "crid.sock")
wait:
	for {
		select {
		case err := <-done:
			t.Fatalf("crid exited early: %v\n%s", err, log.String())
		case <-deadline:
			break wait
		case <-time.After(100 * time.Millisecond):
			if _, err := os.Stat(socket); err == nil {
				break wait
			}
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("crid did not stop on SIGTERM")
	}
	out := log.String()
	var warn string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "known container escapes") {
			warn = l
		}
	}
	for _, want := range []string{"handler=debian", "path=/usr/sbin/runc", "CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881", "CVE-2024-45310"} {
		if !strings.Contains(warn, want) {
			t.Errorf("escape warning %q lacks %q; log:\n%s", warn, want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "handler=runc") && strings.Contains(l, "level=WARN") {
			t.Errorf("the default runc is warned about: %s", l)
		}
	}
}

// TestDaemonRefusesMissingDefaultRunc: without /usr/local/sbin/runc (hidden
// here by an empty tmpfs in a private mount namespace) crid does not fall
// back to Debian's runc: it exits naming the key and the install script.
func TestDaemonRefusesMissingDefaultRunc(t *testing.T) {
	cfg := privateCrid(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs none "$(dirname "$1")" && exec "$2" --config "$3"`, "sh", newRunc, filepath.Join(h.binDir, "crid"), cfg)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("crid did not exit without its runc:\n%s", out)
	}
	if err == nil {
		t.Fatalf("crid started without %s:\n%s", newRunc, out)
	}
	for _, want := range []string{"key runtime.handlers.runc.path", newRunc + " not found", "scripts/build-runc.sh"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("crid's error lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(newRunc); err != nil {
		t.Errorf("%s gone from the host after the test: %v", newRunc, err)
	}
}
