package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDaemonRefusesBadConfig starts the real binary with bad configs: it
// must exit at once with a message naming the problem.
func TestDaemonRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	crid := filepath.Join(h.binDir, "crid")
	cases := []struct {
		name, toml, want string
	}{
		{"unknown key", "root = \"" + dir + "/r\"\nsockets = \"x\"\n", "sockets"},
		{"bad value", "root = \"" + dir + "/r\"\n[streaming]\nport = 99999\n", "streaming.port"},
		{"systemd without systemd", "root = \"" + dir + "/r\"\nstate = \"" + dir + "/s\"\nsocket = \"" + dir + "/s/c.sock\"\ncgroup_driver = \"systemd\"\n", "systemd is not running as PID 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if strings.HasPrefix(c.name, "systemd") && systemdPID1() {
				t.Skip("systemd is PID 1 here: the systemd driver is available and crid would start")
			}
			p := filepath.Join(dir, "c.toml")
			if err := os.WriteFile(p, []byte(c.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(crid, "--config", p)
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("crid did not exit on a bad config")
			}
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Errorf("crid exited with %v, output %q; want an error naming %q", err, out, c.want)
			}
		})
	}
	// The printed default config is valid and is what crid runs with.
	out, err := exec.Command(crid, "config", "default").Output()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "default.toml")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(crid, "--config", p, "config", "check").CombinedOutput(); err != nil {
		t.Errorf("default config does not check: %v %s", err, out)
	}
}
