package core

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/crid-dev/crid/internal/cgroups"
	"github.com/crid-dev/crid/internal/oci"
	"github.com/crid-dev/crid/internal/store"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// recover rebuilds the in-memory state from the store and the monitors.
// Objects caught half-created by a crash are cleaned up; containers that
// exited while crid was down get their exit from the monitor's exit file.
// progress, when set, is told before each record and once at the end how
// many of the recorded pods and containers are done.
func (s *Service) recover(ctx context.Context, progress func(done, total int)) error {
	// Pauses run without a monitor are orphaned to crid when runc exits;
	// being their subreaper lets crid reap them (see pause.go).
	if err := becomeSubreaper(); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		reapStrays(s.ctx, s.log)
	}()
	s.trash.sweep()
	sbs, err := store.List[sandboxRecord](s.st, store.BucketSandboxes)
	if err != nil {
		return err
	}
	cs, err := store.List[containerRecord](s.st, store.BucketContainers)
	if err != nil {
		return err
	}
	step := recoverySteps(progress, len(sbs)+len(cs))
	for _, rec := range sbs {
		step()
		cfg := &runtime.PodSandboxConfig{}
		if err := proto.Unmarshal(rec.Config, cfg); err != nil {
			return fmt.Errorf("decode sandbox %s: %w", rec.ID, err)
		}
		sb := newSandbox(*rec, cfg)
		if rec.State == sandboxInit {
			s.log.Warn("cleaning up pod sandbox left half-created by a crash", "pod", rec.ID)
			s.cleanupSandbox(ctx, sb)
			continue
		}
		s.sandboxes[rec.ID] = sb
		s.names[rec.Name] = rec.ID
		if err := secureOldDirs(oci.PodUserNamespace(cfg), s.sandboxDir(rec.ID), s.sandboxBundle(rec.ID)); err != nil {
			// Not fatal: the pod keeps running; the operator is told.
			s.log.Warn("could not restrict the pod's directories", "pod", rec.ID, "err", err)
		}
		switch {
		case rec.PID != 0:
			s.watchSandbox(sb, s.sandboxBundle(rec.ID))
		case rec.Pinned && rec.State == sandboxReady && pinsAlive(*rec):
			// No pause to watch: ready until stopped. (After a reboot
			// the pins under /run are gone, and so is the pod.)
		default:
			close(sb.exited)
		}
	}
	for _, rec := range cs {
		step()
		cfg := &runtime.ContainerConfig{}
		if err := proto.Unmarshal(rec.Config, cfg); err != nil {
			return fmt.Errorf("decode container %s: %w", rec.ID, err)
		}
		c := &container{rec: *rec, config: cfg, exited: make(chan struct{})}
		_, hasSandbox := s.sandboxes[rec.SandboxID]
		if rec.State == containerInit || !hasSandbox {
			s.log.Warn("cleaning up container left half-created or orphaned", "container", rec.ID, "state", rec.State)
			s.cleanupContainer(ctx, c)
			continue
		}
		s.containers[rec.ID] = c
		s.names[rec.Name] = rec.ID
		if err := secureOldDirs(oci.PodUserNamespace(s.sandboxes[rec.SandboxID].cfg()), s.containerDir(rec.ID), s.containerBundle(rec.ID)); err != nil {
			s.log.Warn("could not restrict the container's directories", "container", rec.ID, "err", err)
		}
		if rec.State == containerExited {
			close(c.exited)
			continue
		}
		s.watchContainer(c)
	}
	s.sweepNetNS()
	step()
	s.log.Info("state recovered", "sandboxes", len(s.sandboxes), "containers", len(s.containers))
	return nil
}

// sweepNetNS removes network namespace pins no recovered pod owns: a pod's
// pin is made while its first record is written (runPodSandbox), so a
// crash before that record was committed leaves one behind.
func (s *Service) sweepNetNS() {
	removed, err := s.net.SweepNetNS(func(id string) bool {
		_, ok := s.sandboxes[id]
		return ok
	})
	for _, id := range removed {
		s.log.Warn("removed a network namespace pin no pod records (left by a crash before the pod's first record)", "pod", id)
	}
	if err != nil {
		// Not fatal: the pods that are recorded are served; the operator is told.
		s.log.Warn("could not remove network namespace pins no pod records", "error", err)
	}
}

// recoverySteps returns a func to call before each of total records and
// once after the last: it tells progress how many are done (0, 1, ...,
// total). A nil progress gives a func that does nothing.
func recoverySteps(progress func(done, total int), total int) func() {
	done := 0
	return func() {
		if progress == nil {
			return
		}
		progress(min(done, total), total)
		done++
	}
}

// cleanupSandbox removes whatever a half-created sandbox may have left.
func (s *Service) cleanupSandbox(ctx context.Context, sb *sandbox) {
	rec := sb.rec
	if rt, err := s.runtimeFor(rec.Handler); err == nil {
		_ = rt.Kill(ctx, rec.ID, syscall.SIGKILL, true)
		_ = rt.Delete(ctx, rec.ID, true)
	}
	_ = cgroups.Remove(rec.CgroupsPath)
	if rec.NetworkSetUp {
		if err := s.net.Teardown(ctx, podNetwork(rec, sb.cfg())); err != nil {
			s.log.Warn("cleanup: network teardown", "pod", rec.ID, "error", err)
		}
	}
	if rec.NetNSPath != "" {
		_ = s.net.RemoveNetNS(rec.NetNSPath)
	}
	// A crash may have pinned them before recording their paths.
	_ = unpinPodNamespaces(podNamespacePins(s.pinDir(), rec.ID))
	dir, bundle := s.sandboxDir(rec.ID), s.sandboxBundle(rec.ID)
	_ = s.images.ReleaseRootfs(ctx, filepath.Join(dir, "rw"), filepath.Join(bundle, "rootfs"))
	_ = unmount(filepath.Join(bundle, "shm"))
	_ = removeAll(bundle, dir)
	if err := s.st.Delete(store.BucketSandboxes, rec.ID); err != nil {
		s.log.Error("cleanup: delete sandbox record", "pod", rec.ID, "error", err)
	}
}

// cleanupContainer removes whatever a half-created or orphaned container left.
func (s *Service) cleanupContainer(ctx context.Context, c *container) {
	rec := c.rec
	if rt, err := s.runtimeFor(s.handlerOf(rec.SandboxID)); err == nil {
		_ = rt.Kill(ctx, rec.ID, syscall.SIGKILL, true)
		_ = rt.Delete(ctx, rec.ID, true)
	}
	_ = cgroups.Remove(rec.CgroupsPath)
	dir, bundle := s.containerDir(rec.ID), s.containerBundle(rec.ID)
	_ = s.images.ReleaseRootfs(ctx, "", filepath.Join(bundle, "rootfs"))
	if err := s.releaseImageVolumes(ctx, rec.ID); err != nil {
		s.log.Warn("cleanup: image volumes", "container", rec.ID, "error", err)
	}
	_ = removeAll(bundle)
	// The writable layer is deleted in the background: recovery does not
	// wait on the disk either.
	if err := s.trash.discard(dir); err != nil {
		s.log.Warn("cleanup: container dir", "container", rec.ID, "error", err)
	}
	if err := s.st.Delete(store.BucketContainers, rec.ID); err != nil {
		s.log.Error("cleanup: delete container record", "container", rec.ID, "error", err)
	}
}
