package main

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/image"
	"github.com/crid-dev/crid/internal/sdnotify"
	"github.com/crid-dev/crid/internal/store"
)

// notifyRecorder is a notify socket; drain returns what arrived so far.
type notifyRecorder struct{ conn *net.UnixConn }

func newNotifyRecorder(t *testing.T) (*notifyRecorder, *sdnotify.Notifier) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n, err := sdnotify.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return &notifyRecorder{conn: conn}, n
}

func (r *notifyRecorder) drain(t *testing.T) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 4096)
	for {
		if err := r.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		n, err := r.conn.Read(buf)
		if err != nil {
			return out
		}
		out = append(out, string(buf[:n]))
	}
}

// TestRecoveryProgressIsThrottled: a fast recovery sends its start and its
// end only; one with nothing to recover sends nothing; a slow one sends
// again once recoveryNotifyEvery has passed.
func TestRecoveryProgressIsThrottled(t *testing.T) {
	rec, n := newNotifyRecorder(t)
	svc := &service{notify: n, log: slog.New(slog.DiscardHandler)}
	svc.recoveryProgress(0, 0)
	if got := rec.drain(t); len(got) != 0 {
		t.Errorf("nothing to recover sent %q", got)
	}
	for i := 0; i <= 500; i++ {
		svc.recoveryProgress(i, 500)
	}
	got := rec.drain(t)
	want := []string{
		"EXTEND_TIMEOUT_USEC=120000000\nSTATUS=recovering state: 0 of 500 pods and containers\n",
		"EXTEND_TIMEOUT_USEC=120000000\nSTATUS=recovering state: 500 of 500 pods and containers\n",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fast recovery sent %q, want %q", got, want)
	}
	svc.recoveryProgress(0, 10)
	svc.lastProgress = time.Now().Add(-recoveryNotifyEvery)
	svc.recoveryProgress(4, 10)
	svc.recoveryProgress(5, 10)
	if got := rec.drain(t); len(got) != 2 || !strings.Contains(got[1], "4 of 10") {
		t.Errorf("slow recovery sent %q, want 0 of 10 then 4 of 10", got)
	}
}

// TestNoReadyAfterStopping: once crid reports STOPPING=1, a reload that
// ends later must not report it ready again.
func TestNoReadyAfterStopping(t *testing.T) {
	rec, n := newNotifyRecorder(t)
	svc := &service{notify: n, log: slog.New(slog.DiscardHandler)}
	svc.stop(syscall.SIGTERM)
	svc.send(false, "READY=1", func() error { return n.Ready("reloaded") })
	got := rec.drain(t)
	if len(got) != 1 || !strings.HasPrefix(got[0], "STOPPING=1\n") {
		t.Errorf("sent %q, want STOPPING=1 alone", got)
	}
}

// TestReloaderApply runs the reload against a real image service: a good
// file swaps the mirrors and names restart-only keys; a bad one is refused
// and the running config kept.
func TestReloaderApply(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "crid.toml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := "root = \"" + dir + "/root\"\n"
	write(base + "[[images.registries]]\nhost = \"registry.k8s.io\"\nmirrors = [\"http://127.0.0.1:5000/a\"]\n")
	o := daemonOptions{configPath: cfgPath, configExplicit: true}
	running, err := loadConfig(&o)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	images, err := image.New(running.Images, filepath.Join(dir, "root"), st)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r := &reloader{opts: o, svc: &service{log: log}, images: images, log: log, running: running}

	write(base + "log_level = \"debug\"\n[[images.registries]]\nhost = \"registry.k8s.io\"\nmirrors = [\"http://127.0.0.1:5001/b\"]\n")
	if status := r.apply(); !strings.Contains(status, "1 changed key(s) wait for a restart") {
		t.Errorf("status = %q", status)
	}
	if got := r.running.Images.Registries[0].Mirrors[0]; got != "http://127.0.0.1:5001/b" {
		t.Errorf("running mirror = %q after a good reload", got)
	}
	if r.running.LogLevel != "info" {
		t.Errorf("log_level = %q: a restart-only key was taken as applied", r.running.LogLevel)
	}
	if !strings.Contains(logs.String(), "keys=[log_level]") || !strings.Contains(logs.String(), "applied=[images.registries]") {
		t.Errorf("log lacks the restart-only and applied keys:\n%s", logs.String())
	}

	logs.Reset()
	write(base + "[[images.registries]]\nhost = \"registry.k8s.io\"\nmirrors = [\"ftp://nowhere\"]\n")
	if status := r.apply(); !strings.Contains(status, "refused") {
		t.Errorf("status after a bad file = %q", status)
	}
	if got := r.running.Images.Registries[0].Mirrors[0]; got != "http://127.0.0.1:5001/b" {
		t.Errorf("running mirror = %q after a refused reload", got)
	}
	if !strings.Contains(logs.String(), "config reload refused") || !strings.Contains(logs.String(), "images.registries[0].mirrors[0]") {
		t.Errorf("refusal not logged with the bad key:\n%s", logs.String())
	}
}
