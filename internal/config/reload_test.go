package config

import (
	"slices"
	"testing"
	"time"
)

func parse(t *testing.T, data string) *Config {
	t.Helper()
	cfg := Default()
	if err := Parse([]byte(data), cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestChangedKeysSplitsLiveFromRestart(t *testing.T) {
	old := parse(t, `
[[images.registries]]
host = "registry.k8s.io"
mirrors = ["http://127.0.0.1:5000/a"]
`)
	same := parse(t, `
[[images.registries]]
host = "registry.k8s.io"
mirrors = ["http://127.0.0.1:5000/a"]
`)
	if live, restart := ChangedKeys(old, same); len(live)+len(restart) != 0 {
		t.Errorf("identical configs differ in %v %v", live, restart)
	}
	next := parse(t, `
log_level = "debug"
[images]
max_concurrent_downloads = 7
sandbox_image = "registry.k8s.io/pause:3.9"
[[images.registries]]
host = "registry.k8s.io"
mirrors = ["http://127.0.0.1:5001/b"]
[runtime.handlers.crun]
path = "/usr/bin/crun"
[streaming]
idle_timeout = "1h"
`)
	live, restart := ChangedKeys(old, next)
	if want := []string{"images.max_concurrent_downloads", "images.registries"}; !slices.Equal(live, want) {
		t.Errorf("live = %v, want %v", live, want)
	}
	if want := []string{"images.sandbox_image", "log_level", "runtime.handlers", "streaming.idle_timeout"}; !slices.Equal(restart, want) {
		t.Errorf("restart = %v, want %v", restart, want)
	}
	// A fallback flipped behind the same pointer shape is a change too.
	no := parse(t, "[[images.registries]]\nhost = \"registry.k8s.io\"\nmirrors = [\"http://127.0.0.1:5000/a\"]\nfallback = false\n")
	if live, _ := ChangedKeys(old, no); !slices.Equal(live, []string{"images.registries"}) {
		t.Errorf("fallback change: live = %v", live)
	}
}

func TestWithLiveKeepsRestartKeys(t *testing.T) {
	running := parse(t, "log_level = \"warn\"\n")
	next := parse(t, "log_level = \"debug\"\n[images]\npull_progress_timeout = \"10s\"\n[[images.registries]]\nhost = \"docker.io\"\nmirrors = [\"https://m.example\"]\n")
	got := WithLive(running, next)
	if got.LogLevel != "warn" {
		t.Errorf("log_level = %q: a restart-only key was applied", got.LogLevel)
	}
	if got.Images.PullProgressTimeout.Duration != 10*time.Second || len(got.Images.Registries) != 1 {
		t.Errorf("live keys not applied: %+v", got.Images)
	}
	if live, restart := ChangedKeys(got, next); len(live) != 0 || !slices.Equal(restart, []string{"log_level"}) {
		t.Errorf("after WithLive: live %v restart %v, want only log_level pending", live, restart)
	}
	if running.Images.PullProgressTimeout.Duration == 10*time.Second {
		t.Error("WithLive changed the running config in place")
	}
}
