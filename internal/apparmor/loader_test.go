package apparmor

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// fakeKernel stands in for the kernel's profile list and apparmor_parser:
// a load records the text of the file it is given.
type fakeKernel struct {
	profiles map[string]string // name -> text loaded
	loads    int
	fail     error // a load's error
	noParser bool
}

func newTestLoader(t *testing.T, k *fakeKernel, p Params) (*Loader, *bytes.Buffer) {
	t.Helper()
	var logBuf bytes.Buffer
	l := NewLoader(t.TempDir(), slog.New(slog.NewTextHandler(&logBuf, nil)))
	l.params = func() Params { return p }
	l.loaded = func(name string) (bool, error) { _, ok := k.profiles[name]; return ok, nil }
	l.parser = func() (string, error) {
		if k.noParser {
			return "", errors.New("apparmor_parser not found in $PATH, /usr/sbin or /sbin")
		}
		return "/usr/sbin/apparmor_parser", nil
	}
	l.run = func(_ context.Context, parser string, args ...string) ([]byte, error) {
		if len(args) != 2 || args[0] != "-Kr" {
			t.Fatalf("parser run with %q, want -Kr FILE", args)
		}
		if k.fail != nil {
			return []byte("AppArmor parser error: syntax"), k.fail
		}
		b, err := os.ReadFile(args[1])
		if err != nil {
			t.Fatalf("the parser's file: %v", err)
		}
		k.profiles[DefaultProfile] = string(b)
		k.loads++
		return nil, nil
	}
	return l, &logBuf
}

func TestLoaderEnsureDefault(t *testing.T) {
	ctx := context.Background()
	k := &fakeKernel{profiles: map[string]string{}}
	p := defaultParams()
	want := render(t, p)
	l, log := newTestLoader(t, k, p)

	// Not loaded: loaded, and its text recorded.
	if err := l.EnsureDefault(ctx); err != nil {
		t.Fatal(err)
	}
	if k.loads != 1 || k.profiles[DefaultProfile] != want {
		t.Fatalf("loads %d, kernel text matches: %v", k.loads, k.profiles[DefaultProfile] == want)
	}
	if b, err := os.ReadFile(l.Path()); err != nil || string(b) != want {
		t.Fatalf("record: %v", err)
	}
	if !strings.Contains(log.String(), "reason=\"not loaded\"") {
		t.Errorf("log: %s", log)
	}
	// Loaded with this text: nothing to do, however often asked.
	for i := 0; i < 3; i++ {
		if err := l.EnsureDefault(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if k.loads != 1 {
		t.Errorf("loads %d after repeated calls, want 1", k.loads)
	}
	// Unloaded behind crid's back (aa-teardown): loaded again.
	delete(k.profiles, DefaultProfile)
	if err := l.EnsureDefault(ctx); err != nil || k.loads != 2 {
		t.Fatalf("after unload: %v, loads %d", err, k.loads)
	}
	if entries, _ := os.ReadDir(filepath.Dir(l.Path())); len(entries) != 1 {
		t.Errorf("state dir holds %d files, want only the record", len(entries))
	}
}

// TestLoaderRestart: a new crid (a new Loader on the same state dir)
// reuses a profile loaded with its text and replaces one whose text
// differs, as after an upgrade.
func TestLoaderRestart(t *testing.T) {
	ctx := context.Background()
	k := &fakeKernel{profiles: map[string]string{}}
	p := defaultParams()
	first, _ := newTestLoader(t, k, p)
	if err := first.EnsureDefault(ctx); err != nil {
		t.Fatal(err)
	}
	same, log := newTestLoader(t, k, p)
	same.dir = first.dir
	if err := same.EnsureDefault(ctx); err != nil || k.loads != 1 {
		t.Fatalf("restart, same text: %v, loads %d (want 1)", err, k.loads)
	}
	if !strings.Contains(log.String(), "already loaded") {
		t.Errorf("log: %s", log)
	}
	upgraded := p
	upgraded.SignalPeers = append(append([]string{}, p.SignalPeers...), "crid")
	newer, log := newTestLoader(t, k, upgraded)
	newer.dir = first.dir
	if err := newer.EnsureDefault(ctx); err != nil || k.loads != 2 {
		t.Fatalf("restart, new text: %v, loads %d (want 2)", err, k.loads)
	}
	if k.profiles[DefaultProfile] != render(t, upgraded) || !strings.Contains(log.String(), "text changed, was sha256 "+TextHash(render(t, p))) {
		t.Errorf("kernel has the new text: %v; log: %s", k.profiles[DefaultProfile] == render(t, upgraded), log)
	}
	// Loaded by someone else, no record: replaced with crid's own.
	k2 := &fakeKernel{profiles: map[string]string{DefaultProfile: "profile crid-default {}"}}
	other, _ := newTestLoader(t, k2, p)
	if err := other.EnsureDefault(ctx); err != nil || k2.profiles[DefaultProfile] != render(t, p) {
		t.Fatalf("foreign profile: %v, replaced: %v", err, k2.profiles[DefaultProfile] == render(t, p))
	}
}

func TestLoaderFailures(t *testing.T) {
	ctx := context.Background()
	k := &fakeKernel{profiles: map[string]string{}, noParser: true}
	l, _ := newTestLoader(t, k, defaultParams())
	err := l.EnsureDefault(ctx)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "apparmor_parser") {
		t.Fatalf("no parser: %v, want FailedPrecondition naming apparmor_parser", err)
	}
	// The parser refuses: an error with its output, and no record.
	k.noParser, k.fail = false, errors.New("exit status 1")
	err = l.EnsureDefault(ctx)
	if err == nil || !strings.Contains(err.Error(), "syntax") {
		t.Fatalf("parser failure: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(l.Path())); len(entries) != 0 {
		t.Errorf("a failed load left %d files", len(entries))
	}
	// Once the parser works, the next container gets it.
	k.fail = nil
	if err := l.EnsureDefault(ctx); err != nil || k.loads != 1 {
		t.Fatalf("after the fix: %v, loads %d", err, k.loads)
	}
}
