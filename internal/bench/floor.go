package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netns"
)

// The floor scenario measures what any CRI runtime must at least spend to
// start a pod: a network namespace, one CNI ADD, `runc run` of the pause
// bundle and of a container joining its namespaces. A runtime's startup
// total minus this floor is its own overhead.

var floorCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// floorSpec returns a minimal OCI spec like the one a CRI runtime generates.
// joinPID > 0 makes the container join that process's network, IPC and UTS
// namespaces (as an app container joins its pause container); otherwise it
// gets its own, with the network namespace at netnsPath.
func floorSpec(id, rootfs string, args []string, netnsPath string, joinPID int) *specs.Spec {
	caps := append([]string(nil), floorCaps...)
	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}
	if joinPID > 0 {
		for _, t := range []struct {
			typ  specs.LinuxNamespaceType
			file string
		}{{specs.NetworkNamespace, "net"}, {specs.IPCNamespace, "ipc"}, {specs.UTSNamespace, "uts"}} {
			ns = append(ns, specs.LinuxNamespace{Type: t.typ, Path: fmt.Sprintf("/proc/%d/ns/%s", joinPID, t.file)})
		}
	} else {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netnsPath},
			specs.LinuxNamespace{Type: specs.IPCNamespace}, specs.LinuxNamespace{Type: specs.UTSNamespace})
	}
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: rootfs},
		Hostname: "floor",
		Process: &specs.Process{
			Args:            args,
			Env:             []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:             "/",
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			// An explicit leaf path: runc removes it on delete, leaving no
			// cgroup behind.
			CgroupsPath:   "/" + id,
			Namespaces:    ns,
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// loadCNIConf loads the lexically first network config of dir, as CRI
// runtimes do.
func loadCNIConf(dir string) (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, fmt.Errorf("read CNI config dir %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CNI network config in %s", dir)
	}
	sort.Strings(files)
	f := files[0]
	if strings.HasSuffix(f, ".conflist") {
		return libcni.NetworkConfFromFile(f)
	}
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f, err)
	}
	pc, err := libcni.NetworkPluginConfFromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", f, err)
	}
	//lint:ignore SA1019 single-network .conf files are still common in /etc/cni/net.d; libcni has no replacement that wraps them
	return libcni.ConfListFromConf(pc)
}

// newNamedNetns creates a pinned network namespace without leaving the
// calling goroutine's thread in it.
func newNamedNetns(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err == nil {
			ns.Close()
		}
		if serr := netns.Set(orig); serr != nil {
			// The thread is in the wrong namespace: keep it locked so it
			// exits with this goroutine instead of serving others.
			errc <- errors.Join(err, fmt.Errorf("restore netns: %w", serr))
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			err = fmt.Errorf("create netns %s: %w", name, err)
		}
		errc <- err
	}()
	return <-errc
}

type floorRun struct {
	b       *Bench
	root    string // runc --root
	created []string
	cni     *libcni.CNIConfig
	list    *libcni.NetworkConfigList
	nets    []floorNet // netns (and CNI ADDs) not yet removed
}

// floorNet is a pinned netns and, once added, its CNI attachment.
type floorNet struct {
	name string
	rt   *libcni.RuntimeConf
}

func (f *floorRun) runc(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, f.b.opts.RuncPath, append([]string{"--root", f.root}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("runc %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// run starts a detached container from a fresh bundle and returns its pid.
func (f *floorRun) run(ctx context.Context, id string, spec *specs.Spec) (time.Duration, int, error) {
	bundle := filepath.Join(f.b.opts.WorkDir, "floor", id)
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		return 0, 0, fmt.Errorf("bundle dir: %w", err)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return 0, 0, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		return 0, 0, fmt.Errorf("write bundle config: %w", err)
	}
	f.created = append(f.created, id)
	// The container inherits runc's stdio: give it /dev/null, not a pipe,
	// or waiting for runc would wait for the container to close the pipe.
	// runc's own errors go to its log file instead.
	logFile := filepath.Join(bundle, "runc.log")
	d, err := timed(func() error {
		cmd := exec.CommandContext(ctx, f.b.opts.RuncPath, "--root", f.root, "--log", logFile, "run", "--detach", "--bundle", bundle, id)
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Run(); err != nil {
			msg, _ := os.ReadFile(logFile)
			return fmt.Errorf("runc run %s: %w: %s", id, err, strings.TrimSpace(string(msg)))
		}
		return nil
	})
	if err != nil {
		return d, 0, err
	}
	out, err := f.runc(ctx, "state", id)
	if err != nil {
		return d, 0, err
	}
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return d, 0, fmt.Errorf("decode runc state: %w", err)
	}
	return d, st.Pid, nil
}

func (f *floorRun) delete(ctx context.Context, id string) error {
	_, err := f.runc(ctx, "delete", "--force", id)
	if err == nil {
		for i, c := range f.created {
			if c == id {
				f.created = append(f.created[:i], f.created[i+1:]...)
				break
			}
		}
	}
	return err
}

// Steps of one floor pod: with a pause, the container joins the pause's
// namespaces; without one (how crid runs pods without a shared PID
// namespace), the container gets the netns and its own IPC and UTS.
var (
	floorSteps          = []string{"netns", "cni-add", "runc-run-pause", "runc-run-container", "startup-total", "teardown"}
	floorPauselessSteps = []string{"netns", "cni-add", "runc-run-container", "startup-total", "teardown"}
)

func (b *Bench) floor(ctx context.Context) error {
	o := b.opts
	if o.PauseRootfs == "" || o.Rootfs == "" {
		return fmt.Errorf("floor needs --floor-pause-rootfs and --floor-rootfs (unpacked image root filesystems)")
	}
	list, err := loadCNIConf(o.CNIConfDir)
	if err != nil {
		return err
	}
	f := &floorRun{b: b, root: filepath.Join(o.WorkDir, "runc"), list: list,
		cni: libcni.NewCNIConfigWithCacheDir(o.CNIBinDirs, filepath.Join(o.WorkDir, "cni-cache"), nil)}
	// Whatever happens, leave no container, netns or CNI allocation behind.
	defer f.cleanup()

	samples := make([][]time.Duration, len(floorSteps))
	pauseless := make([][]time.Duration, len(floorPauselessSteps))
	total := o.N + o.Warmup
	tk := b.ticker("floor", total)
	for i := 0; i < total; i++ {
		id := fmt.Sprintf("%sfloor-%d", b.tr.Prefix(), i)
		d, err := f.pod(ctx, id, true)
		if err != nil {
			return err
		}
		dl, err := f.pod(ctx, id+"-np", false)
		if err != nil {
			return err
		}
		if i >= o.Warmup {
			for k := range d {
				samples[k] = append(samples[k], d[k])
			}
			for k := range dl {
				pauseless[k] = append(pauseless[k], dl[k])
			}
		}
		tk.inc()
	}
	for k, n := range floorSteps {
		s := Summarize(samples[k])
		b.add(Metric{"floor", "sequential", n + " p50", "ms", Ms(s.P50)}, Metric{"floor", "sequential", n + " p90", "ms", Ms(s.P90)})
	}
	for k, n := range floorPauselessSteps {
		s := Summarize(pauseless[k])
		b.add(Metric{"floor", "without pause", n + " p50", "ms", Ms(s.P50)}, Metric{"floor", "without pause", n + " p90", "ms", Ms(s.P90)})
	}
	return nil
}

// cleanup removes what a failed or interrupted run left, with a fresh
// context: the run's may be the cancelled one.
func (f *floorRun) cleanup() {
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := len(f.created) - 1; i >= 0; i-- {
		_, _ = f.runc(cctx, "delete", "--force", f.created[i])
	}
	for _, n := range f.nets {
		if n.rt != nil {
			_ = f.cni.DelNetworkList(cctx, f.list, n.rt)
		}
		_ = netns.DeleteNamed(n.name)
	}
}

// pod starts and tears down one floor pod, with or without a pause, and
// returns the time of each step (floorSteps or floorPauselessSteps).
func (f *floorRun) pod(ctx context.Context, id string, withPause bool) ([]time.Duration, error) {
	o := f.b.opts
	var d []time.Duration
	step := func(fn func() error) error {
		t, err := timed(fn)
		d = append(d, t)
		return err
	}
	if err := step(func() error { return newNamedNetns(id) }); err != nil {
		return nil, err
	}
	f.nets = append(f.nets, floorNet{name: id})
	ns := &f.nets[len(f.nets)-1]
	nsPath := "/var/run/netns/" + id
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: nsPath, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", Namespace}, {"K8S_POD_NAME", id}, {"K8S_POD_INFRA_CONTAINER_ID", id}}}
	if err := step(func() error { _, err := f.cni.AddNetworkList(ctx, f.list, rt); return err }); err != nil {
		return nil, fmt.Errorf("CNI ADD: %w", err)
	}
	ns.rt = rt
	var ids []string
	ctrSpec := floorSpec(id+"-c", o.Rootfs, o.Command, nsPath, 0)
	if withPause {
		pauseArgs := []string{"/pause"}
		if o.PauseArgs != nil {
			pauseArgs = o.PauseArgs
		}
		var pid int
		if err := step(func() (err error) {
			_, pid, err = f.run(ctx, id+"-pause", floorSpec(id+"-pause", o.PauseRootfs, pauseArgs, nsPath, 0))
			return err
		}); err != nil {
			return nil, err
		}
		ids = append(ids, id+"-pause")
		ctrSpec = floorSpec(id+"-c", o.Rootfs, o.Command, "", pid)
	}
	if err := step(func() error { _, _, err := f.run(ctx, id+"-c", ctrSpec); return err }); err != nil {
		return nil, err
	}
	ids = append(ids, id+"-c")
	var total time.Duration
	for _, t := range d {
		total += t
	}
	d = append(d, total)
	err := step(func() error {
		for i := len(ids) - 1; i >= 0; i-- {
			if err := f.delete(ctx, ids[i]); err != nil {
				return err
			}
		}
		if err := f.cni.DelNetworkList(ctx, f.list, rt); err != nil {
			return fmt.Errorf("CNI DEL: %w", err)
		}
		ns.rt = nil
		return netns.DeleteNamed(id)
	})
	if err != nil {
		return nil, err
	}
	f.nets = f.nets[:len(f.nets)-1]
	return d, nil
}
