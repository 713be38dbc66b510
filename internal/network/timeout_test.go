package network

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/config"
)

// TestPluginTimeout: a CNI plugin that hangs on DEL is killed at
// network.plugin_timeout, each of Teardown's attempts ends, and the error
// is a DeadlineExceeded naming the key.
func TestPluginTimeout(t *testing.T) {
	requireRoot(t)
	confDir, binDir, state := t.TempDir(), t.TempDir(), t.TempDir()
	pids := filepath.Join(binDir, "pids")
	plugin := "#!/bin/sh\nif [ \"$CNI_COMMAND\" = VERSION ]; then echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}'; exit 0; fi\n" +
		"echo $$ >> " + pids + "\nexec sleep 600\n"
	if err := os.WriteFile(filepath.Join(binDir, "hung"), []byte(plugin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(confDir, "10-hung.conflist"), []byte(`{"cniVersion":"1.0.0","name":"hung","plugins":[{"type":"hung"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := New(config.Network{ConfDir: confDir, BinDirs: []string{binDir}, PluginTimeout: config.Duration{Duration: 200 * time.Millisecond}},
		state, WithCacheDir(filepath.Join(state, "cni-cache")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountAll(t, m.netnsDir) })
	start := time.Now()
	err = m.Teardown(context.Background(), Pod{ID: "p1", Name: "p", Namespace: "ns", UID: "u"})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "network.plugin_timeout") {
		t.Fatalf("Teardown through a hung plugin = %v, want DeadlineExceeded naming network.plugin_timeout", err)
	}
	// teardownAttempts DELs of 200ms each and the backoffs between them.
	if took > 10*time.Second {
		t.Errorf("Teardown took %v", took)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b))
	if len(lines) != teardownAttempts {
		t.Errorf("the plugin ran %d times, want %d attempts", len(lines), teardownAttempts)
	}
	for _, l := range lines {
		pid, _ := strconv.Atoi(l)
		if pid <= 0 || syscall.Kill(pid, 0) == nil {
			t.Errorf("hung plugin %q was not killed and reaped", l)
		}
	}
}
