package core

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/checkpoint"
	"github.com/crid-dev/crid/internal/diskfull"
	"github.com/crid-dev/crid/internal/runc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultCheckpointTimeout is the CRI default a zero timeout asks for:
// kubelet's own default deadline for a runtime call.
const defaultCheckpointTimeout = 2 * time.Minute

// checkpointDir holds checkpoints being assembled, one dir each; what a
// killed crid left there is removed at the next start.
func (s *Service) checkpointDir() string { return filepath.Join(s.cfg.State, "checkpoints") }

// CheckpointContainer writes a forensic checkpoint of a running container
// to req.Location (Kubernetes' ContainerCheckpoint, KEP-2008): criu's
// dump through `runc checkpoint --leave-running` plus the container's
// metadata and writable layer, as the archive CRI-O and containerd write.
// The container keeps running.
func (s *Service) CheckpointContainer(ctx context.Context, req *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("checkpoint container: container id is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkpoint.CheckLocation(req.GetLocation()); err != nil {
		return nil, fmt.Errorf("checkpoint container %s: %w", req.GetContainerId(), err)
	}
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("checkpoint container %s: timeout %d is negative: %w", req.GetContainerId(), req.GetTimeout(), errdefs.ErrInvalidArgument)
	}
	c, err := s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("checkpoint container: %w", err)
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	rec := c.snapshot()
	if rec.State != containerRunning {
		return nil, fmt.Errorf("checkpoint container %s: it is %s, only a running container can be checkpointed: %w", rec.ID, rec.State, errdefs.ErrFailedPrecondition)
	}
	if err := c.waitExecd(ctx); err != nil {
		return nil, fmt.Errorf("checkpoint %w", err)
	}
	rt, runtimeName, err := s.checkpointRuntime(ctx, rec)
	if err != nil {
		return nil, err
	}
	if err := s.criu.Check(); err != nil {
		return nil, fmt.Errorf("checkpoint container %s: %w", rec.ID, err)
	}
	timeout := defaultCheckpointTimeout
	if req.GetTimeout() > 0 {
		timeout = time.Duration(req.GetTimeout()) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	if err := s.checkpoint(ctx, c, rt, runtimeName, req.GetLocation()); err != nil {
		// A full disk (criu's images in the state dir, the archive at its
		// location) is ResourceExhausted naming the filesystem.
		return nil, fmt.Errorf("checkpoint container %s: %w", rec.ID, diskfull.Wrap(err, s.checkpointDir()))
	}
	s.log.Info("container checkpointed", "container", rec.ID, "location", req.GetLocation(), "duration", time.Since(start))
	return &runtime.CheckpointContainerResponse{}, nil
}

// checkpointRuntime is the container's runtime if it can checkpoint:
// runc and crun do it with criu; another runtime (gVisor's runsc has a
// checkpoint of its own, in another format) is refused. It returns the
// runtime and the name it gives itself ("runc"), which config.dump records.
func (s *Service) checkpointRuntime(ctx context.Context, rec containerRecord) (*runc.Runtime, string, error) {
	rt, err := s.runtimeFor(s.handlerOf(rec.SandboxID))
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint container %s: %w", rec.ID, err)
	}
	vi, err := rt.VersionInfo(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint container %s: handler %s cannot checkpoint: its runtime does not say what it is: %w: %w", rec.ID, rt.Name, err, errdefs.ErrFailedPrecondition)
	}
	if vi.Runtime != "runc" && vi.Runtime != "crun" {
		return nil, "", fmt.Errorf("checkpoint container %s: handler %s runs %q, and crid checkpoints only with runc or crun (through criu): %w", rec.ID, rt.Name, vi.Line, errdefs.ErrFailedPrecondition)
	}
	return rt, vi.Runtime, nil
}

// checkpoint dumps c into a work dir under the state dir, adds the
// metadata and writable layer, and writes the archive; the work dir is
// removed whatever happens.
func (s *Service) checkpoint(ctx context.Context, c *container, rt *runc.Runtime, runtimeName, location string) error {
	rec := c.snapshot()
	if err := ensureDir(s.checkpointDir(), modePrivate); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	work, err := os.MkdirTemp(s.checkpointDir(), rec.ID[:12]+"-")
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(work); err != nil {
			s.log.Error("remove checkpoint work dir", "dir", work, "error", err)
		}
	}()
	images := filepath.Join(work, metadata.CheckpointDirectory)
	if err := os.Mkdir(images, modePrivate); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	dumped := time.Now()
	if err := rt.Checkpoint(ctx, rec.ID, runc.CheckpointOptions{ImagePath: images, WorkPath: work}); err != nil {
		return err
	}
	contents, err := s.checkpointContents(c, runtimeName, dumped)
	if err != nil {
		return err
	}
	if err := checkpoint.Assemble(ctx, work, contents); err != nil {
		return err
	}
	return checkpoint.WriteArchive(ctx, work, location)
}

// checkpointContents gathers what the archive says about the container.
func (s *Service) checkpointContents(c *container, runtimeName string, at time.Time) (checkpoint.Contents, error) {
	rec := c.snapshot()
	spec, err := s.containerSpec(c)
	if err != nil {
		return checkpoint.Contents{}, err
	}
	var dests []string
	for _, m := range spec.Mounts {
		dests = append(dests, m.Destination)
	}
	img := c.config.GetImage()
	imageName := img.GetUserSpecifiedImage()
	if imageName == "" {
		imageName = img.GetImage()
	}
	return checkpoint.Contents{
		Config: metadata.ContainerConfig{
			ID: rec.ID, Name: rec.Name,
			RootfsImage: img.GetImage(), RootfsImageRef: rec.ImageRef, RootfsImageName: imageName,
			OCIRuntime:  runtimeName,
			CreatedTime: time.Unix(0, rec.CreatedAt), CheckpointedAt: at,
		},
		Spec:   spec,
		Status: s.containerStatus(c),
		Rootfs: checkpoint.RootfsDiff{
			Upper:  filepath.Join(s.containerDir(rec.ID), "rw", "upper"),
			Merged: filepath.Join(s.containerBundle(rec.ID), "rootfs"),
			Skip:   checkpoint.SkipMounts(dests),
		},
		LogPath: rec.LogPath,
	}, nil
}

// refuseRestore answers a CreateContainer whose image is a file: CRI-O
// and containerd restore a checkpoint archive given that way, crid does
// not (yet). No image reference is an absolute path, so the answer cannot
// shadow an image.
func refuseRestore(image string) error {
	if !filepath.IsAbs(image) {
		return nil
	}
	if fi, err := os.Stat(image); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("image %q is a file: restoring a container from a checkpoint archive is not supported by crid: %w", image, errdefs.ErrNotImplemented)
}

// removeStaleCheckpoints removes the work dirs of checkpoints a killed
// crid was assembling.
func (s *Service) removeStaleCheckpoints() error {
	if err := os.RemoveAll(s.checkpointDir()); err != nil {
		return fmt.Errorf("remove unfinished checkpoints: %w", err)
	}
	return nil
}
