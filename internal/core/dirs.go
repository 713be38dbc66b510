package core

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Directory modes. A container's files (its rootfs mount, writable layer,
// image layers with their setuid binaries and device nodes) must not be
// reachable by other users of the node: a root container, or an image,
// can plant a setuid shell or a device node there, and any local user
// who can reach the path runs or opens it (the CVE-2021-41091 class).
// Container ids are no secret (mountinfo, monitor command lines), so the
// only safe barrier is a directory nobody but root may search.
//
//   - collection dirs (<root>, <state>, .../containers, .../sandboxes)
//     are searchable (0711) so that a pod with its own user namespace can
//     reach its own per-object dir;
//   - a per-object dir is 0700, or 0710 with the pod's host root gid as
//     group for a pod with a user namespace: runc, inside that namespace,
//     resolves the rootfs and bind-mount paths with the pod's ids, and
//     no other user holds that gid;
//   - dirs no container ever resolves (content, snapshots, trash, the
//     runtime's --root) are 0700.
const (
	modeCollection = 0o711
	modePrivate    = 0o700
	modePodGroup   = 0o710
)

// ensureDir creates dir (and missing parents) and sets its mode whether
// it was just made or left by an older crid with a laxer mode.
func ensureDir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("set mode of %s: %w", dir, err)
	}
	return nil
}

// objectDir creates a per-pod or per-container dir readable by root only,
// or, for a pod with a user namespace, searchable by the pod's root too.
func objectDir(dir string, userns *runtime.UserNamespace) error {
	if err := os.MkdirAll(filepath.Dir(dir), modeCollection); err != nil {
		return err
	}
	if err := os.Mkdir(dir, modePrivate); err != nil && !os.IsExist(err) {
		return err
	}
	return securePodDir(dir, userns)
}

// securePodDir sets the mode (and group) objectDir gives a dir that
// already exists.
func securePodDir(dir string, userns *runtime.UserNamespace) error {
	if gids := userns.GetGids(); len(gids) > 0 {
		if err := os.Chown(dir, 0, int(gids[0].GetHostId())); err != nil {
			return fmt.Errorf("give %s to the pod's user namespace: %w", dir, err)
		}
		if err := os.Chmod(dir, modePodGroup); err != nil {
			return fmt.Errorf("set mode of %s: %w", dir, err)
		}
		return nil
	}
	if err := os.Chmod(dir, modePrivate); err != nil {
		return fmt.Errorf("set mode of %s: %w", dir, err)
	}
	return nil
}

// secureOldDirs gives the dirs of a pod or container recovered from an
// older crid (which made them 0711) the modes objectDir gives new ones.
// A dir that is gone (after a reboot, the state dirs) is skipped.
func secureOldDirs(userns *runtime.UserNamespace, dirs ...string) error {
	for _, d := range dirs {
		if err := securePodDir(d, userns); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
