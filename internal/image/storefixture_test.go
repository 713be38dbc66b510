package image

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/crid-dev/crid/internal/store"
	"github.com/crid-dev/crid/internal/store/storetest"
)

// TestStoreFixtureImages reads the images crid 53ab463 stored
// (internal/store/testdata) with this crid's Image type: a renamed,
// removed or re-typed field fails here instead of losing a node's images
// on upgrade. A change that needs one raises store.SchemaVersion and adds
// a migration.
func TestStoreFixtureImages(t *testing.T) {
	st := storetest.Open(t, storetest.V0)
	byTag := map[string]*Image{}
	err := st.ForEach(store.BucketImages, func(id string, data []byte) error {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		var img Image
		if err := dec.Decode(&img); err != nil {
			t.Errorf("image record %s: %v", id, err)
			return nil
		}
		if img.ID != id || !strings.HasPrefix(img.ID, "sha256:") || len(img.RepoDigests) == 0 || img.Size == 0 || len(img.DiffIDs) == 0 || len(img.Blobs) == 0 {
			t.Errorf("image record %s decoded as %+v", id, img)
		}
		for _, tag := range img.RepoTags {
			byTag[tag] = &img
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	busybox := byTag["registry.k8s.io/e2e-test-images/busybox:1.29-2"]
	if busybox == nil || busybox.ID != "sha256:425ef6e239a8843bd456fb98cf91da987f65b71a7080853687788518b99d4f5d" || len(busybox.Config.Cmd) == 0 {
		t.Errorf("busybox decoded as %+v", busybox)
	}
	if byTag["registry.k8s.io/pause:3.10"] == nil {
		t.Errorf("the pause image is missing; tags: %v", byTag)
	}
}
