package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// errNotDevice marks a file that is not a device node.
var errNotDevice = errors.New("not a device node")

// deviceAt describes the device node at host path p as it should appear
// at container path dst.
func deviceAt(p, dst string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return specs.LinuxDevice{}, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	case unix.S_IFIFO:
		typ = "p"
	default:
		return specs.LinuxDevice{}, fmt.Errorf("%s: %w", p, errNotDevice)
	}
	mode := fs.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path:     dst,
		Type:     typ,
		Major:    int64(unix.Major(uint64(st.Rdev))),
		Minor:    int64(unix.Minor(uint64(st.Rdev))),
		FileMode: &mode,
		UID:      &uid,
		GID:      &gid,
	}, nil
}

// requestedDevices adds config.devices: each host path (a device, or a
// directory of devices) is created in the container and allowed in the
// device cgroup with the requested permissions.
func requestedDevices(ds []*runtime.Device) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	var devs []specs.LinuxDevice
	var rules []specs.LinuxDeviceCgroup
	for _, d := range ds {
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return nil, nil, fmt.Errorf("device %s: invalid permissions %q (want letters of \"rwm\"): %w", d.GetHostPath(), perms, errdefs.ErrInvalidArgument)
		}
		dst := d.GetContainerPath()
		if dst == "" {
			dst = d.GetHostPath()
		}
		if !filepath.IsAbs(dst) || strings.IndexByte(dst, 0) >= 0 {
			return nil, nil, fmt.Errorf("device %s: container_path %q must be an absolute path: %w", d.GetHostPath(), dst, errdefs.ErrInvalidArgument)
		}
		src, err := filepath.EvalSymlinks(d.GetHostPath())
		if err != nil {
			return nil, nil, fmt.Errorf("device %s: %w: %w", d.GetHostPath(), err, errdefs.ErrInvalidArgument)
		}
		found, err := devicesUnder(src, dst)
		if err != nil {
			return nil, nil, err
		}
		for _, dev := range found {
			devs = append(devs, dev)
			rules = append(rules, specs.LinuxDeviceCgroup{
				Allow: true, Type: dev.Type, Major: &dev.Major, Minor: &dev.Minor, Access: perms,
			})
		}
	}
	return devs, rules, nil
}

// devicesUnder returns the device at src, or the devices in directory src
// (recursively) mapped under dst.
func devicesUnder(src, dst string) ([]specs.LinuxDevice, error) {
	st, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w: %w", src, err, errdefs.ErrInvalidArgument)
	}
	if !st.IsDir() {
		dev, err := deviceAt(src, dst)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w: %w", src, err, errdefs.ErrInvalidArgument)
		}
		return []specs.LinuxDevice{dev}, nil
	}
	var out []specs.LinuxDevice
	err = filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dev, err := deviceAt(p, filepath.Join(dst, rel))
		if errors.Is(err, errNotDevice) {
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, dev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("device directory %s: %w", src, err)
	}
	return out, nil
}

// hostDevices lists /dev for privileged containers, skipping the
// filesystems every container mounts itself and the host console.
func hostDevices() ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir("/dev", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil // devices come and go; skip what vanished
			}
			return err
		}
		if e.IsDir() {
			switch e.Name() {
			case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
				return filepath.SkipDir
			}
			return nil
		}
		if p == "/dev/console" || e.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
			return nil
		}
		dev, err := deviceAt(p, p)
		if err != nil {
			if errors.Is(err, errNotDevice) || errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, dev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list host devices: %w", err)
	}
	return out, nil
}
