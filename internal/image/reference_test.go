package image

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/config"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestParseReference(t *testing.T) {
	tests := []struct {
		in, want string
		repo     string
		wantErr  bool
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest", repo: "docker.io/library/busybox"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36", repo: "docker.io/library/busybox"},
		{in: "library/busybox", want: "docker.io/library/busybox:latest", repo: "docker.io/library/busybox"},
		{in: "docker.io/busybox", want: "docker.io/library/busybox:latest", repo: "docker.io/library/busybox"},
		{in: "index.docker.io/library/busybox:1", want: "docker.io/library/busybox:1", repo: "docker.io/library/busybox"},
		{in: "user/app:v2", want: "docker.io/user/app:v2", repo: "docker.io/user/app"},
		{in: "registry.k8s.io/pause:3.10", want: "registry.k8s.io/pause:3.10", repo: "registry.k8s.io/pause"},
		{in: "registry.k8s.io/e2e-test-images/busybox:1.29-2", want: "registry.k8s.io/e2e-test-images/busybox:1.29-2", repo: "registry.k8s.io/e2e-test-images/busybox"},
		{in: "localhost:5000/foo", want: "localhost:5000/foo:latest", repo: "localhost:5000/foo"},
		{in: "127.0.0.1:5000/a/b:c", want: "127.0.0.1:5000/a/b:c", repo: "127.0.0.1:5000/a/b"},
		{in: "busybox@sha256:" + hexA, want: "docker.io/library/busybox@sha256:" + hexA, repo: "docker.io/library/busybox"},
		{in: "gcr.io/x/y:tag@sha256:" + hexA, want: "gcr.io/x/y@sha256:" + hexA, repo: "gcr.io/x/y"},
		{in: "", wantErr: true},
		{in: "Busybox", wantErr: true},
		{in: "busybox:", wantErr: true},
		{in: "busybox@sha256:abc", wantErr: true},
		{in: "a b", wantErr: true},
		{in: " busybox", wantErr: true},
		{in: "busybox:bad/tag", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := parseReference(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseReference(%q) = %v, want error", tc.in, r)
				}
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("error %v is not InvalidArgument", err)
				}
				if tc.in != "" && !strings.Contains(err.Error(), "invalid image reference") {
					t.Fatalf("error %q does not say what is wrong", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			if got := r.Repository(); got != tc.repo {
				t.Errorf("Repository() = %q, want %q", got, tc.repo)
			}
		})
	}
}

func TestEndpointsFor(t *testing.T) {
	no, yes := false, true
	regs := []config.Registry{
		{Host: "registry.k8s.io", Mirrors: []string{"http://127.0.0.1:5000/registry.k8s.io", "https://mirror.example.com:8443/"}, Fallback: &no},
		{Host: "docker.io", Mirrors: []string{"https://hub-mirror.example.com/dockerhub/"}, Fallback: &yes, InsecureSkipVerify: true},
		{Host: "plain.example:5000", PlainHTTP: true},
		{Host: "gcr.io", Fallback: &no},
	}
	tests := []struct {
		host    string
		want    []endpoint
		wantErr bool
	}{
		{host: "registry.k8s.io", want: []endpoint{
			{Host: "127.0.0.1:5000", PlainHTTP: true, Prefix: "registry.k8s.io", Mirror: true},
			{Host: "mirror.example.com:8443", Mirror: true},
		}},
		{host: "docker.io", want: []endpoint{
			{Host: "hub-mirror.example.com", SkipVerify: true, Prefix: "dockerhub", Mirror: true},
			{Host: "index.docker.io", SkipVerify: true},
		}},
		{host: "index.docker.io", want: []endpoint{
			{Host: "hub-mirror.example.com", SkipVerify: true, Prefix: "dockerhub", Mirror: true},
			{Host: "index.docker.io", SkipVerify: true},
		}},
		{host: "plain.example:5000", want: []endpoint{{Host: "plain.example:5000", PlainHTTP: true}}},
		{host: "quay.io", want: []endpoint{{Host: "quay.io"}}},
		{host: "gcr.io", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			got, err := endpointsFor(regs, tc.host)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("endpoint %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}

	// The repository on a prefixed mirror keeps the upstream host as prefix.
	e := endpoint{Host: "127.0.0.1:5000", PlainHTTP: true, Prefix: "registry.k8s.io"}
	repo, err := e.repository("e2e-test-images/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := repo.Name(), "127.0.0.1:5000/registry.k8s.io/e2e-test-images/busybox"; got != want {
		t.Errorf("repository = %q, want %q", got, want)
	}
	if got := e.String(); got != "http://127.0.0.1:5000/registry.k8s.io" {
		t.Errorf("String() = %q", got)
	}
}

func TestAuthenticator(t *testing.T) {
	e := endpoint{Host: "127.0.0.1:5000"}
	a, err := authenticator(&Auth{Auth: "dXNlcjpwYXNz"}, "registry.k8s.io", e)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Username != "user" || cfg.Password != "pass" {
		t.Errorf("decoded auth = %q/%q, want user/pass", cfg.Username, cfg.Password)
	}
	a, _ = authenticator(&Auth{IdentityToken: "tok"}, "registry.k8s.io", e)
	if cfg, _ := a.Authorization(); cfg.IdentityToken != "tok" {
		t.Errorf("identity token lost: %+v", cfg)
	}
	a, _ = authenticator(&Auth{RegistryToken: "rt", ServerAddress: "https://registry.k8s.io"}, "registry.k8s.io", e)
	if cfg, _ := a.Authorization(); cfg.RegistryToken != "rt" {
		t.Errorf("registry token lost: %+v", cfg)
	}
	// Credentials for another server are not sent.
	a, _ = authenticator(&Auth{Username: "u", Password: "p", ServerAddress: "other.example"}, "registry.k8s.io", e)
	if cfg, _ := a.Authorization(); cfg.Username != "" {
		t.Errorf("credentials of other.example sent to registry.k8s.io: %+v", cfg)
	}
	if _, err := authenticator(&Auth{Auth: "!!!"}, "registry.k8s.io", e); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad base64 auth: err = %v, want InvalidArgument", err)
	}
}
