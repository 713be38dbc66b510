package server

import (
	"testing"

	"github.com/crid-dev/crid/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestRequestIDs(t *testing.T) {
	tests := []struct {
		req  any
		want []attribute.KeyValue
	}{
		{&runtime.StopPodSandboxRequest{PodSandboxId: "p"}, []attribute.KeyValue{tracing.PodID.String("p")}},
		{&runtime.CreateContainerRequest{PodSandboxId: "p", Config: &runtime.ContainerConfig{Envs: []*runtime.KeyValue{{Key: "K", Value: []byte("secret")}}}},
			[]attribute.KeyValue{tracing.PodID.String("p")}},
		{&runtime.ExecSyncRequest{ContainerId: "c", Cmd: []string{"secret"}}, []attribute.KeyValue{tracing.ContainerID.String("c")}},
		{&runtime.ListContainersRequest{}, nil},
		{&runtime.PullImageRequest{Auth: &runtime.AuthConfig{Password: "secret"}}, nil},
		{&runtime.ContainerStatusRequest{}, nil}, // empty id: nothing
	}
	for _, tt := range tests {
		got := requestIDs(tt.req)
		if len(got) != len(tt.want) {
			t.Errorf("%T: %v, want %v", tt.req, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%T: %v, want %v", tt.req, got, tt.want)
			}
		}
	}
}
