package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/store"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one tar entry of a test layer.
type entry struct {
	name    string
	typ     byte // tar.TypeReg when 0
	content string
	mode    int64
	link    string
}

// tarBytes archives test entries (uncompressed). A regular file is mode
// 0644 and a directory 0755 unless the entry says; a device entry gets
// major/minor 0, the overlay whiteout form.
func tarBytes(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: time.Unix(1700000000, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.content))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.content)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testLayer is a gzip-compressed layer of entries.
func testLayer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage builds a linux/amd64 image of layers with a config user.
func testImage(t *testing.T, user string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.User = user
	cf.Config.Cmd = []string{"/bin/sh"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func imageID(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func manifestDigest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// testRegistry is an in-process registry on 127.0.0.1 that counts requests
// and can corrupt or stall chosen blobs.
type testRegistry struct {
	srv  *httptest.Server
	host string

	mu       sync.Mutex
	gets     map[string]int // path -> GET count
	corrupt  map[string]bool
	stall    map[string]bool
	delay    time.Duration
	password string // basic auth required when set
	requests atomic.Int64
	conns    atomic.Int64 // client connections open now
}

func newTestRegistry(t *testing.T) *testRegistry { return startTestRegistry(t, false) }

// newTLSTestRegistry serves HTTPS with httptest's self-signed certificate.
func newTLSTestRegistry(t *testing.T) *testRegistry { return startTestRegistry(t, true) }

func startTestRegistry(t *testing.T, useTLS bool) *testRegistry {
	t.Helper()
	r := &testRegistry{gets: map[string]int{}, corrupt: map[string]bool{}, stall: map[string]bool{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	stop := make(chan struct{})
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		r.mu.Lock()
		if req.Method == http.MethodGet {
			r.gets[req.URL.Path]++
		}
		delay, password := r.delay, r.password
		var corrupt, stall bool
		for d := range r.corrupt {
			corrupt = corrupt || (strings.HasSuffix(req.URL.Path, "/blobs/"+d) && req.Method == http.MethodGet)
		}
		for d := range r.stall {
			stall = stall || (strings.HasSuffix(req.URL.Path, "/blobs/"+d) && req.Method == http.MethodGet)
		}
		r.mu.Unlock()
		if password != "" {
			if _, p, ok := req.BasicAuth(); !ok || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		if delay > 0 && strings.Contains(req.URL.Path, "/blobs/") && req.Method == http.MethodGet {
			time.Sleep(delay)
		}
		switch {
		case corrupt:
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, req)
			body := rec.Body.Bytes()
			if len(body) > 0 {
				body[len(body)/2] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		case stall:
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, req)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes()[:10])
			w.(http.Flusher).Flush()
			select {
			case <-stop:
			case <-req.Context().Done():
			}
		default:
			reg.ServeHTTP(w, req)
		}
	}))
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	r.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			r.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			r.conns.Add(-1)
		}
	}
	if useTLS {
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(func() { close(stop); r.srv.Close() })
	r.host = strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "http://"), "https://")
	return r
}

func (r *testRegistry) getCount(suffix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for p, c := range r.gets {
		if strings.HasSuffix(p, suffix) {
			n += c
		}
	}
	return n
}

// push writes img (or an index) to repo:tag on the registry directly.
func (r *testRegistry) push(t *testing.T, repoTag string, img v1.Image) {
	t.Helper()
	ref, err := name.NewTag(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(r.srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
}

func (r *testRegistry) pushIndex(t *testing.T, repoTag string, idx v1.ImageIndex) {
	t.Helper()
	ref, err := name.NewTag(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithTransport(r.srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
}

// mirrorConfig routes registry.k8s.io through r with a repository prefix
// and no fallback.
func mirrorConfig(r *testRegistry) config.Images {
	no := false
	return config.Images{
		SandboxImage:           "registry.k8s.io/pause:3.10",
		MaxConcurrentDownloads: 3,
		PullProgressTimeout:    config.Duration{Duration: time.Minute},
		Registries: []config.Registry{{
			Host:     "registry.k8s.io",
			Mirrors:  []string{"http://" + r.host + "/registry.k8s.io"},
			Fallback: &no,
		}},
	}
}

// dialRecorder records every address the service dials.
type dialRecorder struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	d.mu.Unlock()
	return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
}

func (d *dialRecorder) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

// newTestService opens a service in a temp root with its own store.
func newTestService(t *testing.T, cfg config.Images) (*Service, string, *dialRecorder) {
	t.Helper()
	root := t.TempDir()
	st, err := store.Open(filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(cfg, root, st)
	if err != nil {
		t.Fatal(err)
	}
	rec := &dialRecorder{}
	s.dial = rec.dial
	return s, root, rec
}

func appendLayer(t *testing.T, img v1.Image, l v1.Layer) v1.Image {
	t.Helper()
	out, err := mutate.AppendLayers(img, l)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
