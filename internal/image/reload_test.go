package image

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/config"
)

// TestReloadSwitchesMirrors: after Reload a pull goes through the new
// mirror; before it, through the old one only.
func TestReloadSwitchesMirrors(t *testing.T) {
	oldReg, newReg := newTestRegistry(t), newTestRegistry(t)
	img := testImage(t, "", baseLayer(t))
	newReg.push(t, "registry.k8s.io/only-new:1", img)
	cfg := mirrorConfig(oldReg)
	s, _, _ := newTestService(t, cfg)

	if _, err := s.Pull(context.Background(), "registry.k8s.io/only-new:1", nil); !errdefs.IsNotFound(err) {
		t.Fatalf("pull before the reload = %v, want not found on the old mirror", err)
	}
	next := mirrorConfig(newReg)
	next.PullProgressTimeout = config.Duration{Duration: 2 * time.Minute}
	s.Reload(next)
	if got := s.settings().progressTimeout; got != 2*time.Minute {
		t.Errorf("progress timeout after the reload = %v", got)
	}
	got, err := s.Pull(context.Background(), "registry.k8s.io/only-new:1", nil)
	if err != nil {
		t.Fatalf("pull after the reload: %v", err)
	}
	if got.ID != imageID(t, img) {
		t.Errorf("pulled %s, want %s", got.ID, imageID(t, img))
	}
	if n := oldReg.getCount("/manifests/1"); n != 1 {
		t.Errorf("old mirror got %d manifest requests, want 1 (the pull before the reload)", n)
	}
}

// TestReloadKeepsRunningPullOnItsEndpoints: a pull that started before a
// reload finishes from the mirror it started on, and the caller's config
// can be changed after Reload without reaching the service.
func TestReloadKeepsRunningPullOnItsEndpoints(t *testing.T) {
	oldReg, newReg := newTestRegistry(t), newTestRegistry(t)
	img := testImage(t, "", baseLayer(t), testLayer(t, entry{name: "slow", content: "slow"}))
	oldReg.push(t, "registry.k8s.io/slow:1", img)
	oldReg.mu.Lock()
	oldReg.delay = 500 * time.Millisecond
	oldReg.mu.Unlock()
	s, _, _ := newTestService(t, mirrorConfig(oldReg))

	done := make(chan error, 1)
	go func() {
		_, err := s.Pull(context.Background(), "registry.k8s.io/slow:1", nil)
		done <- err
	}()
	// Reload once the pull is fetching blobs from the old mirror.
	deadline := time.Now().Add(10 * time.Second)
	for oldReg.getCount("/manifests/1") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("pull never reached the old mirror")
		}
		time.Sleep(10 * time.Millisecond)
	}
	next := mirrorConfig(newReg)
	s.Reload(next)
	next.Registries[0].Mirrors[0] = "http://127.0.0.1:1/changed-after-reload"
	if err := <-done; err != nil {
		t.Fatalf("pull across the reload: %v", err)
	}
	if n := newReg.requests.Load(); n != 0 {
		t.Errorf("the new mirror got %d requests from a pull started before the reload", n)
	}
	if got := s.settings().registries[0].Mirrors[0]; got != "http://"+newReg.host+"/registry.k8s.io" {
		t.Errorf("service mirror = %q: the caller's later change reached it", got)
	}
}

// TestReloadUnderConcurrentPulls runs pulls while mirrors and limits are
// swapped back and forth (go test -race checks the swap).
func TestReloadUnderConcurrentPulls(t *testing.T) {
	a, b := newTestRegistry(t), newTestRegistry(t)
	var refs []string
	for i := range 6 {
		img := testImage(t, "", testLayer(t, entry{name: fmt.Sprintf("f%d", i), content: fmt.Sprint(i)}))
		ref := fmt.Sprintf("registry.k8s.io/img%d:1", i)
		a.push(t, ref, img)
		b.push(t, ref, img)
		refs = append(refs, ref)
	}
	s, _, _ := newTestService(t, mirrorConfig(a))
	stop := make(chan struct{})
	var reloads sync.WaitGroup
	reloads.Add(1)
	go func() {
		defer reloads.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cfg := mirrorConfig(a)
			if i%2 == 1 {
				cfg = mirrorConfig(b)
			}
			cfg.MaxConcurrentDownloads = 1 + i%4
			s.Reload(cfg)
			time.Sleep(time.Millisecond)
		}
	}()
	var pulls sync.WaitGroup
	errs := make([]error, len(refs))
	for i, ref := range refs {
		pulls.Add(1)
		go func() {
			defer pulls.Done()
			_, errs[i] = s.Pull(context.Background(), ref, nil)
		}()
	}
	pulls.Wait()
	close(stop)
	reloads.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull %s: %v", refs[i], err)
		}
	}
	if a.requests.Load()+b.requests.Load() == 0 {
		t.Error("no mirror was asked")
	}
}
