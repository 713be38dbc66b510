package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeCRI is an in-memory CRI runtime. Hooks let a test interrupt a run in
// the middle of a call the way a real runtime would experience it: the
// object is created, but the reply never reaches the client.
type fakeCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	mu         sync.Mutex
	seq        int
	pods       map[string]map[string]string // id -> labels
	containers map[string]fakeCtr
	images     map[string]bool
	calls      map[string]int

	// onCall, if set, runs after an object is created by method; when it
	// returns true the call blocks until the client gives up.
	onCall func(method string, n int) bool
}

type fakeCtr struct {
	pod    string
	labels map[string]string
}

func newFakeCRI() *fakeCRI {
	return &fakeCRI{pods: map[string]map[string]string{}, containers: map[string]fakeCtr{}, images: map[string]bool{}, calls: map[string]int{}}
}

func (f *fakeCRI) hook(ctx context.Context, method string) error {
	f.mu.Lock()
	f.calls[method]++
	n := f.calls[method]
	hook := f.onCall
	f.mu.Unlock()
	if hook != nil && hook(method, n) {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	return nil
}

func (f *fakeCRI) newID(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s%04d", prefix, f.seq)
}

func matches(labels, sel map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func notFound(kind, id string) error {
	return status.Errorf(codes.NotFound, "%s %s not found", kind, id)
}

func (f *fakeCRI) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "fake", RuntimeVersion: "0"}, nil
}

func (f *fakeCRI) RunPodSandbox(ctx context.Context, r *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	f.mu.Lock()
	id := f.newID("pod")
	f.pods[id] = r.GetConfig().GetLabels()
	f.mu.Unlock()
	if err := f.hook(ctx, "RunPodSandbox"); err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (f *fakeCRI) CreateContainer(ctx context.Context, r *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	f.mu.Lock()
	if _, ok := f.pods[r.GetPodSandboxId()]; !ok {
		f.mu.Unlock()
		return nil, notFound("pod", r.GetPodSandboxId())
	}
	id := f.newID("ctr")
	f.containers[id] = fakeCtr{pod: r.GetPodSandboxId(), labels: r.GetConfig().GetLabels()}
	f.mu.Unlock()
	if err := f.hook(ctx, "CreateContainer"); err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

func (f *fakeCRI) existsCtr(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.containers[id]; !ok {
		return notFound("container", id)
	}
	return nil
}

func (f *fakeCRI) StartContainer(ctx context.Context, r *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if err := f.existsCtr(r.GetContainerId()); err != nil {
		return nil, err
	}
	if err := f.hook(ctx, "StartContainer"); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

func (f *fakeCRI) StopContainer(ctx context.Context, r *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if err := f.existsCtr(r.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

func (f *fakeCRI) RemoveContainer(ctx context.Context, r *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	f.mu.Lock()
	delete(f.containers, r.GetContainerId()) // idempotent, like CRI
	f.mu.Unlock()
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (f *fakeCRI) StopPodSandbox(ctx context.Context, r *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pods[r.GetPodSandboxId()]; !ok {
		return nil, notFound("pod", r.GetPodSandboxId())
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (f *fakeCRI) RemovePodSandbox(ctx context.Context, r *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, r.GetPodSandboxId())
	for id, c := range f.containers {
		if c.pod == r.GetPodSandboxId() {
			delete(f.containers, id)
		}
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (f *fakeCRI) ListPodSandbox(ctx context.Context, r *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for id, l := range f.pods {
		if matches(l, r.GetFilter().GetLabelSelector()) {
			out = append(out, &runtimeapi.PodSandbox{Id: id, Labels: l})
		}
	}
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

func (f *fakeCRI) ListContainers(ctx context.Context, r *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.Container
	for id, c := range f.containers {
		if matches(c.labels, r.GetFilter().GetLabelSelector()) {
			out = append(out, &runtimeapi.Container{Id: id, PodSandboxId: c.pod, Labels: c.labels})
		}
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

func (f *fakeCRI) ContainerStatus(ctx context.Context, r *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if err := f.existsCtr(r.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{Id: r.GetContainerId()}}, nil
}

func (f *fakeCRI) ListContainerStats(context.Context, *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{}, nil
}

func (f *fakeCRI) ExecSync(ctx context.Context, r *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if err := f.existsCtr(r.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{}, nil
}

func (f *fakeCRI) ImageStatus(ctx context.Context, r *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.images[r.GetImage().GetImage()] {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: r.GetImage().GetImage()}}, nil
}

func (f *fakeCRI) PullImage(ctx context.Context, r *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	f.mu.Lock()
	f.images[r.GetImage().GetImage()] = true
	f.mu.Unlock()
	return &runtimeapi.PullImageResponse{ImageRef: r.GetImage().GetImage()}, nil
}

func (f *fakeCRI) RemoveImage(ctx context.Context, r *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	f.mu.Lock()
	delete(f.images, r.GetImage().GetImage())
	f.mu.Unlock()
	return &runtimeapi.RemoveImageResponse{}, nil
}

func (f *fakeCRI) counts() (pods, ctrs, images int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pods), len(f.containers), len(f.images)
}

// serveFake serves f on a fresh unix socket and returns connected clients.
func serveFake(t *testing.T, f *fakeCRI) (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	sock, ln := listenShort(t)
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, f)
	runtimeapi.RegisterImageServiceServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

// listenShort listens on a unix socket in a fresh short temp dir (socket
// paths are limited to 108 bytes), removed with the test.
func listenShort(t *testing.T) (string, net.Listener) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "cri.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return sock, ln
}
