package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ContainerLogFile is the container's CRI log in the archive, as
// containerd names it (CRI-O leaves the log out).
const ContainerLogFile = "container.log"

// Contents are the parts of a checkpoint archive beside what runc and
// criu leave in the work dir (checkpoint/, dump.log, stats-dump).
type Contents struct {
	// Config is config.dump: the container's identity and image.
	Config metadata.ContainerConfig
	// Spec is spec.dump: the OCI spec the container runs with. Its
	// io.kubernetes.cri.* annotations name the container, pod and
	// namespace for checkpointctl.
	Spec *specs.Spec
	// Status is status.dump: the CRI ContainerStatus, which containerd's
	// restore reads.
	Status any
	// Rootfs is the writable layer, written as rootfs-diff.tar and
	// deleted.files.
	Rootfs RootfsDiff
	// LogPath is the container's log file, copied as container.log; ""
	// or a missing file: none.
	LogPath string
}

// Assemble writes c into dir. Everything it writes is 0600: the files
// hold the container's environment and data.
func Assemble(ctx context.Context, dir string, c Contents) error {
	if c.Spec == nil {
		return errors.New("assemble checkpoint: no spec")
	}
	for name, v := range map[string]any{
		metadata.ConfigDumpFile: c.Config,
		metadata.SpecDumpFile:   c.Spec,
		metadata.StatusDumpFile: c.Status,
	} {
		if _, err := metadata.WriteJSONFile(v, dir, name); err != nil {
			return fmt.Errorf("assemble checkpoint: %s: %w", name, err)
		}
	}
	deleted, err := writeRootfsDiff(ctx, filepath.Join(dir, metadata.RootFsDiffTar), c.Rootfs)
	if err != nil {
		return fmt.Errorf("assemble checkpoint: %w", err)
	}
	if _, err := metadata.WriteJSONFile(deleted, dir, metadata.DeletedFilesFile); err != nil {
		return fmt.Errorf("assemble checkpoint: %s: %w", metadata.DeletedFilesFile, err)
	}
	if c.LogPath != "" {
		if err := copyLog(c.LogPath, filepath.Join(dir, ContainerLogFile)); err != nil {
			return fmt.Errorf("assemble checkpoint: %w", err)
		}
	}
	return nil
}

func writeRootfsDiff(ctx context.Context, path string, d RootfsDiff) ([]string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deleted, err := d.Write(ctx, f)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return deleted, nil
}

// copyLog copies the container's log as it is now; the monitor keeps
// appending, so the copy ends wherever the log was when it was read.
func copyLog(src, dst string) error {
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container log: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("container log: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return fmt.Errorf("container log: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("container log: %w", err)
	}
	return nil
}
