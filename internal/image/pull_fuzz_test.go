package image

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
	"path/filepath"
)

// fuzzRegistry serves one fuzzed image to a pull: the manifest (or index)
// for tag "1", an inner image manifest by digest, the config and layer
// blobs, an auth challenge on /v2/ with a token endpoint, and blob
// redirects to a storage server on another host name, which records
// whether credentials followed the redirect there.
type fuzzRegistry struct {
	srv, storage *httptest.Server
	challenge    string
	token        []byte
	location     string
	manifests    map[string][]byte // by tag and by digest
	blobs        map[string][]byte // by digest
	leaked       atomic.Value      // string: an Authorization header storage got
}

const (
	fuzzPassword = "fuzz-secret"
	fuzzRepo     = "mirror/app"
)

func (r *fuzzRegistry) serve(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		if r.challenge != "" && req.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", r.challenge)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	case p == "/token":
		w.Header().Set("Content-Type", "application/json")
		w.Write(r.token)
	case strings.HasPrefix(p, "/v2/"+fuzzRepo+"/manifests/"):
		m, ok := r.manifests[strings.TrimPrefix(p, "/v2/"+fuzzRepo+"/manifests/")]
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		var mt struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(m, &mt) != nil || mt.MediaType == "" {
			mt.MediaType = "application/vnd.oci.image.manifest.v1+json"
		}
		w.Header().Set("Content-Type", mt.MediaType)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(m).String())
		w.Header().Set("Content-Length", strconv.Itoa(len(m)))
		if req.Method != http.MethodHead {
			w.Write(m)
		}
	case strings.HasPrefix(p, "/v2/"+fuzzRepo+"/blobs/"):
		d := strings.TrimPrefix(p, "/v2/"+fuzzRepo+"/blobs/")
		if r.location != "" && req.URL.Query().Get("redirected") == "" {
			w.Header().Set("Location", r.fill(r.location, d))
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		r.serveBlob(w, req, d)
	default:
		http.NotFound(w, req)
	}
}

// serveStorage serves redirected blobs under /storage/ and, as an auth
// server on another host may, tokens anywhere else (a fuzzed realm may
// name any path): a token request legitimately carries the credentials, a
// blob request must not.
func (r *fuzzRegistry) serveStorage(w http.ResponseWriter, req *http.Request) {
	if !strings.HasPrefix(req.URL.Path, "/storage/") {
		req.URL.Path = "/token"
		r.serve(w, req)
		return
	}
	if a := req.Header.Get("Authorization"); a != "" {
		r.leaked.Store(a)
	}
	r.serveBlob(w, req, strings.TrimPrefix(req.URL.Path, "/storage/"))
}

func (r *fuzzRegistry) serveBlob(w http.ResponseWriter, req *http.Request, d string) {
	b, ok := r.blobs[d]
	if !ok {
		http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if req.Method != http.MethodHead {
		w.Write(b)
	}
}

// fill replaces the registry's placeholders: @SERVER@ and @STORAGE@ (base
// URLs of the two servers) and @DIGEST@.
func (r *fuzzRegistry) fill(s, d string) string {
	return strings.NewReplacer("@SERVER@", r.srv.URL, "@STORAGE@", "http://localhost:"+port(r.storage), "@DIGEST@", d).Replace(s)
}

func port(s *httptest.Server) string {
	_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
	return p
}

// FuzzPull pulls a fuzzed image from a local registry with a fuzzed auth
// challenge, token response and blob redirect. Manifests reference the
// config, the layer and the inner manifest through @CONFIG@, @LAYER@,
// @INNER@ (and their @...SIZE@), the config names the layer through
// @DIFFID@. A pull must end, not crash, not allocate for sizes it was only
// told about, leave no temp files, never send the credentials to the
// storage host a blob is redirected to, and when it succeeds record the
// image exactly as served: ID the config's digest, repo digest the
// manifest's, size what its blobs take.
func FuzzPull(f *testing.F) {
	layer := tarOf(f, [][2]string{{"etc/hostname", "pulled"}})
	image := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@CONFIG@","size":@CONFIGSIZE@},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"@LAYER@","size":@LAYERSIZE@}]}`
	docker := strings.NewReplacer("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json",
		"application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar").Replace(image)
	index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@INNER@","size":@INNERSIZE@,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@INNER@","size":@INNERSIZE@,"platform":{"os":"linux","architecture":"amd64"}}]}`
	bearer := `Bearer realm="@SERVER@/token",service="registry.test",scope="repository:mirror/app:pull"`
	token := `{"token":"fuzz-token","access_token":"fuzz-token","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}`
	cfg := string(seedConfig("@DIFFID@"))
	for _, s := range []struct{ manifest, challenge, token, location string }{
		{image, "", "", ""},
		{docker, `Basic realm="registry"`, "", ""},
		{index, bearer, token, "@STORAGE@/storage/@DIGEST@"},
		{image, bearer, `{"token":""}`, ""},
		{image, `Basic realm="registry"`, "", "@SERVER@/v2/mirror/app/blobs/@DIGEST@?redirected=1"},
		{index, `Bearer realm="@STORAGE@/token"`, token, "/v2/mirror/app/blobs/@DIGEST@?redirected=1"},
	} {
		f.Add([]byte(s.manifest), []byte(cfg), layer, s.challenge, []byte(s.token), s.location)
	}
	f.Fuzz(func(t *testing.T, manifest, config, layer []byte, challenge string, token []byte, location string) {
		config = fill(config, "@DIFFID@", sha256Hex(layer))
		inner := fill([]byte(image), "@CONFIG@", "sha256:"+sha256Hex(config), "@CONFIGSIZE@", strconv.Itoa(len(config)),
			"@LAYER@", "sha256:"+sha256Hex(layer), "@LAYERSIZE@", strconv.Itoa(len(layer)))
		manifest = fill(manifest, "@CONFIG@", "sha256:"+sha256Hex(config), "@CONFIGSIZE@", strconv.Itoa(len(config)),
			"@LAYER@", "sha256:"+sha256Hex(layer), "@LAYERSIZE@", strconv.Itoa(len(layer)),
			"@INNER@", "sha256:"+sha256Hex(inner), "@INNERSIZE@", strconv.Itoa(len(inner)))
		reg := &fuzzRegistry{
			token: token, location: location,
			manifests: map[string][]byte{"1": manifest, digest.FromBytes(manifest).String(): manifest, digest.FromBytes(inner).String(): inner},
			blobs:     map[string][]byte{digest.FromBytes(config).String(): config, digest.FromBytes(layer).String(): layer},
		}
		quiet := log.New(io.Discard, "", 0)
		reg.srv = httptest.NewUnstartedServer(http.HandlerFunc(reg.serve))
		reg.srv.Config.ErrorLog = quiet
		reg.srv.Start()
		defer reg.srv.Close()
		reg.storage = httptest.NewUnstartedServer(http.HandlerFunc(reg.serveStorage))
		reg.storage.Config.ErrorLog = quiet
		reg.storage.Start()
		defer reg.storage.Close()
		reg.challenge = reg.fill(challenge, "")

		s := pullService(t, reg)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		img, err := s.Pull(ctx, "registry.k8s.io/app:1", &Auth{Username: "fuzz", Password: fuzzPassword, ServerAddress: "registry.k8s.io"})
		runtime.ReadMemStats(&after)
		t.Logf("pull: %v", err)
		if ctx.Err() != nil {
			t.Fatalf("pull did not end in 30s")
		}
		// Generous: a pull of these few KiB allocates a few MiB; what must
		// not happen is an allocation sized by a declared length.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
			t.Errorf("pull allocated %d MiB", grew>>20)
		}
		if a, ok := reg.leaked.Load().(string); ok {
			t.Errorf("credentials followed a redirect to another host: Authorization %q", a)
		}
		if left, err := os.ReadDir(s.ingestDir()); err != nil || len(left) > 0 {
			t.Errorf("ingest dir after pull: %v, %v", names(left), err)
		}
		if err != nil {
			return
		}
		checkPulled(t, s, img, manifest, reg)
	})
}

// pullService opens a service that pulls registry.k8s.io from the fuzz
// registry only, and can dial nothing else.
func pullService(t *testing.T, reg *fuzzRegistry) *Service {
	t.Helper()
	root := t.TempDir()
	st, err := store.Open(filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	no := false
	s, err := New(config.Images{
		MaxConcurrentDownloads: 2,
		PullProgressTimeout:    config.Duration{Duration: 10 * time.Second},
		Registries: []config.Registry{{
			Host: "registry.k8s.io", Mirrors: []string{reg.srv.URL + "/mirror"}, Fallback: &no,
		}},
	}, root, st)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{reg.srv.Listener.Addr().String(): true, "localhost:" + port(reg.storage): true}
	s.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !allowed[addr] {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrPermission}
		}
		return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	}
	return s
}

// checkPulled checks the record of a successful pull against what the
// registry served.
func checkPulled(t *testing.T, s *Service, img *Image, top []byte, reg *fuzzRegistry) {
	t.Helper()
	cfg, ok := reg.blobs[img.ID]
	if !ok {
		t.Fatalf("image ID %s is not the digest of a served config", img.ID)
	}
	if want := "registry.k8s.io/app@" + digest.FromBytes(top).String(); !equal(img.RepoDigests, []string{want}) {
		t.Errorf("RepoDigests = %v, want [%s]", img.RepoDigests, want)
	}
	if !equal(img.RepoTags, []string{"registry.k8s.io/app:1"}) {
		t.Errorf("RepoTags = %v", img.RepoTags)
	}
	var size int
	var manifest *v1.Manifest
	for _, b := range img.Blobs {
		content, ok := reg.manifests[b.String()]
		if b.String() == img.ID {
			content = cfg
		} else if !ok {
			t.Fatalf("recorded blob %s was never served as a manifest", b)
		} else if m, err := v1.ParseManifest(bytes.NewReader(content)); err == nil && m.Config.Digest.String() == img.ID {
			manifest = m
		}
		size += len(content)
	}
	if manifest == nil {
		t.Fatalf("no image manifest among the recorded blobs %v", img.Blobs)
	}
	for _, l := range manifest.Layers {
		size += len(reg.blobs[l.Digest.String()])
	}
	if img.Size != uint64(size) {
		t.Errorf("image size %d, its blobs take %d bytes", img.Size, size)
	}
	kept, err := os.ReadDir(s.blobDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != len(img.Blobs) {
		t.Errorf("content store holds %v, the image keeps %v", names(kept), img.Blobs)
	}
	if _, err := s.layerLowers(img); err != nil {
		t.Error(err)
	}
}
