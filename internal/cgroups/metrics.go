package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ReadMetrics reads every counter the CRI metrics (cAdvisor's names) need
// from the container cgroup at cgroupsPath (either form, as Read): more files
// than Read, which serves the cheap, frequent stats calls. The same path
// rules as Read: InvalidArgument for a root or escaping path, NotFound
// for a cgroup that is gone.
func ReadMetrics(cgroupsPath string) (*Metrics, error) {
	if Unified() {
		return readMetrics(cgroupsPath, nil)
	}
	v1, err := cachedV1Mounts()
	if err != nil {
		return nil, err
	}
	return readMetrics(cgroupsPath, v1)
}

// Metrics are the counters of one container cgroup, in bytes and
// nanoseconds; limits are 0 when unlimited.
type Metrics struct {
	CPUTotal, CPUUser, CPUSystem              uint64
	Periods, ThrottledPeriods, ThrottledNanos uint64
	CPUPeriod, CPUShares                      uint64
	CPUWeight                                 uint64 // cgroup v2 cpu.weight, which CPUShares is derived from; 0 on v1
	MemUsage, MemMaxUsage, MemWorkingSet      uint64
	MemCache, MemRSS, MemKernel, MemMapped    uint64
	MemSwap, MemFailcnt, OOMKills             uint64
	PgFault, PgMajFault                       uint64
	PgFaultHierarchy, PgMajFaultHierarchy     uint64
	MemLimit, MemSwapLimit, MemReservation    uint64
	PidsMax                                   uint64
	Pids                                      []int
	Blkio                                     []BlkioDevice
}

// BlkioDevice is the I/O of a cgroup on one block device.
type BlkioDevice struct {
	Major, Minor                         uint64
	ReadBytes, WriteBytes, Reads, Writes uint64
}

// v1Unlimited: cgroup v1 reports "no limit" as a page-rounded LONG_MAX.
const v1Unlimited = uint64(1) << 62

func limitOrZero(v uint64) uint64 {
	if v >= v1Unlimited {
		return 0
	}
	return v
}

// readMetrics reads a container cgroup from v1 controllers (mounts
// from cgroups.V1Mounts) or, with v1 nil, from the v2 tree.
func readMetrics(cgroupsPath string, v1 map[string]string) (*Metrics, error) {
	cgroupsPath, err := resolve(cgroupsPath)
	if err != nil {
		return nil, err
	}
	if v1 == nil {
		return readMetricsV2(filepath.Join(cgroupRoot, cgroupsPath))
	}
	dir := func(ctl string) string {
		if mp, ok := v1[ctl]; ok {
			return filepath.Join(mp, cgroupsPath)
		}
		return ""
	}
	mem, cpu, cpuacct, pids, blkio := dir("memory"), dir("cpu"), dir("cpuacct"), dir("pids"), dir("blkio")
	if cpuacct == "" || !isDir(cpuacct) {
		return nil, fmt.Errorf("cgroup %s: %w", cgroupsPath, errdefs.ErrNotFound)
	}
	r := &cgReader{}
	m := &Metrics{}
	m.CPUTotal = r.uint(cpuacct, "cpuacct.usage")
	if u, ok := r.optUint(cpuacct, "cpuacct.usage_user"); ok {
		m.CPUUser, m.CPUSystem = u, r.uint(cpuacct, "cpuacct.usage_sys")
	} else {
		// cpuacct.stat counts USER_HZ ticks, 100 per second on Linux.
		st := r.kv(cpuacct, "cpuacct.stat")
		m.CPUUser, m.CPUSystem = st["user"]*uint64(10*time.Millisecond), st["system"]*uint64(10*time.Millisecond)
	}
	cs := r.kv(cpu, "cpu.stat")
	m.Periods, m.ThrottledPeriods, m.ThrottledNanos = cs["nr_periods"], cs["nr_throttled"], cs["throttled_time"]
	m.CPUPeriod = r.uint(cpu, "cpu.cfs_period_us")
	m.CPUShares = r.uint(cpu, "cpu.shares")

	ms := r.kv(mem, "memory.stat")
	m.MemUsage = r.uint(mem, "memory.usage_in_bytes")
	m.MemMaxUsage = r.uint(mem, "memory.max_usage_in_bytes")
	m.MemWorkingSet = workingSet(m.MemUsage, ms["total_inactive_file"])
	m.MemCache, m.MemRSS, m.MemMapped, m.MemSwap = ms["total_cache"], ms["total_rss"], ms["total_mapped_file"], ms["total_swap"]
	m.MemKernel = r.uint(mem, "memory.kmem.usage_in_bytes")
	m.MemFailcnt = r.uint(mem, "memory.failcnt")
	m.PgFault, m.PgMajFault = ms["pgfault"], ms["pgmajfault"]
	m.PgFaultHierarchy, m.PgMajFaultHierarchy = ms["total_pgfault"], ms["total_pgmajfault"]
	m.OOMKills = r.kv(mem, "memory.oom_control")["oom_kill"]
	m.MemLimit = limitOrZero(r.uint(mem, "memory.limit_in_bytes"))
	m.MemSwapLimit = limitOrZero(r.uint(mem, "memory.memsw.limit_in_bytes"))
	m.MemReservation = limitOrZero(r.uint(mem, "memory.soft_limit_in_bytes"))
	m.PidsMax = r.uint(pids, "pids.max")
	procsDir := pids
	if procsDir == "" {
		procsDir = cpuacct
	}
	m.Pids = r.procs(procsDir)
	if blkio != "" {
		m.Blkio = mergeBlkio(
			parseBlkioV1(r.raw(blkio, "blkio.throttle.io_service_bytes_recursive"), true),
			parseBlkioV1(r.raw(blkio, "blkio.throttle.io_serviced_recursive"), false),
		)
	}
	return m, r.err
}

func readMetricsV2(dir string) (*Metrics, error) {
	if !isDir(dir) {
		return nil, fmt.Errorf("cgroup %s: %w", dir, errdefs.ErrNotFound)
	}
	r := &cgReader{}
	m := &Metrics{}
	cs := r.kv(dir, "cpu.stat")
	us := uint64(time.Microsecond)
	m.CPUTotal, m.CPUUser, m.CPUSystem = cs["usage_usec"]*us, cs["user_usec"]*us, cs["system_usec"]*us
	m.Periods, m.ThrottledPeriods, m.ThrottledNanos = cs["nr_periods"], cs["nr_throttled"], cs["throttled_usec"]*us
	if f := strings.Fields(r.raw(dir, "cpu.max")); len(f) == 2 {
		m.CPUPeriod, _ = strconv.ParseUint(f[1], 10, 64)
	}
	if w := r.uint(dir, "cpu.weight"); w > 0 {
		// The inverse of the linear shares->weight conversion (runc
		// before 1.4). Newer runc's quadratic one cannot be inverted
		// exactly; the caller knows the shares asked for (SharesGiveWeight).
		m.CPUWeight = w
		m.CPUShares = 2 + (w-1)*262142/9999
	}
	ms := r.kv(dir, "memory.stat")
	m.MemUsage = r.uint(dir, "memory.current")
	m.MemMaxUsage = r.uint(dir, "memory.peak")
	m.MemWorkingSet = workingSet(m.MemUsage, ms["inactive_file"])
	m.MemCache, m.MemRSS, m.MemMapped = ms["file"], ms["anon"], ms["file_mapped"]
	m.MemKernel = ms["kernel"]
	if m.MemKernel == 0 {
		m.MemKernel = ms["kernel_stack"] + ms["slab"] + ms["sock"] + ms["vmalloc"] + ms["pagetables"]
	}
	m.MemSwap = r.uint(dir, "memory.swap.current")
	ev := r.kv(dir, "memory.events")
	m.MemFailcnt, m.OOMKills = ev["max"], ev["oom_kill"]
	// v2 counts faults for the subtree only.
	m.PgFault, m.PgMajFault = ms["pgfault"], ms["pgmajfault"]
	m.PgFaultHierarchy, m.PgMajFaultHierarchy = ms["pgfault"], ms["pgmajfault"]
	m.MemLimit = r.uint(dir, "memory.max")
	if sw := r.uint(dir, "memory.swap.max"); sw > 0 && m.MemLimit > 0 {
		m.MemSwapLimit = m.MemLimit + sw
	}
	m.MemReservation = r.uint(dir, "memory.low")
	m.PidsMax = r.uint(dir, "pids.max")
	m.Pids = r.procs(dir)
	m.Blkio = parseIOStatV2(r.raw(dir, "io.stat"))
	return m, r.err
}

// cgReader reads cgroup files best effort: a controller that is not
// mounted (dir "") or a file this kernel lacks reads as zero, and "max" as
// 0 (unlimited). Other read errors are kept in err.
type cgReader struct{ err error }

func (r *cgReader) raw(dir, name string) string {
	if dir == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.EOPNOTSUPP) && r.err == nil {
			r.err = err
		}
		return ""
	}
	return string(b)
}

func (r *cgReader) optUint(dir, name string) (uint64, bool) {
	s := strings.TrimSpace(r.raw(dir, name))
	if s == "" {
		return 0, false
	}
	if s == "max" {
		return 0, true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

func (r *cgReader) uint(dir, name string) uint64 {
	v, _ := r.optUint(dir, name)
	return v
}

func (r *cgReader) kv(dir, name string) map[string]uint64 {
	return parseKV(r.raw(dir, name))
}

func (r *cgReader) procs(dir string) []int {
	var out []int
	for _, f := range strings.Fields(r.raw(dir, "cgroup.procs")) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseKV parses "key value" lines; non-numeric values are skipped.
func parseKV(s string) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

// parseBlkioV1 parses blkio.throttle.io_service{d,_bytes}_recursive:
// "MAJ:MIN Read|Write|Sync|Async|Discard|Total N" lines plus a "Total N".
// isBytes selects which BlkioDevice fields the values fill.
func parseBlkioV1(s string, isBytes bool) []BlkioDevice {
	var out []BlkioDevice
	idx := map[[2]uint64]int{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		maj, mnr, ok := parseMajMin(f[0])
		v, err := strconv.ParseUint(f[2], 10, 64)
		if !ok || err != nil {
			continue
		}
		k := [2]uint64{maj, mnr}
		i, seen := idx[k]
		if !seen {
			i = len(out)
			idx[k] = i
			out = append(out, BlkioDevice{Major: maj, Minor: mnr})
		}
		switch {
		case f[1] == "Read" && isBytes:
			out[i].ReadBytes = v
		case f[1] == "Write" && isBytes:
			out[i].WriteBytes = v
		case f[1] == "Read":
			out[i].Reads = v
		case f[1] == "Write":
			out[i].Writes = v
		}
	}
	return out
}

// mergeBlkio joins the byte and operation counts of the same devices.
func mergeBlkio(byteCounts, ops []BlkioDevice) []BlkioDevice {
	out := append([]BlkioDevice(nil), byteCounts...)
	for _, o := range ops {
		found := false
		for i := range out {
			if out[i].Major == o.Major && out[i].Minor == o.Minor {
				out[i].Reads, out[i].Writes = o.Reads, o.Writes
				found = true
			}
		}
		if !found {
			out = append(out, o)
		}
	}
	return out
}

// parseIOStatV2 parses io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...".
func parseIOStatV2(s string) []BlkioDevice {
	var out []BlkioDevice
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		maj, mnr, ok := parseMajMin(f[0])
		if !ok {
			continue
		}
		d := BlkioDevice{Major: maj, Minor: mnr}
		for _, kv := range f[1:] {
			k, vs, _ := strings.Cut(kv, "=")
			v, err := strconv.ParseUint(vs, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				d.ReadBytes = v
			case "wbytes":
				d.WriteBytes = v
			case "rios":
				d.Reads = v
			case "wios":
				d.Writes = v
			}
		}
		out = append(out, d)
	}
	return out
}

func parseMajMin(s string) (uint64, uint64, bool) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, false
	}
	maj, err1 := strconv.ParseUint(a, 10, 64)
	mnr, err2 := strconv.ParseUint(b, 10, 64)
	return maj, mnr, err1 == nil && err2 == nil
}

// SharesGiveWeight reports whether a runtime converting CPU shares to a
// cgroup v2 cpu.weight turns shares into weight: with the linear formula
// of older runc (Debian 12's 1.1.5) or the quadratic one of runc 1.4
// and later (opencontainers/cgroups ConvertCPUSharesToCgroupV2Value).
func SharesGiveWeight(shares, weight uint64) bool {
	if shares == 0 || weight == 0 {
		return false
	}
	linear := 1 + (shares-2)*9999/262142
	if shares < 2 {
		linear = 1
	}
	var quadratic uint64
	switch {
	case shares <= 2:
		quadratic = 1
	case shares >= 262144:
		quadratic = 10000
	default:
		l := math.Log2(float64(shares))
		quadratic = uint64(math.Ceil(math.Pow(10, (l*l+125*l)/612.0-7.0/34.0)))
	}
	return weight == linear || weight == quadratic
}
