// Package cgroups reads container resource usage from cgroup v1 or v2.
//
// It reads the cgroup files directly instead of going through
// github.com/containerd/cgroups: crid only needs a handful of counters, and
// the library's v1 loader fails when any expected subsystem is absent (this
// host has no hugetlb hierarchy) and drags ebpf/dbus code into the binary.
package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Stats is a snapshot of one cgroup's usage.
type Stats struct {
	CPUUsageNanos    uint64
	MemoryUsage      uint64
	MemoryWorkingSet uint64 // usage minus inactive file
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	Pids             uint64
	OOMKills         uint64 // memory.events oom_kill (v2) or memory.oom_control oom_kill (v1)

	// Pressure stall information (cgroup v2 only; nil where the kernel
	// has none).
	CPUPressure, MemoryPressure, IOPressure *PSI
}

// cgroupRoot is where both v1 hierarchies and the v2 unified tree live.
const cgroupRoot = "/sys/fs/cgroup"

// Read returns the usage of the cgroup at cgroupsPath (as given in the OCI
// spec: a cgroupfs path or the systemd driver's slice:prefix:name).
// errdefs.ErrNotFound if the cgroup is gone.
func Read(cgroupsPath string) (*Stats, error) {
	cgroupsPath, err := resolve(cgroupsPath)
	if err != nil {
		return nil, err
	}
	if Unified() {
		return readV2(filepath.Join(cgroupRoot, cgroupsPath))
	}
	mounts, err := cachedV1Mounts()
	if err != nil {
		return nil, err
	}
	return readV1(mounts, cgroupsPath)
}

// Unified reports whether the host runs pure cgroup v2.
func Unified() bool {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}

// Remove deletes the cgroup at cgroupsPath (and any sub-cgroups a
// container created under it) from every hierarchy: each v1 controller,
// the v1 named hierarchies and, on hybrid hosts, the v2 tree runc also
// joins. A cgroup that does not exist is not an error; one that still has
// processes is (EBUSY).
func Remove(cgroupsPath string) error {
	if IsSystemdPath(cgroupsPath) {
		// A transient scope is systemd's: it removes the scope once its
		// last process is gone (runc delete stops it), and a cgroup
		// removed behind its back leaves a unit that points nowhere.
		_, err := resolve(cgroupsPath)
		return err
	}
	if err := checkPath(cgroupsPath); err != nil {
		return err
	}
	var roots []string
	if Unified() {
		roots = []string{cgroupRoot}
	} else {
		infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
		if err != nil {
			return fmt.Errorf("read cgroup mounts: %w", err)
		}
		seen := map[string]bool{}
		for _, m := range infos {
			if !seen[m.Mountpoint] {
				seen[m.Mountpoint] = true
				roots = append(roots, m.Mountpoint)
			}
		}
	}
	var errs []error
	for _, root := range roots {
		if err := removeTree(filepath.Join(root, cgroupsPath)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkPath refuses paths that would address a hierarchy's root or leave it:
// Remove on "/" would try to delete every container's cgroup.
func checkPath(p string) error {
	if filepath.Clean("/"+p) == "/" || slices.Contains(strings.Split(p, "/"), "..") {
		return fmt.Errorf("cgroups path %q: %w", p, errdefs.ErrInvalidArgument)
	}
	return nil
}

// IsSystemdPath reports whether cgroupsPath is in the systemd driver's
// "slice:prefix:name" form rather than a cgroupfs path.
func IsSystemdPath(cgroupsPath string) bool {
	return strings.Contains(cgroupsPath, ":")
}

// resolve turns an OCI cgroupsPath into the cgroup's path under a
// hierarchy's root, checked by checkPath: a cgroupfs path as it is, the
// systemd driver's "slice:prefix:name" where systemd puts that unit (as
// runc's systemd driver names it): the slice's ancestors, then the scope
// "prefix-name.scope", e.g. "kubepods-burstable-pod1.slice:crid:abc" is
// /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crid-abc.scope.
func resolve(cgroupsPath string) (string, error) {
	if !IsSystemdPath(cgroupsPath) {
		return cgroupsPath, checkPath(cgroupsPath)
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 || parts[2] == "" {
		return "", fmt.Errorf("cgroups path %q: systemd form is slice:prefix:name: %w", cgroupsPath, errdefs.ErrInvalidArgument)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice" // runc's default
	}
	dir, err := expandSlice(slice)
	if err != nil {
		return "", fmt.Errorf("cgroups path %q: %w", cgroupsPath, err)
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		if prefix != "" {
			unit = prefix + "-" + name
		}
		unit += ".scope"
	}
	if strings.Contains(unit, "/") {
		return "", fmt.Errorf("cgroups path %q: %w", cgroupsPath, errdefs.ErrInvalidArgument)
	}
	p := filepath.Join(dir, unit)
	return p, checkPath(p)
}

// expandSlice is systemd's layout of a slice: "a-b-c.slice" lives at
// /a.slice/a-b.slice/a-b-c.slice, "-.slice" is the root. Written here, not
// taken from github.com/opencontainers/cgroups/systemd (ExpandSlice): that
// package links go-systemd and godbus into the daemon for these lines.
func expandSlice(slice string) (string, error) {
	const suffix = ".slice"
	name, ok := strings.CutSuffix(slice, suffix)
	if !ok || name == "" || strings.Contains(slice, "/") {
		return "", fmt.Errorf("invalid slice name %q: %w", slice, errdefs.ErrInvalidArgument)
	}
	if name == "-" {
		return "/", nil
	}
	var path, prefix string
	for _, c := range strings.Split(name, "-") {
		if c == "" {
			return "", fmt.Errorf("invalid slice name %q: %w", slice, errdefs.ErrInvalidArgument)
		}
		path += "/" + prefix + c + suffix
		prefix += c + "-"
	}
	return path, nil
}

// removeTree removes dir and its sub-cgroups deepest first. cgroupfs
// directories cannot be removed with RemoveAll: their control files refuse
// unlink, only rmdir of the directory itself works.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}

// v1Mounts maps each v1 controller (and named hierarchy, e.g.
// "name=systemd") to its mount point, from /proc/self/mountinfo, so
// co-mounted controllers like "cpu,cpuacct" are found wherever they are.
// cachedV1Mounts is v1Mounts read once. The controller mounts are fixed
// for the life of the host's boot, while /proc/self/mountinfo grows with
// every container rootfs: parsing it on each Read made ListContainerStats
// quadratic in the number of containers.
var v1MountCache struct {
	sync.Mutex
	mounts  map[string]string
	unified string // v2 mount point, see unifiedMount
}

// V1Mounts maps each cgroup v1 controller (and named hierarchy) to its
// mount point; co-mounted controllers map to the same directory. The
// result is shared: callers must not modify it.
func V1Mounts() (map[string]string, error) { return cachedV1Mounts() }

func cachedV1Mounts() (map[string]string, error) {
	v1MountCache.Lock()
	defer v1MountCache.Unlock()
	if v1MountCache.mounts != nil {
		return v1MountCache.mounts, nil
	}
	m, err := v1Mounts()
	if err != nil {
		return nil, err // not cached: a later call retries
	}
	v1MountCache.mounts = m
	return m, nil
}

func v1Mounts() (map[string]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return nil, fmt.Errorf("read cgroup mounts: %w", err)
	}
	out := map[string]string{}
	for _, m := range infos {
		for _, opt := range strings.Split(m.VFSOptions, ",") {
			if opt == "rw" || opt == "ro" || opt == "" {
				continue
			}
			if _, ok := out[opt]; !ok {
				out[opt] = m.Mountpoint
			}
		}
	}
	return out, nil
}

func readV1(mounts map[string]string, p string) (*Stats, error) {
	dir := func(ctl string) string {
		mp, ok := mounts[ctl]
		if !ok {
			return ""
		}
		return filepath.Join(mp, p)
	}
	memDir, cpuDir, pidsDir := dir("memory"), dir("cpuacct"), dir("pids")
	found := false
	for _, d := range []string{memDir, cpuDir, pidsDir} {
		if d != "" && isDir(d) {
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("cgroup %s: %w", p, errdefs.ErrNotFound)
	}
	var s Stats
	var err error
	if s.CPUUsageNanos, err = readUint(cpuDir, "cpuacct.usage"); err != nil {
		return nil, err
	}
	if s.MemoryUsage, err = readUint(memDir, "memory.usage_in_bytes"); err != nil {
		return nil, err
	}
	// The total_* keys include sub-cgroups, which matters for pod cgroups.
	ms, err := readKV(memDir, "memory.stat")
	if err != nil {
		return nil, err
	}
	s.MemoryRSS = ms["total_rss"]
	s.PageFaults = ms["total_pgfault"]
	s.MajorPageFaults = ms["total_pgmajfault"]
	s.MemoryWorkingSet = workingSet(s.MemoryUsage, ms["total_inactive_file"])
	oom, err := readKV(memDir, "memory.oom_control")
	if err != nil {
		return nil, err
	}
	s.OOMKills = oom["oom_kill"]
	if s.Pids, err = readUint(pidsDir, "pids.current"); err != nil {
		return nil, err
	}
	return &s, nil
}

func readV2(dir string) (*Stats, error) {
	if !isDir(dir) {
		return nil, fmt.Errorf("cgroup %s: %w", dir, errdefs.ErrNotFound)
	}
	var s Stats
	cpu, err := readKV(dir, "cpu.stat")
	if err != nil {
		return nil, err
	}
	s.CPUUsageNanos = cpu["usage_usec"] * 1000
	if s.MemoryUsage, err = readUint(dir, "memory.current"); err != nil {
		return nil, err
	}
	ms, err := readKV(dir, "memory.stat")
	if err != nil {
		return nil, err
	}
	s.MemoryRSS = ms["anon"]
	s.PageFaults = ms["pgfault"]
	s.MajorPageFaults = ms["pgmajfault"]
	s.MemoryWorkingSet = workingSet(s.MemoryUsage, ms["inactive_file"])
	ev, err := readKV(dir, "memory.events")
	if err != nil {
		return nil, err
	}
	s.OOMKills = ev["oom_kill"]
	if s.Pids, err = readUint(dir, "pids.current"); err != nil {
		return nil, err
	}
	for res, dst := range map[string]**PSI{"cpu": &s.CPUPressure, "memory": &s.MemoryPressure, "io": &s.IOPressure} {
		if *dst, err = readPSI(dir, res); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// readUint reads a single-number file. A controller that is not mounted
// (dir "") or a file the kernel does not provide reads as 0: stats are best
// effort per counter, only a missing cgroup is an error.
func readUint(dir, name string) (uint64, error) {
	if dir == "" {
		return 0, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("read %s: %w", filepath.Join(dir, name), err)
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", filepath.Join(dir, name), err)
	}
	return v, nil
}

// readKV reads a flat-keyed file ("key value" per line), like memory.stat.
func readKV(dir, name string) (map[string]uint64, error) {
	out := map[string]uint64{}
	if dir == "" {
		return out, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return out, nil
		}
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, name), err)
	}
	return parseKV(string(b)), nil
}

// HugetlbAvailable reports whether the hugetlb controller can be used, so
// spec generation can leave hugepage limits out where runc would reject
// them (kubelet sends a zero limit for every page size on every container).
func HugetlbAvailable() bool {
	if Unified() {
		return v2ControllerEnabled("hugetlb")
	}
	m, err := cachedV1Mounts()
	if err != nil {
		return false
	}
	_, ok := m["hugetlb"]
	return ok
}

// SwapAvailable reports whether memory+swap limits can be set (swap
// accounting compiled in and enabled).
func SwapAvailable() bool {
	if Unified() {
		own, err := ownV2Path()
		if err != nil {
			return false
		}
		if own == "/" {
			// The root cgroup has no memory.swap.max; the controller
			// being enabled is the best available signal.
			return v2ControllerEnabled("memory")
		}
		_, err = os.Stat(filepath.Join(cgroupRoot, own, "memory.swap.max"))
		return err == nil
	}
	m, err := cachedV1Mounts()
	if err != nil {
		return false
	}
	mp, ok := m["memory"]
	if !ok {
		return false
	}
	_, err = os.Stat(filepath.Join(mp, "memory.memsw.limit_in_bytes"))
	return err == nil
}

func v2ControllerEnabled(name string) bool {
	b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
	if err != nil {
		return false
	}
	for _, c := range strings.Fields(string(b)) {
		if c == name {
			return true
		}
	}
	return false
}

func ownV2Path() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 entry in /proc/self/cgroup")
}

// ProcessDirs returns the host directories of every cgroup process pid is
// in: one per v1 hierarchy and, on hybrid and v2 hosts, its v2 cgroup. It
// fails unless one of them is cgroupsPath (either form), which ties the
// pid to the container that owns that cgroup.
func ProcessDirs(pid int, cgroupsPath string) ([]string, error) {
	cgroupsPath, err := resolve(cgroupsPath)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, fmt.Errorf("cgroups of process %d: %w", pid, err)
	}
	return processDirs(string(b), cgroupsPath, V1Mounts, unifiedMount)
}

func processDirs(procCgroup, cgroupsPath string, v1 func() (map[string]string, error), v2 func() (string, error)) ([]string, error) {
	want := filepath.Clean("/" + cgroupsPath)
	var dirs []string
	found := false
	for _, line := range strings.Split(strings.TrimSpace(procCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var mount string
		if parts[0] == "0" && parts[1] == "" {
			mp, err := v2()
			if err != nil {
				continue // no v2 tree mounted here
			}
			mount = mp
		} else {
			mounts, err := v1()
			if err != nil {
				return nil, err
			}
			mp, ok := mounts[strings.Split(parts[1], ",")[0]]
			if !ok {
				continue
			}
			mount = mp
		}
		if filepath.Clean(parts[2]) == want {
			found = true
		}
		dirs = append(dirs, filepath.Join(mount, parts[2]))
	}
	if !found {
		return nil, fmt.Errorf("process is not in cgroup %s: %w", cgroupsPath, errdefs.ErrNotFound)
	}
	return dirs, nil
}

// unifiedMount is where the v2 tree is mounted: the cgroup root on a pure
// v2 host, usually /sys/fs/cgroup/unified on a hybrid one.
func unifiedMount() (string, error) {
	if Unified() {
		return cgroupRoot, nil
	}
	v1MountCache.Lock()
	defer v1MountCache.Unlock()
	if v1MountCache.unified != "" {
		return v1MountCache.unified, nil
	}
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		return "", fmt.Errorf("read cgroup2 mounts: %w", err)
	}
	if len(infos) == 0 {
		return "", fmt.Errorf("no cgroup2 mount: %w", errdefs.ErrNotFound)
	}
	v1MountCache.unified = infos[0].Mountpoint
	return v1MountCache.unified, nil
}
