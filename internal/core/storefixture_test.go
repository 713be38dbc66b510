package core

import (
	"bytes"
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/store"
	"github.com/crid-dev/crid/internal/store/storetest"
)

// TestStoreFixtureRecords reads the store crid 53ab463 wrote (one pod with
// a running and an exited container; internal/store/testdata) with this
// crid's record types: a renamed, removed or re-typed field fails here,
// before it reaches a node whose pods would be lost on upgrade. A change
// that needs one raises store.SchemaVersion and adds a migration.
func TestStoreFixtureRecords(t *testing.T) {
	st := storetest.Open(t, storetest.V0)

	sbs := strictList[sandboxRecord](t, st, store.BucketSandboxes)
	if len(sbs) != 1 {
		t.Fatalf("%d sandboxes, want 1", len(sbs))
	}
	sb := sbs[0]
	if sb.ID != "236180093f71728aae53510417ee37e1fcc560eb1e0e8f8f16f1e32da22836cc" || sb.State != sandboxReady || sb.Handler != "runc" || sb.IP == "" || sb.CreatedAt == 0 || sb.CgroupsPath == "" {
		t.Errorf("sandbox record decoded as %+v", sb)
	}
	var podCfg runtime.PodSandboxConfig
	if err := proto.Unmarshal(sb.Config, &podCfg); err != nil {
		t.Fatalf("sandbox config: %v", err)
	}
	if podCfg.GetMetadata().GetName() != "fixture-pod" || podCfg.GetLabels()["app"] != "fixture" {
		t.Errorf("sandbox config decoded as %v", &podCfg)
	}

	cs := strictList[containerRecord](t, st, store.BucketContainers)
	if len(cs) != 2 {
		t.Fatalf("%d containers, want 2", len(cs))
	}
	byName := map[string]*containerRecord{}
	for _, c := range cs {
		var cfg runtime.ContainerConfig
		if err := proto.Unmarshal(c.Config, &cfg); err != nil {
			t.Fatalf("container %s config: %v", c.ID, err)
		}
		byName[cfg.GetMetadata().GetName()] = c
		if c.SandboxID != sb.ID || c.ImageID == "" || c.ImageRef == "" || c.CreatedAt == 0 || c.StartedAt == 0 || c.LogPath == "" {
			t.Errorf("container record %s decoded as %+v", cfg.GetMetadata().GetName(), c)
		}
	}
	if c := byName["fixture-ctr"]; c == nil || c.State != containerRunning || c.PID == 0 || c.MonitorPID == 0 {
		t.Errorf("running container decoded as %+v", c)
	}
	if c := byName["fixture-exited"]; c == nil || c.State != containerExited || c.ExitCode != 3 || c.FinishedAt == 0 {
		t.Errorf("exited container decoded as %+v", c)
	}
}

// strictList decodes every record of bucket as T, failing on a field T
// does not have.
func strictList[T any](t *testing.T, st *store.Store, bucket string) []*T {
	t.Helper()
	var out []*T
	err := st.ForEach(bucket, func(id string, data []byte) error {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		v := new(T)
		if err := dec.Decode(v); err != nil {
			t.Errorf("record %s/%s: %v", bucket, id, err)
			return nil
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
