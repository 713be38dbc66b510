package core

// CRI metrics (KEP-2371): kubelet asks the runtime for cAdvisor-named
// metrics instead of running cAdvisor itself. crid describes a fixed set
// (ListMetricDescriptors) and reports, per ready pod, the pod's network
// counters and each live container's cgroup, process and filesystem
// counters (ListPodSandboxMetrics / StreamPodSandboxMetrics).
//
// Every metric carries the descriptor's label values in the descriptor's
// order: the base labels (pod, namespace, container, id, image) and then
// the metric's own (interface, device, ...). Values are integers because
// the CRI carries UInt64Value; seconds are whole seconds, as in containerd.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/crid-dev/crid/internal/cgroups"
	"github.com/crid-dev/crid/internal/image"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// metricBaseLabels name the pod and container a metric belongs to; kubelet
// turns them into the labels cAdvisor used to put on the same metrics.
var metricBaseLabels = []string{"pod", "namespace", "container", "id", "image"}

// metricDef is one metric crid reports.
type metricDef struct {
	name, help string
	typ        runtime.MetricType
	extra      []string // label keys after the base labels
}

const (
	counter = runtime.MetricType_COUNTER
	gauge   = runtime.MetricType_GAUGE
)

// metricDefs is the fixed set crid describes and reports. Each one is
// emitted for every running container (network ones for every pod with its
// own network namespace), so the descriptor list never names a metric that
// is never reported; disk I/O counters are emitted per block device that
// has I/O accounted, so they may be absent for an idle container.
var metricDefs = []metricDef{
	// CPU
	{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", counter, nil},
	{"container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", counter, nil},
	{"container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", counter, nil},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled, in seconds.", counter, nil},
	// Memory
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, nil},
	{"container_memory_rss", "Size of RSS (anonymous memory) in bytes.", gauge, nil},
	{"container_memory_kernel_usage", "Size of kernel memory allocated to the container in bytes.", gauge, nil},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, nil},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, nil},
	{"container_memory_failcnt", "Number of times memory usage hit the limit.", counter, nil},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, nil},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes (usage minus inactive file cache).", gauge, nil},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures (page faults).", counter, []string{"failure_type", "scope"}},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, nil},
	// Network (pod level: containers share the pod's network namespace)
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, []string{"interface"}},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, []string{"interface"}},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, []string{"interface"}},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, []string{"interface"}},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, []string{"interface"}},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, []string{"interface"}},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, []string{"interface"}},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, []string{"interface"}},
	// Filesystem: the writable layer on the filesystem holding crid's root.
	{"container_fs_usage_bytes", "Number of bytes consumed by the container's writable layer.", gauge, []string{"device"}},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, []string{"device"}},
	{"container_fs_inodes_total", "Number of inodes on the filesystem of the writable layer.", gauge, []string{"device"}},
	{"container_fs_inodes_free", "Number of free inodes on the filesystem of the writable layer.", gauge, []string{"device"}},
	// Disk I/O from the blkio (v1) or io (v2) controller.
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, []string{"device"}},
	{"container_fs_reads_total", "Cumulative count of reads completed.", counter, []string{"device"}},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, []string{"device"}},
	{"container_fs_writes_total", "Cumulative count of writes completed.", counter, []string{"device"}},
	{"container_blkio_device_usage_total", "Block I/O device usage in bytes.", counter, []string{"device", "major", "minor", "operation"}},
	// Processes
	{"container_processes", "Number of processes running inside the container.", gauge, nil},
	{"container_threads", "Number of threads running inside the container.", gauge, nil},
	{"container_threads_max", "Maximum number of threads allowed inside the container, 0 for unlimited.", gauge, nil},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, nil},
	{"container_sockets", "Number of open sockets for the container.", gauge, nil},
	// Limits as set on the container's cgroup
	{"container_spec_cpu_period", "CPU period of the container, in microseconds.", gauge, nil},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, nil},
	{"container_spec_memory_limit_bytes", "Memory limit for the container, 0 for unlimited.", gauge, nil},
	{"container_spec_memory_swap_limit_bytes", "Memory and swap limit for the container, 0 for unlimited.", gauge, nil},
	{"container_spec_memory_reservation_limit_bytes", "Memory reservation (soft limit) for the container, 0 for none.", gauge, nil},
	// Time
	{"container_last_seen", "Last time the container was seen by the runtime, in seconds since the epoch.", gauge, nil},
	{"container_start_time_seconds", "Start time of the container, in seconds since the epoch.", gauge, nil},
}

// metricDescriptors builds the CRI descriptors of metricDefs.
func metricDescriptors() []*runtime.MetricDescriptor {
	out := make([]*runtime.MetricDescriptor, 0, len(metricDefs))
	for _, d := range metricDefs {
		keys := append(append([]string(nil), metricBaseLabels...), d.extra...)
		out = append(out, &runtime.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: keys})
	}
	return out
}

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics reports.
func (s *Service) ListMetricDescriptors(ctx context.Context, req *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	return &runtime.ListMetricDescriptorsResponse{Descriptors: metricDescriptors()}, nil
}

// ListPodSandboxMetrics reports the metrics of every ready pod.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, req *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	out := &runtime.ListPodSandboxMetricsResponse{}
	err := s.eachPodMetrics(ctx, func(m *runtime.PodSandboxMetrics) error {
		out.PodMetrics = append(out.PodMetrics, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// podMetricsBatch is how many pods go into one StreamPodSandboxMetrics
// message: far below gRPC's 16 MiB limit even for pods with many containers.
const podMetricsBatch = 32

// StreamPodSandboxMetrics sends the metrics of every ready pod in batches,
// each pod exactly once.
func (s *Service) StreamPodSandboxMetrics(ctx context.Context, send func(*runtime.StreamPodSandboxMetricsResponse) error) error {
	var batch []*runtime.PodSandboxMetrics
	err := s.eachPodMetrics(ctx, func(m *runtime.PodSandboxMetrics) error {
		batch = append(batch, m)
		if len(batch) < podMetricsBatch {
			return nil
		}
		err := send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: batch})
		batch = nil
		return err
	})
	if err != nil {
		return err
	}
	if len(batch) > 0 {
		return send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: batch})
	}
	return nil
}

// eachPodMetrics collects the metrics of each ready pod and hands them to fn.
// A pod or container whose counters cannot be read (it is going away) is
// left out, as cAdvisor does, rather than failing the whole list.
func (s *Service) eachPodMetrics(ctx context.Context, fn func(*runtime.PodSandboxMetrics) error) error {
	s.mu.RLock()
	all := make([]*sandbox, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		all = append(all, sb)
	}
	s.mu.RUnlock()
	fsInfo := s.rootFsInfo()
	for _, sb := range all {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec := sb.snapshot()
		if rec.State != sandboxReady {
			continue
		}
		select {
		case <-sb.exited:
			continue
		default:
		}
		m := s.podMetrics(sb, rec, fsInfo)
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) podMetrics(sb *sandbox, rec sandboxRecord, fsInfo rootFs) *runtime.PodSandboxMetrics {
	now := time.Now()
	md := sb.cfg().GetMetadata()
	out := &runtime.PodSandboxMetrics{PodSandboxId: rec.ID}
	// Pod-level metrics have no container and no image.
	podLabels := []string{md.GetName(), md.GetNamespace(), "", rec.ID, ""}
	// Any process in the pod's netns shows its devices: the pause, or for
	// a pod without one (podns.go) a running container.
	ctrs := s.containersOf(rec.ID)
	netPID := rec.PID
	if netPID == 0 {
		for _, c := range ctrs {
			if cr := c.snapshot(); cr.State == containerRunning {
				netPID = cr.PID
				break
			}
		}
	}
	if rec.NetNSPath != "" && netPID > 0 {
		devs, err := readNetDev(filepath.Join("/proc", strconv.Itoa(netPID), "net", "dev"))
		if err != nil {
			s.log.Debug("pod network metrics", "pod", rec.ID, "error", err)
		}
		for _, d := range devs {
			e := emitter{labels: append(podLabels[:len(podLabels):len(podLabels)], d.name), at: now}
			e.add("container_network_receive_bytes_total", d.rxBytes)
			e.add("container_network_receive_packets_total", d.rxPackets)
			e.add("container_network_receive_packets_dropped_total", d.rxDropped)
			e.add("container_network_receive_errors_total", d.rxErrors)
			e.add("container_network_transmit_bytes_total", d.txBytes)
			e.add("container_network_transmit_packets_total", d.txPackets)
			e.add("container_network_transmit_packets_dropped_total", d.txDropped)
			e.add("container_network_transmit_errors_total", d.txErrors)
			out.Metrics = append(out.Metrics, e.out...)
		}
	}
	for _, c := range ctrs {
		crec := c.snapshot()
		if crec.State != containerRunning && crec.State != containerCreated {
			continue
		}
		labels := []string{md.GetName(), md.GetNamespace(), c.config.GetMetadata().GetName(), crec.ID, containerImageLabel(c.config, crec)}
		cg, err := cgroups.ReadMetrics(crec.CgroupsPath)
		if err != nil {
			s.log.Debug("container metrics", "container", crec.ID, "error", err)
			continue
		}
		if cg.CPUWeight > 0 {
			if sh := s.requestedShares(c, crec); cgroups.SharesGiveWeight(sh, cg.CPUWeight) {
				cg.CPUShares = sh
			}
		}
		ms := s.containerMetrics(crec, labels, cg, fsInfo, now)
		out.ContainerMetrics = append(out.ContainerMetrics, &runtime.ContainerMetrics{ContainerId: crec.ID, Metrics: ms})
	}
	return out
}

// requestedShares is the CPU shares last asked for the container: by
// UpdateContainerResources, else in its spec; 0 if none. On cgroup v2 the
// shares cannot be read back exactly from cpu.weight (runc 1.4's
// conversion is not invertible), so the metric reports these where they
// give the weight the cgroup has.
func (s *Service) requestedShares(c *container, rec containerRecord) uint64 {
	if len(rec.Resources) > 0 {
		var res runtime.LinuxContainerResources
		if proto.Unmarshal(rec.Resources, &res) == nil && res.CpuShares > 0 {
			return uint64(res.CpuShares)
		}
	}
	sp, err := s.containerSpec(c)
	if err != nil || sp.Linux == nil || sp.Linux.Resources == nil || sp.Linux.Resources.CPU == nil || sp.Linux.Resources.CPU.Shares == nil {
		return 0
	}
	return *sp.Linux.Resources.CPU.Shares
}

// containerImageLabel is the image as the user named it, as cAdvisor shows it.
func containerImageLabel(cfg *runtime.ContainerConfig, rec containerRecord) string {
	if u := cfg.GetImage().GetUserSpecifiedImage(); u != "" {
		return u
	}
	if i := cfg.GetImage().GetImage(); i != "" {
		return i
	}
	return rec.ImageRef
}

// emitter appends metrics sharing one label prefix.
type emitter struct {
	labels []string
	at     time.Time
	out    []*runtime.Metric
}

func (e *emitter) add(name string, v uint64, extra ...string) {
	typ := gauge
	for _, d := range metricDefs {
		if d.name == name {
			typ = d.typ
			break
		}
	}
	lv := e.labels
	if len(extra) > 0 {
		lv = append(append([]string(nil), e.labels...), extra...)
	}
	e.out = append(e.out, &runtime.Metric{
		Name: name, Timestamp: e.at.UnixNano(), MetricType: typ, LabelValues: lv, Value: &runtime.UInt64Value{Value: v},
	})
}

// containerMetrics turns a container's cgroup counters into CRI metrics.
func (s *Service) containerMetrics(rec containerRecord, labels []string, cg *cgroups.Metrics, fsInfo rootFs, now time.Time) []*runtime.Metric {
	e := &emitter{labels: labels, at: now}
	sec := uint64(time.Second)
	e.add("container_cpu_usage_seconds_total", cg.CPUTotal/sec)
	e.add("container_cpu_user_seconds_total", cg.CPUUser/sec)
	e.add("container_cpu_system_seconds_total", cg.CPUSystem/sec)
	e.add("container_cpu_cfs_periods_total", cg.Periods)
	e.add("container_cpu_cfs_throttled_periods_total", cg.ThrottledPeriods)
	e.add("container_cpu_cfs_throttled_seconds_total", cg.ThrottledNanos/sec)

	e.add("container_memory_cache", cg.MemCache)
	e.add("container_memory_rss", cg.MemRSS)
	e.add("container_memory_kernel_usage", cg.MemKernel)
	e.add("container_memory_mapped_file", cg.MemMapped)
	e.add("container_memory_swap", cg.MemSwap)
	e.add("container_memory_failcnt", cg.MemFailcnt)
	e.add("container_memory_usage_bytes", cg.MemUsage)
	e.add("container_memory_max_usage_bytes", cg.MemMaxUsage)
	e.add("container_memory_working_set_bytes", cg.MemWorkingSet)
	e.add("container_memory_failures_total", cg.PgFault, "pgfault", "container")
	e.add("container_memory_failures_total", cg.PgMajFault, "pgmajfault", "container")
	e.add("container_memory_failures_total", cg.PgFaultHierarchy, "pgfault", "hierarchy")
	e.add("container_memory_failures_total", cg.PgMajFaultHierarchy, "pgmajfault", "hierarchy")
	e.add("container_oom_events_total", cg.OOMKills)

	used, _, err := image.WritableUsage(filepath.Join(s.containerDir(rec.ID), "rw"))
	if err != nil {
		s.log.Debug("writable layer usage", "container", rec.ID, "error", err)
	}
	e.add("container_fs_usage_bytes", used, fsInfo.device)
	e.add("container_fs_limit_bytes", fsInfo.capacity, fsInfo.device)
	e.add("container_fs_inodes_total", fsInfo.inodes, fsInfo.device)
	e.add("container_fs_inodes_free", fsInfo.inodesFree, fsInfo.device)
	for _, io := range cg.Blkio {
		dev := blockDeviceName(io.Major, io.Minor)
		e.add("container_fs_reads_bytes_total", io.ReadBytes, dev)
		e.add("container_fs_reads_total", io.Reads, dev)
		e.add("container_fs_writes_bytes_total", io.WriteBytes, dev)
		e.add("container_fs_writes_total", io.Writes, dev)
		maj, mnr := strconv.FormatUint(io.Major, 10), strconv.FormatUint(io.Minor, 10)
		e.add("container_blkio_device_usage_total", io.ReadBytes, dev, maj, mnr, "Read")
		e.add("container_blkio_device_usage_total", io.WriteBytes, dev, maj, mnr, "Write")
	}

	procs := processCounts(cg.Pids)
	e.add("container_processes", uint64(len(cg.Pids)))
	e.add("container_threads", procs.threads)
	e.add("container_threads_max", cg.PidsMax)
	e.add("container_file_descriptors", procs.fds)
	e.add("container_sockets", procs.sockets)

	e.add("container_spec_cpu_period", cg.CPUPeriod)
	e.add("container_spec_cpu_shares", cg.CPUShares)
	e.add("container_spec_memory_limit_bytes", cg.MemLimit)
	e.add("container_spec_memory_swap_limit_bytes", cg.MemSwapLimit)
	e.add("container_spec_memory_reservation_limit_bytes", cg.MemReservation)

	e.add("container_last_seen", uint64(now.Unix()))
	start := rec.StartedAt
	if start == 0 {
		start = rec.CreatedAt
	}
	e.add("container_start_time_seconds", uint64(start/int64(time.Second)))
	return e.out
}

// blockDeviceName is /dev/<name> of a block device, or "MAJ:MIN" when sysfs
// does not know it.
func blockDeviceName(major, minor uint64) string {
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", major, minor))
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if n, ok := strings.CutPrefix(line, "DEVNAME="); ok {
				return "/dev/" + n
			}
		}
	}
	return fmt.Sprintf("%d:%d", major, minor)
}

// netDev is one interface's line of /proc/<pid>/net/dev.
type netDev struct {
	name                                    string
	rxBytes, rxPackets, rxErrors, rxDropped uint64
	txBytes, txPackets, txErrors, txDropped uint64
}

// readNetDev reads the interfaces of the network namespace a process is
// in, except loopback (cAdvisor leaves it out too).
func readNetDev(path string) ([]netDev, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseNetDev(b), nil
}

func parseNetDev(b []byte) []netDev {
	var out []netDev
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // the two header lines
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 16 {
			continue
		}
		n := make([]uint64, 16)
		for i := range n {
			n[i], _ = strconv.ParseUint(f[i], 10, 64)
		}
		// Receive: bytes packets errs drop fifo frame compressed multicast;
		// transmit: bytes packets errs drop fifo colls carrier compressed.
		out = append(out, netDev{
			name: name, rxBytes: n[0], rxPackets: n[1], rxErrors: n[2], rxDropped: n[3],
			txBytes: n[8], txPackets: n[9], txErrors: n[10], txDropped: n[11],
		})
	}
	return out
}

// procCounts are the threads and open files of a set of processes.
type procCounts struct{ threads, fds, sockets uint64 }

// processCounts counts threads, file descriptors and sockets of pids. A
// process that exits meanwhile is skipped.
func processCounts(pids []int) procCounts {
	var c procCounts
	for _, pid := range pids {
		base := filepath.Join("/proc", strconv.Itoa(pid))
		if tasks, err := os.ReadDir(filepath.Join(base, "task")); err == nil {
			c.threads += uint64(len(tasks))
		}
		fdDir := filepath.Join(base, "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		c.fds += uint64(len(fds))
		for _, fd := range fds {
			if t, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && strings.HasPrefix(t, "socket:") {
				c.sockets++
			}
		}
	}
	return c
}

// rootFs describes the filesystem holding crid's root (and so every
// writable layer).
type rootFs struct {
	device                       string
	capacity, inodes, inodesFree uint64
}

func (s *Service) rootFsInfo() rootFs {
	out := rootFs{device: s.cfg.Root}
	var st unix.Statfs_t
	if err := unix.Statfs(s.cfg.Root, &st); err == nil {
		out.capacity = st.Blocks * uint64(st.Bsize)
		out.inodes, out.inodesFree = st.Files, st.Ffree
	}
	// The device is the source of the deepest mount containing the root.
	if infos, err := mountinfo.GetMounts(mountinfo.ParentsFilter(s.cfg.Root)); err == nil {
		best := -1
		for _, m := range infos {
			if len(m.Mountpoint) > best {
				best, out.device = len(m.Mountpoint), m.Source
			}
		}
	}
	return out
}
