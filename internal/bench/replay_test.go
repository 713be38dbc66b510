package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestMain lets the test binary act as the replay server child, as
// crid-bench does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ReplayCommand {
		if err := ReplayMain(os.Args[2:], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func bigContainerList(n int) *runtimeapi.ListContainersResponse {
	r := &runtimeapi.ListContainersResponse{}
	for i := 0; i < n; i++ {
		r.Containers = append(r.Containers, &runtimeapi.Container{
			Id:           fmt.Sprintf("%064d", i),
			PodSandboxId: strings.Repeat("p", 64),
			Metadata:     &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("c%d", i)},
			Image:        &runtimeapi.ImageSpec{Image: "registry.k8s.io/e2e-test-images/busybox:1.29-2"},
			State:        runtimeapi.ContainerState_CONTAINER_RUNNING,
			Labels:       map[string]string{"app": "x", "io.kubernetes.container.name": fmt.Sprintf("c%d", i)},
		})
	}
	return r
}

func TestReplayServesRecordedResponses(t *testing.T) {
	version := &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "fake", RuntimeVersion: "1", RuntimeApiVersion: "v1"}
	// Over 64 KiB, the default HTTP/2 windows: the response must wait for
	// the client's window updates.
	list := bigContainerList(2000)
	if proto.Size(list) < 256<<10 {
		t.Fatalf("test list only %d bytes", proto.Size(list))
	}
	responses := map[string][]byte{}
	for path, m := range map[string]proto.Message{
		"/runtime.v1.RuntimeService/Version":        version,
		"/runtime.v1.RuntimeService/ListContainers": list,
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		responses[path] = b
	}
	sock, l := listenShort(t)
	go func() { _ = ServeReplay(l, responses) }()
	conn, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx := context.Background()

	v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || !proto.Equal(v, version) {
		t.Fatalf("Version = %v, %v; want %v", v, err, version)
	}
	// Concurrent big responses share the connection window.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				r, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
				if err != nil {
					errs <- err
					return
				}
				if !proto.Equal(r, list) {
					errs <- fmt.Errorf("ListContainers: got %d containers, want %d", len(r.GetContainers()), len(list.Containers))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, err = rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "ListPodSandbox") {
		t.Fatalf("unrecorded method: %v, want Unimplemented naming it", err)
	}
	// The connection survives an error and keeps answering.
	if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestListScenarioMeasuresReplayedFloor(t *testing.T) {
	f := newFakeCRI()
	b, _ := newTestBench(t, f, Options{Warmup: 1, Sizes: []int{3}, PerPod: 3, ListN: 2, ReplayExe: os.Args[0]})
	if err := b.Run(context.Background(), []string{"list"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range b.Metrics() {
		got[m.Key()] = m.Value
	}
	for _, call := range []string{"Version (round trip)", "ListContainers", "ListPodSandbox", "ContainerStatus"} {
		k := "list|containers=3|" + call + " replayed p50"
		if v, ok := got[k]; !ok || v <= 0 {
			t.Errorf("metric %s = %v (present %v), want a positive time", k, v, ok)
		}
	}
	if _, ok := got["list|containers=3|ListContainerStats replayed p50"]; ok {
		t.Error("ListContainerStats is not replayed: it is the costly call, its work is the point")
	}
	if err := b.Cleanup(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
}
