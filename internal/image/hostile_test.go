package image

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// rawManifest is a manifest pushed byte for byte, lies included.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// TestPullRefusesHugeConfig: a registry whose manifest declares a config of
// a terabyte is refused before the config is fetched (crid reads configs
// whole into memory at the declared size).
func TestPullRefusesHugeConfig(t *testing.T) {
	reg := newTestRegistry(t)
	img := testImage(t, "", testLayer(t, entry{name: "f", content: "x"}))
	reg.push(t, "registry.k8s.io/real:1", img) // its blobs, under the same repository below
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	m.Config.Size = 1 << 40
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(reg.host+"/registry.k8s.io/real:huge", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(ref, rawManifest{b, m.MediaType}, remote.WithTransport(reg.srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	s, _, _ := newTestService(t, mirrorConfig(reg))
	gets := reg.getCount(m.Config.Digest.String())
	_, err = s.Pull(context.Background(), "registry.k8s.io/real:huge", nil)
	if err == nil || !strings.Contains(err.Error(), "declares 1099511627776 bytes") {
		t.Fatalf("pull of a manifest declaring a 1 TiB config: %v, want an error naming the size", err)
	}
	if n := reg.getCount(m.Config.Digest.String()) - gets; n != 0 {
		t.Errorf("the config was fetched %d times", n)
	}
}
