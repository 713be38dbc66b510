package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/cgroups"
	"github.com/crid-dev/crid/internal/diskfull"
	"github.com/crid-dev/crid/internal/image"
	"github.com/crid-dev/crid/internal/monitor"
	"github.com/crid-dev/crid/internal/network"
	"github.com/crid-dev/crid/internal/nri"
	"github.com/crid-dev/crid/internal/oci"
	"github.com/crid-dev/crid/internal/pidfd"
	"github.com/crid-dev/crid/internal/runc"
	"github.com/crid-dev/crid/internal/store"
	"github.com/crid-dev/crid/internal/tracing"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Sandbox states as persisted.
const (
	sandboxInit     = "init"     // being created; torn down if found at recovery
	sandboxReady    = "ready"    // pause running
	sandboxNotReady = "notready" // stopped
)

// sandboxRecord is the persisted state of a sandbox.
type sandboxRecord struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"` // reserved name
	Config        []byte   `json:"config"`
	Handler       string   `json:"handler"`
	State         string   `json:"state"`
	CreatedAt     int64    `json:"createdAt"`
	NetNSPath     string   `json:"netns,omitempty"`
	NetworkSetUp  bool     `json:"networkSetUp,omitempty"`
	IP            string   `json:"ip,omitempty"`
	AdditionalIPs []string `json:"additionalIPs,omitempty"`
	PID           int      `json:"pid,omitempty"`
	PIDStart      uint64   `json:"pidStart,omitempty"` // /proc/<pid>/stat start time: tells the pause from a pid reuse
	MonitorPID    int      `json:"monitorPid,omitempty"`
	ImageID       string   `json:"imageId"`
	CgroupsPath   string   `json:"cgroupsPath"`
	ShmMounted    bool     `json:"shmMounted,omitempty"`
	// Pinned: no pause; the IPC and UTS namespaces are pinned at these
	// paths ("" = the host's). See podns.go.
	Pinned    bool   `json:"pinned,omitempty"`
	IPCNSPath string `json:"ipcns,omitempty"`
	UTSNSPath string `json:"utsns,omitempty"`
}

type sandbox struct {
	opMu sync.Mutex // serialises lifecycle operations

	mu  sync.RWMutex // guards rec fields read by status/list
	rec sandboxRecord
	// config is replaced whole (never modified) when kubelet resizes the
	// pod: readers take it once and keep a consistent one.
	config atomic.Pointer[runtime.PodSandboxConfig]
	exited chan struct{} // closed when the pause process exits (never for a pinned pod)
	// creates are the pod's creates in flight, its own run included, and
	// closing says a stop has begun: no create starts then (podcreates.go).
	// Both guarded by mu.
	creates map[*podCreate]struct{}
	closing bool
}

// newSandbox returns a sandbox holding rec and cfg.
func newSandbox(rec sandboxRecord, cfg *runtime.PodSandboxConfig) *sandbox {
	sb := &sandbox{rec: rec, exited: make(chan struct{})}
	sb.config.Store(cfg)
	return sb
}

// cfg is the sandbox's current config.
func (sb *sandbox) cfg() *runtime.PodSandboxConfig { return sb.config.Load() }

func (sb *sandbox) snapshot() sandboxRecord {
	sb.mu.RLock()
	defer sb.mu.RUnlock()
	return sb.rec
}

func (s *Service) sandboxDir(id string) string    { return filepath.Join(s.cfg.Root, "sandboxes", id) }
func (s *Service) sandboxBundle(id string) string { return filepath.Join(s.cfg.State, "sandboxes", id) }

func (s *Service) saveSandbox(sb *sandbox) error {
	rec := sb.snapshot()
	return s.st.Put(store.BucketSandboxes, rec.ID, rec)
}

// getSandbox finds a sandbox by full id or unique prefix.
func (s *Service) getSandbox(id string) (*sandbox, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return lookupID(s.sandboxes, id, "pod sandbox")
}

// isCurrent is whether sb is still the service's sandbox of its id: not
// removed, nor rolled back by its own run.
func (s *Service) isCurrent(sb *sandbox) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sandboxes[sb.rec.ID] == sb
}

func sandboxName(m *runtime.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

func hostNetwork(c *runtime.PodSandboxConfig) bool {
	return c.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
}

func hostIPC(c *runtime.PodSandboxConfig) bool {
	return c.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtime.NamespaceMode_NODE
}

func validateSandboxConfig(c *runtime.PodSandboxConfig) error {
	if err := validateSandboxConfigMeta(c); err != nil {
		return err
	}
	if err := oci.ValidatePodUserNamespace(c); err != nil {
		return fmt.Errorf("pod sandbox config: %w", err)
	}
	for i, pm := range c.GetPortMappings() {
		if pm.HostIp != "" && net.ParseIP(pm.HostIp) == nil {
			return fmt.Errorf("pod sandbox config: port_mappings[%d].host_ip %q is not an IP address: %w", i, pm.HostIp, errdefs.ErrInvalidArgument)
		}
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			return fmt.Errorf("pod sandbox config: port_mappings[%d]: ports must be within 1-65535 (container %d, host %d): %w", i, pm.ContainerPort, pm.HostPort, errdefs.ErrInvalidArgument)
		}
	}
	return validateSandboxSecurity(c)
}

func validateSandboxConfigMeta(c *runtime.PodSandboxConfig) error {
	if c == nil {
		return fmt.Errorf("pod sandbox config is required: %w", errdefs.ErrInvalidArgument)
	}
	m := c.GetMetadata()
	if m == nil {
		return fmt.Errorf("pod sandbox config: metadata is required: %w", errdefs.ErrInvalidArgument)
	}
	if m.Name == "" || m.Namespace == "" || m.Uid == "" {
		return fmt.Errorf("pod sandbox metadata: name, namespace and uid are required (got name=%q namespace=%q uid=%q): %w",
			m.Name, m.Namespace, m.Uid, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ensureImage returns the stored image for ref, pulling it if absent.
func (s *Service) ensureImage(ctx context.Context, ref string) (*image.Image, error) {
	img, err := s.images.Resolve(ref)
	if err == nil {
		return img, nil
	}
	if !errdefs.IsNotFound(err) {
		return nil, err
	}
	return s.images.Pull(ctx, ref, nil)
}

// RunPodSandbox creates and starts a pod sandbox. On failure everything
// created so far is removed.
func (s *Service) RunPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	if err := validateSandboxConfig(req.GetConfig()); err != nil {
		return nil, err
	}
	name := sandboxName(req.Config.Metadata)
	exists := func(id string) bool { _, err := s.getSandbox(id); return err == nil }
	id, err := s.pending.run(ctx, s.ctx, &s.wg, "pod "+name, exists, func(ctx context.Context) (string, error) {
		return s.runPodSandbox(ctx, req)
	})
	if err != nil {
		return nil, stillRunning(ctx, "run pod sandbox "+name, err)
	}
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// runPodSandbox creates and starts the pod of a validated request.
func (s *Service) runPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (_ string, retErr error) {
	defer s.nriBlockSync()()
	cfg := req.GetConfig()
	rt, err := s.runtimeFor(req.GetRuntimeHandler())
	if err != nil {
		return "", err
	}
	userns := oci.PodUserNamespace(cfg)
	if userns != nil {
		if err := s.usernsSupported(ctx, rt); err != nil {
			return "", fmt.Errorf("run pod sandbox: %w", errUsernsUnsupported(err))
		}
	}
	tm := newStepTimer()
	id := newID()
	tracing.Annotate(ctx, tracing.PodID.String(id))
	log := s.log.With("pod", id, "name", cfg.Metadata.Name, "namespace", cfg.Metadata.Namespace)
	logIgnoredAppArmor(log, cfg.GetLinux().GetSecurityContext().GetApparmor(), "")
	podOpts, err := s.podAnnotationOptions(log, rt.Name, cfg)
	if err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	name := sandboxName(cfg.Metadata)
	// A stop or removal of the pod while it is made (it is listed from
	// its first record on) cancels the run and waits for its rollback
	// (podcreates.go): run.end comes after the rollback below.
	sb := newSandbox(sandboxRecord{ID: id}, cfg)
	ctx, run, err := sb.beginCreate(ctx, false)
	if err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	defer run.end(sb)
	if err := s.reserveName(name, id); err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	u := &undo{log: log}
	defer func() {
		if retErr != nil {
			u.run()
			retErr = run.explain("run pod sandbox "+name, id, retErr)
			// A full disk (pod files, writable layer, spec, record) is
			// answered with ResourceExhausted naming the filesystem.
			retErr = diskfull.Wrap(retErr, s.sandboxDir(id))
			log.Warn("pod sandbox rolled back", "error", retErr)
		}
	}()
	u.add(func(context.Context) error { s.releaseName(name, id); return nil })

	img, err := s.ensureImage(ctx, s.cfg.Images.SandboxImage)
	if err != nil {
		return "", fmt.Errorf("run pod sandbox: sandbox image %s: %w", s.cfg.Images.SandboxImage, err)
	}
	tm.mark("image")
	cfgBytes, err := proto.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	// The netns pin's path is fixed by the id, and with NetworkSetUp it
	// is in the first record, so the netns step writes none of its own (a
	// fsync fewer on the startup path): a crash before the pin or the CNI
	// ADD exists has recovery run a DEL with no netns, which the plugins
	// take for a pod never added, and remove a pin that is not there,
	// which is no error (cleanupSandbox).
	var nsPath string
	if !hostNetwork(cfg) {
		if err := s.net.Ready(); err != nil {
			return "", fmt.Errorf("run pod sandbox: network not ready: %w: %w", err, errdefs.ErrFailedPrecondition)
		}
		nsPath = s.net.NetNSPath(id)
	}
	sb.rec = sandboxRecord{
		ID: id, Name: name, Config: cfgBytes, Handler: rt.Name, State: sandboxInit,
		CreatedAt: time.Now().UnixNano(), ImageID: img.ID,
		CgroupsPath: oci.CgroupsPath(s.cfg.CgroupDriver, cfg.GetLinux().GetCgroupParent(), id),
		NetNSPath:   nsPath, NetworkSetUp: nsPath != "",
	}
	// The netns is pinned while the record is written (its fsync), unless
	// it must be made inside the pod's user namespace (below). A crash
	// before the record is committed leaves a pin no record names, which
	// recovery removes (sweepNetNS); one after it, a pin the record names.
	pinned := s.pinNetNSBeside(id, nsPath, userns)
	if pinned != nil {
		// Undone after the record (the undo runs in reverse): a crash in
		// between leaves a pin no record names, as above.
		u.add(func(context.Context) error {
			if pinned() != nil {
				return nil // CreateNetNS removed its own partial pin
			}
			return s.net.RemoveNetNS(nsPath)
		})
	}
	// Record first: a crash from here on is found and cleaned up at recovery.
	if err := s.saveSandbox(sb); err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	s.mu.Lock()
	s.sandboxes[id] = sb
	s.mu.Unlock()
	u.add(func(context.Context) error {
		s.mu.Lock()
		delete(s.sandboxes, id)
		s.mu.Unlock()
		return s.st.Delete(store.BucketSandboxes, id)
	})
	tm.mark("record init")
	if err := s.fault(ctx, "RunPodSandbox", "recorded"); err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}

	dir, bundle := s.sandboxDir(id), s.sandboxBundle(id)
	for _, d := range []string{dir, bundle} {
		if err := objectDir(d, userns); err != nil {
			return "", fmt.Errorf("run pod sandbox: %w", err)
		}
	}
	u.add(func(context.Context) error { return os.RemoveAll(dir) })
	u.add(func(context.Context) error { return os.RemoveAll(bundle) })
	// The files the pod's containers share are written once the CNI ADD
	// is under way (below), beside it; the ADD's own /etc/hosts (with the
	// pod's IP) waits for them.
	filesDone := make(chan struct{})
	closeFiles := sync.OnceFunc(func() { close(filesDone) })
	defer closeFiles()

	// The pod's own user namespace, if it has one, comes first: the
	// network namespace is made inside it (see userns.go). The helper
	// holding it lives until the pause has joined.
	var usernsHelper *usernsHelper
	if userns != nil {
		usernsHelper, err = newUsernsHelper(userns.GetUids()[0], userns.GetGids()[0], !hostNetwork(cfg))
		if err != nil {
			return "", fmt.Errorf("run pod sandbox: %w", err)
		}
		defer usernsHelper.close()
	}

	// The network namespace is created and pinned first; then CNI ADD runs
	// alongside the pod files and the pause's rootfs, spec and start (the
	// pause joins the namespace by path, so neither waits for the other).
	// Both are joined before the pod is declared ready.
	var (
		netDone = make(chan struct{})
		netRes  *network.Result
		netErr  error
		pod     network.Pod
	)
	netCtx, cancelNet := context.WithCancel(ctx)
	defer cancelNet()
	if hostNetwork(cfg) {
		close(netDone)
	} else {
		// The init record already names nsPath with NetworkSetUp (above):
		// should crid die during ADD, recovery runs DEL, which tolerates
		// a pod never added.
		if usernsHelper != nil {
			err = pinNS(usernsHelper.nsPath("net"), nsPath)
			if err == nil {
				u.add(func(context.Context) error { return s.net.RemoveNetNS(nsPath) })
			}
		} else {
			err = pinned() // its undo is registered with the record's
		}
		if err != nil {
			return "", fmt.Errorf("run pod sandbox: %w", err)
		}
		tm.mark("netns")
		if err := s.fault(ctx, "RunPodSandbox", "netns"); err != nil {
			return "", fmt.Errorf("run pod sandbox: %w", err)
		}
		pod = podNetwork(sb.snapshot(), cfg)
		go func() {
			defer close(netDone)
			begin := time.Now()
			// Setup undoes its own partial ADD on failure.
			netRes, netErr = s.net.Setup(netCtx, pod)
			<-filesDone
			if netErr == nil {
				// /etc/hosts names the pod's own IP. It is rewritten in
				// place, so a bind mount of it already made sees the change.
				netErr = writeHosts(dir, cfg, netRes.IP)
				if netErr != nil {
					netErr = fmt.Errorf("write hosts: %w", netErr)
				}
			}
			tm.since("cni", begin)
		}()
	}
	// joinNet waits for the network; on failure the pause path cancels
	// the ADD first. A successful ADD is undone by rollback.
	netJoined := false
	joinNet := func() error {
		if netJoined {
			return netErr
		}
		netJoined = true
		<-netDone
		if netRes != nil {
			u.add(func(ctx context.Context) error { return s.net.Teardown(ctx, pod) })
		}
		if netErr != nil {
			return fmt.Errorf("run pod sandbox: network setup: %w", netErr)
		}
		return nil
	}
	// On an early return the ADD is cancelled and joined here. This defer
	// runs before the rollback defer above (LIFO), so the Teardown that
	// joinNet registers still runs, first, before the netns is removed.
	defer func() {
		if !netJoined {
			cancelNet()
			closeFiles()
			_ = joinNet()
		}
	}()

	shmPath, err := s.podFiles(sb, dir, bundle, podOpts, u)
	closeFiles()
	if err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	tm.mark("files")
	if err := s.fault(ctx, "RunPodSandbox", "files"); err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}

	var pid pauseID
	if pinnedPod(cfg, userns) && !podOpts.ForcePause {
		// Alongside the CNI ADD too: the network namespace exists already.
		ns, err := pinPodNamespaces(podNamespacePins(s.pinDir(), id), cfg, sb.snapshot().NetNSPath)
		if err != nil {
			return "", fmt.Errorf("run pod sandbox: %w", err)
		}
		u.add(func(context.Context) error { return unpinPodNamespaces(ns) })
		sb.mu.Lock()
		sb.rec.Pinned, sb.rec.IPCNSPath, sb.rec.UTSNSPath = true, ns.ipc, ns.uts
		sb.mu.Unlock()
		tm.mark("pin namespaces")
	} else {
		pid, err = s.startPause(ctx, sb, rt, img, usernsHelper, userns, shmPath, tm, u)
		if err != nil {
			return "", err
		}
	}
	if err := joinNet(); err != nil {
		return "", err
	}
	if err := s.fault(ctx, "RunPodSandbox", "network"); err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	sb.mu.Lock()
	if netRes != nil {
		sb.rec.IP, sb.rec.AdditionalIPs = netRes.IP, netRes.AdditionalIPs
	}
	sb.rec.PID, sb.rec.PIDStart = pid.pid, pid.start
	sb.mu.Unlock()
	// NRI plugins see the pod before anyone else: while they handle it,
	// it is not listed and takes no containers.
	if err := s.nriRunPodSandbox(ctx, sb); err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	if err := s.fault(ctx, "RunPodSandbox", "before-ready"); err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	// Ready only if no stop has begun: one that has waits for this run,
	// and must find it rolled back rather than a pod it then has to stop.
	sb.mu.Lock()
	closing := sb.closing
	if !closing {
		sb.rec.State = sandboxReady
	}
	sb.mu.Unlock()
	if closing {
		return "", fmt.Errorf("run pod sandbox: %w", context.Cause(ctx))
	}
	if err := s.saveSandbox(sb); err != nil {
		return "", fmt.Errorf("run pod sandbox: %w", err)
	}
	tm.mark("record ready")
	if !sb.rec.Pinned {
		s.watchSandbox(sb, bundle)
	}
	tm.log(log, "run pod sandbox timings")
	log.Info("pod sandbox ready", "ip", sb.rec.IP)
	return id, nil
}

// pauseID is a started pause: pid and start time.
type pauseID struct {
	pid   int
	start uint64
}

// startPause mounts the pause's rootfs, writes its spec and runs it
// detached, registering the undo steps on u.
func (s *Service) startPause(ctx context.Context, sb *sandbox, rt *runc.Runtime, img *image.Image,
	uh *usernsHelper, userns *runtime.UserNamespace, shmPath string, tm *stepTimer, u *undo) (pauseID, error) {
	id, cfg := sb.rec.ID, sb.cfg()
	dir, bundle := s.sandboxDir(id), s.sandboxBundle(id)
	rootfs := filepath.Join(bundle, "rootfs")
	rwDir := filepath.Join(dir, "rw")
	if err := s.images.PrepareRootfs(ctx, img, rwDir, rootfs); err != nil {
		return pauseID{}, fmt.Errorf("run pod sandbox: rootfs: %w", err)
	}
	u.add(func(ctx context.Context) error { return s.images.ReleaseRootfs(ctx, rwDir, rootfs) })
	usernsPath := ""
	if uh != nil {
		usernsPath = uh.nsPath("user")
		if err := idmapRootfs(rootfs, usernsPath, userns.GetUids()[0].GetHostId(), userns.GetGids()[0].GetHostId()); err != nil {
			return pauseID{}, fmt.Errorf("run pod sandbox: %w", err)
		}
	}
	tm.mark("rootfs")
	rec := sb.snapshot()
	specCtx, endSpec := tracing.Open(ctx, "oci.spec", tracing.SpecKind.String("sandbox"), tracing.PodID.String(id))
	spec, err := oci.SandboxSpec(oci.SandboxParams{
		ID: id, Config: cfg, Image: img.Config, RootfsPath: rootfs, NetNSPath: rec.NetNSPath,
		ResolvConfPath: filepath.Join(dir, "resolv.conf"), HostsPath: filepath.Join(dir, "hosts"),
		HostnamePath: filepath.Join(dir, "hostname"), ShmPath: shmPath,
		CgroupsPath: rec.CgroupsPath, MinOOMScoreAdj: s.minOOM, UsernsPath: usernsPath,
	})
	if err != nil {
		endSpec(err)
		return pauseID{}, fmt.Errorf("run pod sandbox: %w", err)
	}
	s.restrictSandboxAnnotations(s.log.With("pod", id), spec, rt.Name, cfg)
	if err := s.ensureAppArmor(ctx, spec); err != nil {
		endSpec(err)
		return pauseID{}, fmt.Errorf("run pod sandbox: %w", err)
	}
	spec.Version = s.specVersion(specCtx, rt)
	if err := writeSpec(bundle, spec); err != nil {
		endSpec(err)
		return pauseID{}, fmt.Errorf("run pod sandbox: %w", err)
	}
	endSpec(nil)
	tm.mark("spec")
	// A failed or interrupted run may still have left a container behind.
	var started pauseID // once the pause runs
	u.add(func(ctx context.Context) error {
		_ = rt.Kill(ctx, id, syscall.SIGKILL, true)
		err := rt.Delete(ctx, id, true)
		_ = cgroups.Remove(rec.CgroupsPath)
		return errors.Join(err, reapKilledPause(ctx, started))
	})
	pid, err := rt.Run(ctx, id, bundle, filepath.Join(bundle, "pause.pid"), filepath.Join(bundle, "runtime.log"))
	if err != nil {
		return pauseID{}, fmt.Errorf("run pod sandbox: start pause container: %w", err)
	}
	start, err := pidfd.StartTime(pid)
	if err != nil {
		return pauseID{}, fmt.Errorf("run pod sandbox: pause container process %d: %w", pid, err)
	}
	started = pauseID{pid: pid, start: start}
	tm.mark("runc run")
	return started, nil
}

// killedPauseReapTimeout bounds the wait for a pause the rollback killed.
const killedPauseReapTimeout = 5 * time.Second

// reapKilledPause reaps the pause of a rolled-back pod once it has died:
// crid adopted it when runc exited (subreaper) and no watcher was started
// for it, so it would stay a zombie until reapStrays' second sweep.
func reapKilledPause(ctx context.Context, p pauseID) error {
	if p.pid == 0 {
		return nil
	}
	f, err := openPause(p.pid, p.start)
	if err != nil || f == nil {
		return err // gone already, or never ours
	}
	ctx, cancel := context.WithTimeout(ctx, killedPauseReapTimeout)
	defer cancel()
	if err := waitPidfd(ctx, f); err != nil {
		return fmt.Errorf("reap pause %d: %w", p.pid, err)
	}
	return nil
}

// watchSandbox waits in the background for the pause process to exit.
// Pauses run under a monitor (sandboxes made by an earlier crid) are
// waited for through it; the others through a pidfd.
func (s *Service) watchSandbox(sb *sandbox, stateDir string) {
	rec := sb.snapshot()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var err error
		if rec.MonitorPID != 0 {
			_, err = monitor.Wait(s.ctx, stateDir)
		} else {
			var f *os.File
			f, err = openPause(rec.PID, rec.PIDStart)
			if f != nil {
				err = waitPidfd(s.ctx, f)
			}
		}
		if err != nil && s.ctx.Err() != nil {
			return // crid is shutting down; the pause keeps running
		}
		if err != nil {
			s.log.Warn("wait for pause container", "pod", rec.ID, "error", err)
		}
		close(sb.exited)
	}()
}

func podNetwork(rec sandboxRecord, cfg *runtime.PodSandboxConfig) network.Pod {
	return network.Pod{
		ID: rec.ID, Name: cfg.GetMetadata().GetName(), Namespace: cfg.GetMetadata().GetNamespace(),
		UID: cfg.GetMetadata().GetUid(), NetNSPath: rec.NetNSPath, PortMappings: cfg.GetPortMappings(),
		CgroupParent: cfg.GetLinux().GetCgroupParent(),
	}
}

// StopPodSandbox stops every container of the pod and the pause, and tears
// the network down. Idempotent; a missing sandbox is not an error.
func (s *Service) StopPodSandbox(ctx context.Context, req *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	sb, err := s.getSandbox(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtime.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

func (s *Service) stopSandbox(ctx context.Context, sb *sandbox) error {
	id := sb.rec.ID
	// Creates in the pod still running (they outlive their callers) end
	// first, finished or rolled back: then the containers listed below
	// are all the pod has, and none is made after the stop.
	if err := sb.closeCreates(ctx); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", id, err)
	}
	if !s.isCurrent(sb) {
		return nil // its own run rolled it back: nothing is left of it
	}
	for _, c := range s.containersOf(id) {
		if err := s.stopContainer(ctx, c, 0); err != nil {
			return fmt.Errorf("stop pod sandbox %s: %w", id, err)
		}
	}
	if err := s.fault(ctx, "StopPodSandbox", "containers-stopped"); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", id, err)
	}
	sb.opMu.Lock()
	defer sb.opMu.Unlock()
	rec := sb.snapshot()
	rt, err := s.runtimeFor(rec.Handler)
	if err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", id, err)
	}
	if rec.PID != 0 {
		select {
		case <-sb.exited:
		default:
			if err := rt.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
				return fmt.Errorf("stop pod sandbox %s: kill pause: %w", id, err)
			}
			select {
			case <-sb.exited:
			case <-ctx.Done():
				return fmt.Errorf("stop pod sandbox %s: wait for pause: %w", id, ctx.Err())
			case <-time.After(30 * time.Second):
				return fmt.Errorf("stop pod sandbox %s: pause did not exit after SIGKILL: %w", id, errdefs.ErrUnavailable)
			}
		}
		if err := rt.DeleteExited(ctx, id); err != nil {
			return fmt.Errorf("stop pod sandbox %s: %w", id, err)
		}
		_ = cgroups.Remove(rec.CgroupsPath)
	}
	if err := s.fault(ctx, "StopPodSandbox", "pause-stopped"); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", id, err)
	}
	if rec.Pinned {
		if err := unpinPodNamespaces(podNamespaces{ipc: rec.IPCNSPath, uts: rec.UTSNSPath}); err != nil {
			return fmt.Errorf("stop pod sandbox %s: %w", id, err)
		}
	}
	if rec.NetworkSetUp {
		if err := s.net.Teardown(ctx, podNetwork(rec, sb.cfg())); err != nil {
			return fmt.Errorf("stop pod sandbox %s: %w", id, err)
		}
	}
	if err := s.fault(ctx, "StopPodSandbox", "network-removed"); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", id, err)
	}
	if rec.NetNSPath != "" {
		if err := s.net.RemoveNetNS(rec.NetNSPath); err != nil {
			return fmt.Errorf("stop pod sandbox %s: %w", id, err)
		}
	}
	sb.mu.Lock()
	sb.rec.NetworkSetUp = false
	sb.rec.NetNSPath = ""
	sb.rec.IPCNSPath, sb.rec.UTSNSPath = "", ""
	sb.rec.State = sandboxNotReady
	sb.mu.Unlock()
	if err := s.saveSandbox(sb); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", id, err)
	}
	if rec.State == sandboxReady {
		s.nriPodEvent(ctx, sb, (*nri.NRI).StopPodSandbox)
	}
	s.log.Info("pod sandbox stopped", "pod", id)
	return nil
}

// RemovePodSandbox removes the sandbox and all its containers, stopping
// them first. Idempotent.
func (s *Service) RemovePodSandbox(ctx context.Context, req *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	sb, err := s.getSandbox(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtime.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.removeSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtime.RemovePodSandboxResponse{}, nil
}

func (s *Service) removeSandbox(ctx context.Context, sb *sandbox) error {
	id := sb.rec.ID
	if err := s.stopSandbox(ctx, sb); err != nil {
		return fmt.Errorf("remove pod sandbox: %w", err)
	}
	if !s.isCurrent(sb) {
		return nil // rolled back by its own run, cancelled by the stop
	}
	for _, c := range s.containersOf(id) {
		if err := s.removeContainer(ctx, c); err != nil {
			return fmt.Errorf("remove pod sandbox %s: %w", id, err)
		}
	}
	if err := s.fault(ctx, "RemovePodSandbox", "containers-removed"); err != nil {
		return fmt.Errorf("remove pod sandbox %s: %w", id, err)
	}
	sb.opMu.Lock()
	defer sb.opMu.Unlock()
	rec := sb.snapshot()
	dir, bundle := s.sandboxDir(id), s.sandboxBundle(id)
	if err := s.images.ReleaseRootfs(ctx, filepath.Join(dir, "rw"), filepath.Join(bundle, "rootfs")); err != nil {
		return fmt.Errorf("remove pod sandbox %s: %w", id, err)
	}
	if rec.ShmMounted {
		if err := unmount(filepath.Join(bundle, "shm")); err != nil {
			return fmt.Errorf("remove pod sandbox %s: %w", id, err)
		}
	}
	if err := s.fault(ctx, "RemovePodSandbox", "rootfs-released"); err != nil {
		return fmt.Errorf("remove pod sandbox %s: %w", id, err)
	}
	for _, d := range []string{bundle, dir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove pod sandbox %s: %w", id, err)
		}
	}
	if err := s.fault(ctx, "RemovePodSandbox", "files-removed"); err != nil {
		return fmt.Errorf("remove pod sandbox %s: %w", id, err)
	}
	if err := s.st.Delete(store.BucketSandboxes, id); err != nil {
		return fmt.Errorf("remove pod sandbox %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.sandboxes, id)
	s.mu.Unlock()
	s.releaseName(rec.Name, id)
	s.nriPodEvent(ctx, sb, (*nri.NRI).RemovePodSandbox)
	s.log.Info("pod sandbox removed", "pod", id)
	return nil
}

func sandboxState(rec sandboxRecord) runtime.PodSandboxState {
	if rec.State == sandboxReady {
		return runtime.PodSandboxState_SANDBOX_READY
	}
	return runtime.PodSandboxState_SANDBOX_NOTREADY
}

// PodSandboxStatus reports a sandbox's state, network and (verbose) details.
func (s *Service) PodSandboxStatus(ctx context.Context, req *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	sb, err := s.getSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	rec := sb.snapshot()
	select {
	case <-sb.exited:
		rec.State = sandboxNotReady // pause died: the pod must be recreated
	default:
	}
	cfg := sb.cfg()
	st := &runtime.PodSandboxStatus{
		Id: rec.ID, Metadata: cfg.GetMetadata(), State: sandboxState(rec), CreatedAt: rec.CreatedAt,
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: rec.Handler,
		Network: &runtime.PodSandboxNetworkStatus{Ip: rec.IP},
		Linux: &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{
			Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	for _, ip := range rec.AdditionalIPs {
		st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
	}
	resp := &runtime.PodSandboxStatusResponse{Status: st, Timestamp: time.Now().UnixNano()}
	if req.GetVerbose() {
		info := map[string]any{
			"pid": rec.PID, "monitorPid": rec.MonitorPID, "netns": rec.NetNSPath, "image": rec.ImageID,
			"runtimeHandler": rec.Handler, "cgroupsPath": rec.CgroupsPath, "config": cfg,
		}
		if spec, err := readSpec(s.sandboxBundle(rec.ID)); err == nil {
			info["runtimeSpec"] = spec
		}
		b, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// ListPodSandbox lists sandboxes matching the filter. It reads memory only.
func (s *Service) ListPodSandbox(ctx context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	f := req.GetFilter()
	s.mu.RLock()
	all := make([]*sandbox, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		all = append(all, sb)
	}
	s.mu.RUnlock()
	out := make([]*runtime.PodSandbox, 0, len(all))
	for _, sb := range all {
		rec, cfg := sb.snapshot(), sb.cfg()
		if rec.State == sandboxInit {
			continue
		}
		select {
		case <-sb.exited:
			rec.State = sandboxNotReady
		default:
		}
		if f != nil {
			if f.Id != "" && !hasPrefix(rec.ID, f.Id) {
				continue
			}
			if f.State != nil && f.State.State != sandboxState(rec) {
				continue
			}
			if !matchLabels(cfg.GetLabels(), f.LabelSelector) {
				continue
			}
		}
		out = append(out, &runtime.PodSandbox{
			Id: rec.ID, Metadata: cfg.GetMetadata(), State: sandboxState(rec), CreatedAt: rec.CreatedAt,
			Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: rec.Handler,
		})
	}
	return &runtime.ListPodSandboxResponse{Items: out}, nil
}

// SandboxNetNS is the network namespace path of a ready sandbox ("" for host network).
func (s *Service) SandboxNetNS(ctx context.Context, sandboxID string) (string, error) {
	sb, err := s.getSandbox(sandboxID)
	if err != nil {
		return "", err
	}
	rec := sb.snapshot()
	if rec.State != sandboxReady {
		return "", fmt.Errorf("pod sandbox %s is not ready: %w", rec.ID, errdefs.ErrFailedPrecondition)
	}
	return rec.NetNSPath, nil
}

func hasPrefix(s, p string) bool { return len(p) <= len(s) && s[:len(p)] == p }

func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func unmount(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}

// podFiles writes the files the pod's containers share (hosts,
// resolv.conf, hostname in dir) and mounts its /dev/shm (in bundle, unless
// the pod shares the host's IPC); it returns the /dev/shm to give the
// containers. What it made is undone through u.
func (s *Service) podFiles(sb *sandbox, dir, bundle string, podOpts oci.PodOptions, u *undo) (string, error) {
	cfg := sb.cfg()
	if err := writePodFiles(dir, cfg); err != nil {
		return "", err
	}
	if hostIPC(cfg) {
		return "/dev/shm", nil
	}
	shmPath := filepath.Join(bundle, "shm")
	if err := os.MkdirAll(shmPath, 0o700); err != nil {
		return "", err
	}
	if err := unix.Mount("shm", shmPath, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, podOpts.ShmMountOptions()); err != nil {
		return "", fmt.Errorf("mount /dev/shm: %w", err)
	}
	sb.mu.Lock()
	sb.rec.ShmMounted = true
	sb.mu.Unlock()
	u.add(func(context.Context) error { return unmount(shmPath) })
	return shmPath, nil
}

// pinNetNSBeside starts pinning pod id's network namespace at nsPath in a
// goroutine, for the caller to do its own work meanwhile, and returns the
// join: it waits for the pin and returns its error (the same on every
// call). It returns nil, and starts nothing, for a pod without a netns of
// its own (nsPath empty) or one in its own user namespace, whose netns is
// made inside that namespace.
func (s *Service) pinNetNSBeside(id, nsPath string, userns *runtime.UserNamespace) func() error {
	if nsPath == "" || userns != nil {
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.net.CreateNetNS(id)
		errc <- err
	}()
	return sync.OnceValue(func() error { return <-errc })
}
