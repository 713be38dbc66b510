package checkpoint

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// CheckLocation validates an archive location from a request: an
// absolute path in an existing directory, not itself a directory.
func CheckLocation(location string) error {
	if location == "" {
		return fmt.Errorf("checkpoint location is required: %w", errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(location) {
		return fmt.Errorf("checkpoint location %q must be an absolute path: %w", location, errdefs.ErrInvalidArgument)
	}
	if fi, err := os.Stat(filepath.Dir(location)); err != nil || !fi.IsDir() {
		return fmt.Errorf("checkpoint location %q: directory %s does not exist: %w", location, filepath.Dir(location), errdefs.ErrInvalidArgument)
	}
	if fi, err := os.Lstat(location); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("checkpoint location %q exists and is not a regular file: %w", location, errdefs.ErrInvalidArgument)
	}
	return nil
}

// WriteArchive writes everything under dir as an uncompressed tar at
// location (names relative to dir: "checkpoint/pages-1.img",
// "spec.dump"), the shape kubelet stores and checkpointctl reads. It
// writes a temporary file beside location, mode 0600 (the archive holds
// the container's memory), syncs it and renames it over location: a
// reader never sees half an archive, an archive already there is
// replaced whole, and on any failure the temporary file is removed and
// location left as it was.
func WriteArchive(ctx context.Context, dir, location string) (retErr error) {
	tmp, err := os.CreateTemp(filepath.Dir(location), "."+filepath.Base(location)+".tmp-")
	if err != nil {
		return fmt.Errorf("write checkpoint archive: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes it 0600 already; say so, whatever the umask.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("write checkpoint archive: %w", err)
	}
	if err := writeTar(ctx, tmp, dir); err != nil {
		return fmt.Errorf("write checkpoint archive %s: %w", location, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write checkpoint archive %s: %w", location, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint archive %s: %w", location, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write checkpoint archive %s: %w", location, err)
	}
	if err := os.Rename(tmp.Name(), location); err != nil {
		return fmt.Errorf("write checkpoint archive: %w", err)
	}
	if err := syncDir(filepath.Dir(location)); err != nil {
		return fmt.Errorf("write checkpoint archive %s: sync its directory: %w", location, err)
	}
	return nil
}

// writeTar writes the directories and regular files under dir, which is
// crid's own (criu's output and the metadata written beside it).
func writeTar(ctx context.Context, w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", rel)
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		// Numeric owners only: the names are the host's, not the archive's.
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		return copyFile(tw, p)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func copyFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
