package core

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/cgroups"
	"github.com/crid-dev/crid/internal/diskfull"
	"github.com/crid-dev/crid/internal/monitor"
	"github.com/crid-dev/crid/internal/nri"
	"github.com/crid-dev/crid/internal/oci"
	"github.com/crid-dev/crid/internal/pidfd"
	"github.com/crid-dev/crid/internal/store"
	"github.com/crid-dev/crid/internal/tracing"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Container states as persisted.
const (
	containerInit    = "init" // being created; removed if found at recovery
	containerCreated = "created"
	containerRunning = "running"
	containerExited  = "exited"
)

// containerRecord is the persisted state of a container.
type containerRecord struct {
	ID          string `json:"id"`
	SandboxID   string `json:"sandboxId"`
	Name        string `json:"name"` // reserved name
	Config      []byte `json:"config"`
	ImageID     string `json:"imageId"`
	ImageRef    string `json:"imageRef"` // repo digest or tag the image is known by
	State       string `json:"state"`
	CreatedAt   int64  `json:"createdAt"`
	StartedAt   int64  `json:"startedAt,omitempty"`
	FinishedAt  int64  `json:"finishedAt,omitempty"`
	ExitCode    int32  `json:"exitCode"`
	Reason      string `json:"reason,omitempty"`
	Message     string `json:"message,omitempty"`
	PID         int    `json:"pid,omitempty"`
	MonitorPID  int    `json:"monitorPid,omitempty"`
	LogPath     string `json:"logPath,omitempty"`
	CgroupsPath string `json:"cgroupsPath"`
	// Resources is the proto of the latest UpdateContainerResources, kept so
	// a restart and status report it.
	Resources []byte `json:"resources,omitempty"`
	// ImageVolumes are the images mounted as volumes; mounted under
	// imageVolumesDir(ID).
	ImageVolumes []imageVolume `json:"imageVolumes,omitempty"`
}

type container struct {
	opMu sync.Mutex

	mu      sync.RWMutex
	rec     containerRecord
	config  *runtime.ContainerConfig
	exited  chan struct{} // closed once the exit is recorded
	lastCPU *cpuSample
	fsUsage *fsSample
	// spec is the container's OCI spec, read once from its bundle: status
	// and exec need it on every call and it never changes.
	spec *specs.Spec
	// runtimeDeleted: the exit watcher deleted the container from the
	// runtime, so RemoveContainer need not start the runtime again.
	runtimeDeleted bool
	// execd closes once the started init has exec'd the container's
	// process (runc.StartFifoThen); nil when there was nothing to wait
	// for (a recovered container, the runtime's own start).
	execd <-chan struct{}
}

// waitExecd waits until the container's init has exec'd its process (see
// execd), so that an exec, a signal or a checkpoint right after the start
// meets the container's process and not `runc init`. StartContainer does
// not wait for it: `runc start` does not either, and the execve's 1-2 ms
// would be on every container's startup.
func (c *container) waitExecd(ctx context.Context) error {
	c.mu.RLock()
	execd, id := c.execd, c.rec.ID
	c.mu.RUnlock()
	if execd == nil {
		return nil
	}
	select {
	case <-execd:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("container %s: wait for its process to start: %w", id, context.Cause(ctx))
	}
}

func (c *container) snapshot() containerRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rec
}

func (s *Service) containerDir(id string) string { return filepath.Join(s.cfg.Root, "containers", id) }
func (s *Service) containerBundle(id string) string {
	return filepath.Join(s.cfg.State, "containers", id)
}

func (s *Service) saveContainer(c *container) error {
	rec := c.snapshot()
	return s.st.Put(store.BucketContainers, rec.ID, rec)
}

func (s *Service) getContainer(id string) (*container, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return lookupID(s.containers, id, "container")
}

func (s *Service) containersOf(sandboxID string) []*container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*container
	for _, c := range s.containers {
		if c.rec.SandboxID == sandboxID {
			out = append(out, c)
		}
	}
	return out
}

// CreateContainer creates a container in a ready sandbox; it stays CREATED
// until StartContainer.
func (s *Service) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if cfg == nil || cfg.GetMetadata() == nil || cfg.Metadata.Name == "" {
		return nil, fmt.Errorf("create container: config with metadata.name is required: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, fmt.Errorf("create container %s: image is required: %w", cfg.Metadata.Name, errdefs.ErrInvalidArgument)
	}
	if err := refuseRestore(cfg.GetImage().GetImage()); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	sb, err := s.getSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	// Keyed by the pod's full id: a retry may name it by another prefix.
	key := fmt.Sprintf("container %s/%s/%d", sb.snapshot().ID, cfg.Metadata.Name, cfg.Metadata.Attempt)
	exists := func(id string) bool { _, err := s.getContainer(id); return err == nil }
	id, err := s.pending.run(ctx, s.ctx, &s.wg, key, exists, func(ctx context.Context) (string, error) {
		return s.createContainer(ctx, req)
	})
	if err != nil {
		return nil, stillRunning(ctx, "create container "+cfg.Metadata.Name, err)
	}
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// createContainer creates the container of a checked request.
func (s *Service) createContainer(ctx context.Context, req *runtime.CreateContainerRequest) (_ string, retErr error) {
	defer s.nriBlockSync()()
	cfg := req.GetConfig()
	sb, err := s.getSandbox(req.GetPodSandboxId())
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	// A stop of the pod cancels this create and waits for its rollback
	// (podcreates.go): pc.end comes after the rollback below.
	ctx, pc, err := sb.beginCreate(ctx, true)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	defer pc.end(sb)
	tm := newStepTimer()
	sbRec := sb.snapshot()
	sbCfg := sb.cfg()
	if req.GetSandboxConfig() != nil {
		sbCfg = req.GetSandboxConfig()
	}
	rt, err := s.runtimeFor(sbRec.Handler)
	if err != nil {
		return "", err
	}
	img, err := s.images.Resolve(cfg.Image.Image)
	if err != nil {
		return "", fmt.Errorf("create container %s: image %q: %w", cfg.Metadata.Name, cfg.Image.Image, err)
	}
	volumes, volumeImages, err := s.resolveImageVolumes(cfg)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	id := newID()
	tracing.Annotate(ctx, tracing.ContainerID.String(id))
	log := s.log.With("pod", sbRec.ID, "container", id, "name", cfg.Metadata.Name)
	dir, bundle := s.containerDir(id), s.containerBundle(id)
	m := sb.cfg().GetMetadata()
	name := fmt.Sprintf("%s_%s_%s_%s_%d", cfg.Metadata.Name, m.GetName(), m.GetNamespace(), m.GetUid(), cfg.Metadata.Attempt)
	if err := s.reserveName(name, id); err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	u := &undo{log: log}
	defer func() {
		if retErr != nil {
			u.run()
			retErr = pc.explain("create container "+cfg.Metadata.Name, sbRec.ID, retErr)
			// A full disk (writable layer, bundle, spec, record) is
			// answered with ResourceExhausted naming the filesystem.
			retErr = diskfull.Wrap(retErr, dir)
			log.Warn("container creation rolled back", "error", retErr)
		}
	}()
	u.add(func(context.Context) error { s.releaseName(name, id); return nil })
	// The monitor is launched first, in a goroutine: its fork and exec
	// overlap the init record's fsync and its Go start-up the rootfs and
	// spec below. It touches no file until Create, and until Create takes
	// it, a return ends it (Abort) and a crash ends it too (its options
	// pipe's EOF), having done nothing.
	launch := monitor.LaunchAsync(s.monitor, bundle)
	defer launch.Abort()

	cfgBytes, err := proto.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	logPath := ""
	if sbCfg.GetLogDirectory() != "" && cfg.LogPath != "" {
		logPath = filepath.Join(sbCfg.LogDirectory, cfg.LogPath)
	}
	imageRef := img.ID
	if len(img.RepoDigests) > 0 {
		imageRef = img.RepoDigests[0]
	}
	c := &container{config: cfg, exited: make(chan struct{})}
	c.rec = containerRecord{
		ID: id, SandboxID: sbRec.ID, Name: name, Config: cfgBytes, ImageID: img.ID, ImageRef: imageRef,
		State: containerInit, CreatedAt: time.Now().UnixNano(), LogPath: logPath,
		CgroupsPath:  oci.CgroupsPath(s.cfg.CgroupDriver, sbCfg.GetLinux().GetCgroupParent(), id),
		ImageVolumes: volumes,
	}
	tm.mark("image")
	if err := s.saveContainer(c); err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	tm.mark("record init")
	if err := s.fault(ctx, "CreateContainer", "recorded"); err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	s.mu.Lock()
	s.containers[id] = c
	s.mu.Unlock()
	u.add(func(context.Context) error {
		s.mu.Lock()
		delete(s.containers, id)
		s.mu.Unlock()
		return s.st.Delete(store.BucketContainers, id)
	})

	for _, d := range []string{dir, bundle} {
		// Undone even if objectDir fails half way (a full disk).
		u.add(func(context.Context) error { return os.RemoveAll(d) })
		if err := objectDir(d, oci.PodUserNamespace(sbCfg)); err != nil {
			return "", fmt.Errorf("create container: %w", err)
		}
	}
	if logPath != "" {
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
			return "", fmt.Errorf("create container: log dir: %w", err)
		}
	}
	tm.mark("dirs")
	rootfs := filepath.Join(bundle, "rootfs")
	rwDir := filepath.Join(dir, "rw")
	if err := s.images.PrepareRootfs(ctx, img, rwDir, rootfs); err != nil {
		return "", fmt.Errorf("create container: rootfs: %w", err)
	}
	u.add(func(ctx context.Context) error { return s.images.ReleaseRootfs(ctx, rwDir, rootfs) })
	tm.mark("rootfs")
	if err := s.fault(ctx, "CreateContainer", "rootfs"); err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	if err := s.idmapContainerRootfs(sbCfg, sbRec.PID, rootfs); err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	imageVolumes, err := s.mountImageVolumes(ctx, id, cfg, volumeImages, u)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}

	sbDir := s.sandboxDir(sbRec.ID)
	shm := filepath.Join(s.sandboxBundle(sbRec.ID), "shm")
	if !sbRec.ShmMounted {
		shm = "/dev/shm"
	}
	params := oci.ContainerParams{
		ID: id, SandboxID: sbRec.ID, Config: cfg, SandboxConfig: sbCfg, Image: img.Config, ImageName: cfg.Image.Image,
		RootfsPath: rootfs, SandboxPID: sbRec.PID, NetNSPath: sbRec.NetNSPath,
		IPCNSPath: sbRec.IPCNSPath, UTSNSPath: sbRec.UTSNSPath,
		ResolvConfPath: filepath.Join(sbDir, "resolv.conf"), HostsPath: filepath.Join(sbDir, "hosts"),
		HostnamePath: filepath.Join(sbDir, "hostname"), ShmPath: shm,
		CgroupsPath: c.rec.CgroupsPath, MinOOMScoreAdj: s.minOOM, ImageVolumes: imageVolumes,
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	targetSandbox := sbRec.ID
	if t := nsOpts.GetTargetId(); t != "" {
		tc, err := s.getContainer(t)
		if err != nil {
			return "", fmt.Errorf("create container: target container: %w", err)
		}
		tr := tc.snapshot()
		params.TargetPID, targetSandbox = tr.PID, tr.SandboxID
	}
	if err := validatePIDTarget(nsOpts, sbRec.ID, targetSandbox); err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	//lint:ignore SA1019 older kubelets still send the deprecated apparmor_profile field
	logIgnoredAppArmor(log, sc.GetApparmor(), sc.GetApparmorProfile())
	specCtx, endSpec := tracing.Open(ctx, "oci.spec", tracing.SpecKind.String("container"), tracing.ContainerID.String(id))
	defer func() { endSpec(retErr) }()
	spec, err := oci.ContainerSpec(params)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	annOpts, err := s.applyContainerAnnotations(log, spec, sbRec.Handler, sbCfg.GetAnnotations(), cfg.GetAnnotations())
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	cdiDevices, err := oci.CDIDevices(cfg)
	if err == nil {
		err = oci.ApplyCDI(spec, cdiDevices, s.cfg.Runtime.CDISpecDirs)
	}
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	// Plugins adjust the finished spec; what they changed is what goes to
	// config.json, so it survives a crid restart with the bundle.
	if err := s.nriCreateContainer(ctx, sb, c, spec, u); err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	// The notifier rewrites the profile as plugins left it.
	notify, err := seccompNotifier(log, spec, annOpts.SeccompNotifier, bundle)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	if err := s.ensureAppArmor(ctx, spec); err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	spec.Version = s.specVersion(specCtx, rt)
	if err := writeSpec(bundle, spec); err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	c.mu.Lock()
	c.spec = spec
	c.mu.Unlock()
	endSpec(nil)
	tm.mark("spec")
	if err := s.fault(ctx, "CreateContainer", "spec"); err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	mon, err := launch.Wait()
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	spawnStart := time.Now()
	// The monitor runs the runtime's create: its span covers both.
	monCtx, monSpan := tracing.Start(ctx, "monitor.start", tracing.ContainerID.String(id), tracing.Handler.String(rt.Name))
	// The monitor aborts its runtime's create when monCtx ends.
	monCtx, monCancel := rt.Bounded(monCtx, "create")
	proc, err := mon.Create(monCtx, monitor.Options{
		ID: id, Bundle: bundle, RuntimePath: rt.Path, RuntimeRoot: rt.Root,
		LogPath: logPath, Stdin: cfg.Stdin, StdinOnce: cfg.StdinOnce, Terminal: cfg.Tty,
		SeccompNotify: notify,
		SystemdCgroup: rt.SystemdCgroup,
	})
	monCancel()
	// The monitor runs `runtime create`: that is the runtime's create.
	s.metrics.RuntimeOperation(rt.Name, "create", time.Since(spawnStart), err)
	tracing.End(monSpan, err)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Metadata.Name, err)
	}
	u.add(func(ctx context.Context) error {
		_ = rt.Kill(ctx, id, syscall.SIGKILL, true)
		err := rt.Delete(ctx, id, true)
		_ = cgroups.Remove(c.rec.CgroupsPath)
		return err
	})
	tm.mark("monitor+create")
	if err := s.fault(ctx, "CreateContainer", "runtime-created"); err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	c.mu.Lock()
	c.rec.State, c.rec.PID, c.rec.MonitorPID = containerCreated, proc.ContainerPID, proc.MonitorPID
	c.mu.Unlock()
	if err := s.saveContainer(c); err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	tm.mark("record created")
	tm.log(log, "create container timings")
	s.nriContainerEvent(ctx, c, (*nri.NRI).PostCreateContainer)
	s.watchContainer(c)
	s.events.publish(c, runtime.ContainerEventType_CONTAINER_CREATED_EVENT)
	log.Info("container created")
	return id, nil
}

// watchContainer records the container's exit in the background.
func (s *Service) watchContainer(c *container) {
	id := c.rec.ID
	stateDir := s.containerBundle(id)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ex, err := monitor.Wait(s.ctx, stateDir)
		if err != nil && s.ctx.Err() != nil {
			return
		}
		s.recordExit(c, ex, err)
	}()
}

// recordExit stores how the container ended and cleans up its runtime state.
func (s *Service) recordExit(c *container, ex *monitor.Exit, waitErr error) {
	c.mu.Lock()
	rec := &c.rec
	if rec.State == containerExited {
		c.mu.Unlock()
		return
	}
	rec.State = containerExited
	switch {
	case waitErr != nil:
		rec.ExitCode, rec.Reason = 255, "Unknown"
		rec.Message = waitErr.Error()
		rec.FinishedAt = time.Now().UnixNano()
	default:
		rec.ExitCode, rec.FinishedAt = ex.Code, ex.ExitedAt.UnixNano()
		switch {
		case ex.Reason != "": // the monitor stopped it (seccomp notifier)
			rec.Reason, rec.Message = ex.Reason, ex.Message
			if ex.Reason == monitor.SeccompReason {
				s.metrics.SeccompStop()
			}
		case ex.OOMKilled:
			rec.Reason = "OOMKilled"
			s.metrics.OOMKill()
		case ex.Code == 0:
			rec.Reason = "Completed"
		case rec.Reason == "":
			rec.Reason = "Error"
		}
	}
	snap := *rec
	c.mu.Unlock()
	if err := s.saveContainer(c); err != nil {
		s.log.Error("persist container exit", "container", snap.ID, "error", err)
	}
	// A monitor that died before its container left the init to crid
	// (the nearest subreaper): pinned now, reaped once the delete below
	// has killed it.
	var adopted *os.File
	if waitErr != nil {
		adopted = adoptedInit(snap)
	}
	// Delete from the runtime before waking waiters: a RemoveContainer
	// racing this delete makes runc 1.1 see a half-deleted container
	// ("invalid state transition from stopped to paused").
	if rt, err := s.runtimeFor(s.handlerOf(snap.SandboxID)); err == nil {
		ctx, cancel := cleanupCtx()
		if err := rt.DeleteExited(ctx, snap.ID); err != nil {
			s.log.Warn("delete exited container from runtime", "container", snap.ID, "error", err)
		} else {
			c.mu.Lock()
			c.runtimeDeleted = true
			c.mu.Unlock()
		}
		cancel()
	}
	if adopted != nil {
		s.reapAdoptedInit(snap.ID, adopted)
	}
	_ = cgroups.Remove(snap.CgroupsPath)
	// NRI plugins hear of every stop, also of a container that exited on
	// its own, and before waiters wake: a RemoveContainer waiting for the
	// exit reaches them after it.
	nctx, ncancel := cleanupCtx()
	s.nriContainerEvent(nctx, c, (*nri.NRI).StopContainer)
	ncancel()
	close(c.exited)
	s.events.publish(c, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT)
	s.log.Info("container exited", "container", snap.ID, "exitCode", snap.ExitCode, "reason", snap.Reason)
}

// adoptedInit is a pidfd of the container's init if crid adopted it: its
// monitor, its parent, died first. Left a zombie, the init would also
// keep a pod's pause (the init of a shared PID namespace) from finishing
// its exit until reapStrays' second sweep. nil when the init is gone,
// is not crid's child, or is not the container's (a reused pid outside its
// cgroup).
func adoptedInit(rec containerRecord) *os.File {
	if rec.PID <= 0 {
		return nil
	}
	f, err := pidfd.Open(rec.PID)
	if err != nil {
		return nil
	}
	// After the pidfd pins the process: a reused pid fails these checks.
	_, cgErr := cgroups.ProcessDirs(rec.PID, rec.CgroupsPath)
	if ppid, err := pidfd.ParentPID(rec.PID); cgErr != nil || err != nil || ppid != os.Getpid() {
		f.Close()
		return nil
	}
	return f
}

// reapAdoptedInit waits (bounded) for the adopted init f, which the
// runtime's delete has killed, and reaps it.
func (s *Service) reapAdoptedInit(id string, f *os.File) {
	ctx, cancel := context.WithTimeout(context.Background(), killedPauseReapTimeout)
	defer cancel()
	if err := waitPidfd(ctx, f); err != nil {
		s.log.Warn("reap the init of a container whose monitor died", "container", id, "error", err)
	}
}

// signalDirect sends sig to a running container's init through a pidfd,
// which is all `runc kill` does, without starting the runtime (25-30 ms
// on a small node). With all, only when the container has its own PID
// namespace: killing its init then ends every process in it. It reports
// false when the runtime must do it: another kind of runtime, a shared
// PID namespace, or an init it cannot tie to the container's cgroup.
func (s *Service) signalDirect(c *container, rec containerRecord, sig syscall.Signal, all bool) bool {
	if rec.State != containerRunning || rec.PID <= 0 || !s.handlerConfig(s.handlerOf(rec.SandboxID)).ExecDirect() {
		return false
	}
	if all {
		spec, err := s.containerSpec(c)
		if err != nil || sig != syscall.SIGKILL || !ownPIDNamespace(spec) {
			return false
		}
	}
	f, err := pidfd.Open(rec.PID)
	if err != nil {
		return false
	}
	defer f.Close()
	// After the pidfd pins the process: a reused pid fails this check.
	if _, err := cgroups.ProcessDirs(rec.PID, rec.CgroupsPath); err != nil {
		return false
	}
	if err := unix.PidfdSendSignal(int(f.Fd()), sig, nil, 0); err != nil {
		return false
	}
	return true
}

// ownPIDNamespace reports whether spec gives the container a new PID
// namespace (CRI mode CONTAINER).
func ownPIDNamespace(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

func (s *Service) handlerOf(sandboxID string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sb, ok := s.sandboxes[sandboxID]; ok {
		return sb.rec.Handler
	}
	return ""
}

// StartContainer starts a created container.
func (s *Service) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	c, err := s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	rec := c.snapshot()
	if rec.State != containerCreated {
		return nil, fmt.Errorf("start container %s: container is %s, not created: %w", rec.ID, rec.State, errdefs.ErrFailedPrecondition)
	}
	rt, err := s.runtimeFor(s.handlerOf(rec.SandboxID))
	if err != nil {
		return nil, err
	}
	s.nriContainerEvent(ctx, c, (*nri.NRI).StartContainer)
	// The record follows the init's release, not its exec: StartFifoThen
	// runs it while the init execs the container's process.
	var recErr error
	record := func() { recErr = s.recordStarted(ctx, c) }
	start := func() error {
		execd, err := rt.StartFifoThen(ctx, rec.ID, rec.PID, record)
		c.mu.Lock()
		c.execd = execd
		c.mu.Unlock()
		return err
	}
	if spec, err := s.containerSpec(c); err != nil || (spec.Hooks != nil && len(spec.Hooks.Poststart) > 0) {
		// Poststart hooks are the runtime's to run: crun runs them in its
		// start command. (runc runs them in create, right after the init
		// is made and before its release: its start only releases it.)
		start = func() error {
			if err := rt.Start(ctx, rec.ID); err != nil {
				return err
			}
			record()
			return nil
		}
	}
	if err := s.fault(ctx, "StartContainer", "before-start"); err != nil {
		return nil, fmt.Errorf("start container: %w", err)
	}
	if err := start(); err != nil {
		// Leave it EXITED with the reason rather than vanish.
		c.mu.Lock()
		c.rec.Reason, c.rec.Message, c.rec.ExitCode = "StartError", err.Error(), 128
		c.mu.Unlock()
		// With a fresh context: the start may have failed because the
		// caller's ended, and the held init must not stay behind.
		kctx, cancel := cleanupCtx()
		if kerr := rt.Kill(kctx, rec.ID, syscall.SIGKILL, true); kerr != nil {
			s.log.Warn("kill container whose start failed", "container", rec.ID, "error", kerr)
		}
		cancel()
		return nil, err // the runtime's start names the container
	}
	if recErr != nil {
		return nil, fmt.Errorf("start container %s: %w", rec.ID, recErr)
	}
	s.events.publish(c, runtime.ContainerEventType_CONTAINER_STARTED_EVENT)
	s.nriContainerEvent(ctx, c, (*nri.NRI).PostStartContainer)
	s.log.Info("container started", "container", rec.ID, "pod", rec.SandboxID)
	return &runtime.StartContainerResponse{}, nil
}

// recordStarted records a started container as running.
func (s *Service) recordStarted(ctx context.Context, c *container) error {
	if err := s.fault(ctx, "StartContainer", "started"); err != nil {
		return err
	}
	c.mu.Lock()
	if c.rec.State == containerCreated {
		c.rec.State = containerRunning
	}
	c.rec.StartedAt = time.Now().UnixNano()
	c.mu.Unlock()
	return s.saveContainer(c)
}

// stopSignal is the CRI's stop signal, else the image's, else SIGTERM.
func (s *Service) stopSignal(c *container) syscall.Signal {
	if sig := c.config.GetStopSignal(); sig != runtime.Signal_SIGNAL_RUNTIME_DEFAULT {
		if n := unix.SignalNum(strings.TrimPrefix(sig.String(), "SIGNAL_")); n != 0 {
			return n
		}
	}
	if img, err := s.images.Resolve(c.rec.ImageID); err == nil && img.Config.StopSignal != "" {
		v := strings.ToUpper(img.Config.StopSignal)
		if n, err := strconv.Atoi(v); err == nil {
			return syscall.Signal(n)
		}
		if !strings.HasPrefix(v, "SIG") {
			v = "SIG" + v
		}
		if n := unix.SignalNum(v); n != 0 {
			return n
		}
	}
	return syscall.SIGTERM
}

// StopContainer signals the container, waits up to timeout seconds, then
// kills it. Stopping a missing or exited container is not an error.
func (s *Service) StopContainer(ctx context.Context, req *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	c, err := s.getContainer(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtime.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.stopContainer(ctx, c, req.GetTimeout()); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

func (s *Service) stopContainer(ctx context.Context, c *container, timeout int64) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	rec := c.snapshot()
	if rec.State == containerInit {
		return nil
	}
	if rec.State == containerExited {
		// Exited, but its exit may still be being recorded (recordExit:
		// the record's write, the runtime's delete). A removal must not
		// run alongside: its runtime delete would race the exit's, and
		// its record's delete could come before the exit's write and be
		// undone by it, a removed container brought back at restart.
		select {
		case <-c.exited:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("stop container %s: it exited, and its exit is still being recorded (a slow store?): %w", rec.ID, ctx.Err())
		}
	}
	rt, err := s.runtimeFor(s.handlerOf(rec.SandboxID))
	if err != nil {
		return err
	}
	if err := c.waitExecd(ctx); err != nil {
		return fmt.Errorf("stop container: %w", err)
	}
	if timeout > 0 && rec.State == containerRunning {
		sig := s.stopSignal(c)
		if !s.signalDirect(c, rec, sig, false) {
			if err := rt.Kill(ctx, rec.ID, sig, false); err != nil {
				return fmt.Errorf("stop container %s: signal %v: %w", rec.ID, sig, err)
			}
		}
		select {
		case <-c.exited:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("stop container %s: %w", rec.ID, ctx.Err())
		case <-time.After(time.Duration(timeout) * time.Second):
			s.log.Info("container did not stop in time, killing", "container", rec.ID, "timeout", timeout)
		}
	}
	if err := s.fault(ctx, "StopContainer", "before-kill"); err != nil {
		return fmt.Errorf("stop container: %w", err)
	}
	if !s.signalDirect(c, rec, syscall.SIGKILL, true) {
		if err := rt.Kill(ctx, rec.ID, syscall.SIGKILL, true); err != nil {
			return fmt.Errorf("stop container %s: kill: %w", rec.ID, err)
		}
	}
	select {
	case <-c.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop container %s: %w", rec.ID, ctx.Err())
	case <-time.After(30 * time.Second):
		return fmt.Errorf("stop container %s: still running 30s after SIGKILL: %w", rec.ID, errdefs.ErrUnavailable)
	}
}

// RemoveContainer removes a container, killing it first. Idempotent. The
// log file stays: it belongs to kubelet.
func (s *Service) RemoveContainer(ctx context.Context, req *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	c, err := s.getContainer(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtime.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.removeContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

func (s *Service) removeContainer(ctx context.Context, c *container) error {
	if err := s.stopContainer(ctx, c, 0); err != nil {
		return fmt.Errorf("remove container: %w", err)
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	tm := newStepTimer()
	rec := c.snapshot()
	dir, bundle := s.containerDir(rec.ID), s.containerBundle(rec.ID)
	c.mu.RLock()
	deleted := c.runtimeDeleted
	c.mu.RUnlock()
	if rt, err := s.runtimeFor(s.handlerOf(rec.SandboxID)); err == nil && !deleted {
		// Stopped above: the plain delete is the fast one.
		if err := rt.DeleteExited(ctx, rec.ID); err != nil {
			return fmt.Errorf("remove container %s: %w", rec.ID, err)
		}
		tm.mark("runtime delete")
	}
	if err := s.fault(ctx, "RemoveContainer", "runtime-deleted"); err != nil {
		return fmt.Errorf("remove container: %w", err)
	}
	// Unmount here; the writable layer's files go with dir, to the trash.
	if err := s.images.ReleaseRootfs(ctx, "", filepath.Join(bundle, "rootfs")); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	tm.mark("rootfs")
	// Before the bundle is removed: RemoveAll must not walk into a mount.
	if err := s.releaseImageVolumes(ctx, rec.ID); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	if err := s.fault(ctx, "RemoveContainer", "rootfs-released"); err != nil {
		return fmt.Errorf("remove container: %w", err)
	}
	// The bundle (state, small) goes now; the container dir with its
	// writable layer goes to the trash.
	if err := os.RemoveAll(bundle); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	if err := s.trash.discard(dir); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	tm.mark("dirs")
	if err := s.fault(ctx, "RemoveContainer", "files-removed"); err != nil {
		return fmt.Errorf("remove container: %w", err)
	}
	if err := s.st.Delete(store.BucketContainers, rec.ID); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	tm.mark("record")
	tm.log(s.log.With("container", rec.ID), "remove container timings")
	s.mu.Lock()
	delete(s.containers, rec.ID)
	s.mu.Unlock()
	s.releaseName(rec.Name, rec.ID)
	s.events.publish(c, runtime.ContainerEventType_CONTAINER_DELETED_EVENT)
	s.nriContainerEvent(ctx, c, (*nri.NRI).RemoveContainer)
	s.log.Info("container removed", "container", rec.ID)
	return nil
}

func containerState(st string) runtime.ContainerState {
	switch st {
	case containerCreated:
		return runtime.ContainerState_CONTAINER_CREATED
	case containerRunning:
		return runtime.ContainerState_CONTAINER_RUNNING
	case containerExited:
		return runtime.ContainerState_CONTAINER_EXITED
	}
	return runtime.ContainerState_CONTAINER_UNKNOWN
}

// ContainerStatus reports one container.
func (s *Service) ContainerStatus(ctx context.Context, req *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	c, err := s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st := s.containerStatus(c)
	resp := &runtime.ContainerStatusResponse{Status: st}
	if req.GetVerbose() {
		rec := c.snapshot()
		info := map[string]any{
			"pid": rec.PID, "monitorPid": rec.MonitorPID, "sandboxID": rec.SandboxID,
			"cgroupsPath": rec.CgroupsPath, "config": c.config,
		}
		if spec, err := readSpec(s.containerBundle(rec.ID)); err == nil {
			info["runtimeSpec"] = spec
		}
		b, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func (s *Service) containerStatus(c *container) *runtime.ContainerStatus {
	rec := c.snapshot()
	cfg := c.config
	st := &runtime.ContainerStatus{
		Id: rec.ID, Metadata: cfg.GetMetadata(), State: containerState(rec.State),
		CreatedAt: rec.CreatedAt, StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt,
		Image: statusImage(cfg.GetImage()), ImageRef: rec.ImageRef, ImageId: rec.ImageID,
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), Mounts: statusMounts(cfg.GetMounts(), rec.ImageVolumes), LogPath: rec.LogPath,
		StopSignal: cfg.GetStopSignal(),
	}
	if rec.State == containerExited {
		st.ExitCode, st.Reason, st.Message = rec.ExitCode, rec.Reason, rec.Message
	}
	res := cfg.GetLinux().GetResources()
	if len(rec.Resources) > 0 {
		var r runtime.LinuxContainerResources
		if proto.Unmarshal(rec.Resources, &r) == nil {
			res = &r
		}
	}
	if res != nil {
		st.Resources = &runtime.ContainerResources{Linux: res}
	}
	if proc, err := s.containerProcess(c); err == nil {
		u := &runtime.LinuxContainerUser{Uid: int64(proc.User.UID), Gid: int64(proc.User.GID)}
		for _, g := range proc.User.AdditionalGids {
			u.SupplementalGroups = append(u.SupplementalGroups, int64(g))
		}
		st.User = &runtime.ContainerUser{Linux: u}
	}
	return st
}

// ListContainers lists containers matching the filter from memory.
func (s *Service) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	f := req.GetFilter()
	s.mu.RLock()
	all := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		all = append(all, c)
	}
	s.mu.RUnlock()
	out := make([]*runtime.Container, 0, len(all))
	for _, c := range all {
		rec := c.snapshot()
		if rec.State == containerInit {
			continue
		}
		state := containerState(rec.State)
		if f != nil {
			if f.Id != "" && !hasPrefix(rec.ID, f.Id) {
				continue
			}
			if f.PodSandboxId != "" && !hasPrefix(rec.SandboxID, f.PodSandboxId) {
				continue
			}
			if f.State != nil && f.State.State != state {
				continue
			}
			if !matchLabels(c.config.GetLabels(), f.LabelSelector) {
				continue
			}
		}
		out = append(out, &runtime.Container{
			Id: rec.ID, PodSandboxId: rec.SandboxID, Metadata: c.config.GetMetadata(), Image: statusImage(c.config.GetImage()),
			ImageRef: rec.ImageRef, ImageId: rec.ImageID, State: state, CreatedAt: rec.CreatedAt,
			Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations(),
		})
	}
	return &runtime.ListContainersResponse{Containers: out}, nil
}

// UpdateContainerResources applies new limits to a running container and
// persists them.
func (s *Service) UpdateContainerResources(ctx context.Context, req *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	c, err := s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if req.GetLinux() == nil {
		return &runtime.UpdateContainerResourcesResponse{}, nil
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	rec := c.snapshot()
	if rec.State == containerExited {
		return nil, fmt.Errorf("update container %s: container has exited: %w", rec.ID, errdefs.ErrFailedPrecondition)
	}
	rt, err := s.runtimeFor(s.handlerOf(rec.SandboxID))
	if err != nil {
		return nil, err
	}
	res, err := s.nriUpdateResources(ctx, c, oci.ResourcesFromCRI(req.Linux, s.minOOM))
	if err != nil {
		return nil, fmt.Errorf("update container %s: %w", rec.ID, err)
	}
	if err := rt.Update(ctx, rec.ID, res); err != nil {
		return nil, err // names the container already
	}
	b, err := proto.Marshal(req.Linux)
	if err != nil {
		return nil, fmt.Errorf("update container %s: %w", rec.ID, err)
	}
	c.mu.Lock()
	c.rec.Resources = b
	c.mu.Unlock()
	if err := s.saveContainer(c); err != nil {
		return nil, fmt.Errorf("update container %s: %w", rec.ID, err)
	}
	s.nriContainerEvent(ctx, c, (*nri.NRI).PostUpdateContainer)
	return &runtime.UpdateContainerResourcesResponse{}, nil
}

// ReopenContainerLog asks the container's monitor to reopen its log file.
func (s *Service) ReopenContainerLog(ctx context.Context, req *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	c, err := s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	rec := c.snapshot()
	if rec.State != containerRunning {
		return nil, fmt.Errorf("reopen log of container %s: container is not running: %w", rec.ID, errdefs.ErrFailedPrecondition)
	}
	if err := monitor.ReopenLog(ctx, s.containerBundle(rec.ID)); err != nil {
		return nil, fmt.Errorf("reopen log of container %s: %w", rec.ID, err)
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}

// containerProcess returns the container's OCI process spec, cached.
func (s *Service) containerProcess(c *container) (*specs.Process, error) {
	spec, err := s.containerSpec(c)
	if err != nil {
		return nil, err
	}
	return spec.Process, nil
}

// containerSpec returns the container's OCI spec, read once from its bundle.
func (s *Service) containerSpec(c *container) (*specs.Spec, error) {
	c.mu.RLock()
	sp := c.spec
	c.mu.RUnlock()
	if sp != nil {
		return sp, nil
	}
	spec, err := readSpec(s.containerBundle(c.rec.ID))
	if err != nil {
		return nil, fmt.Errorf("read spec of container %s: %w", c.rec.ID, err)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("spec of container %s has no process", c.rec.ID)
	}
	c.mu.Lock()
	c.spec = spec
	c.mu.Unlock()
	return spec, nil
}
