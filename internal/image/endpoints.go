package image

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// endpoint is one place a repository can be fetched from: a mirror or the
// upstream registry itself.
type endpoint struct {
	// Host is host[:port] to connect to.
	Host string
	// PlainHTTP talks HTTP instead of HTTPS.
	PlainHTTP bool
	// SkipVerify disables TLS certificate verification.
	SkipVerify bool
	// Prefix is prepended to the repository path on this endpoint ("" for none).
	Prefix string
	// Mirror is false for the upstream host itself.
	Mirror bool
}

// Repository is the repository path used on this endpoint for path.
func (e endpoint) Repository(path string) string {
	if e.Prefix == "" {
		return path
	}
	return e.Prefix + "/" + path
}

// String names the endpoint in errors and logs.
func (e endpoint) String() string {
	scheme := "https"
	if e.PlainHTTP {
		scheme = "http"
	}
	s := scheme + "://" + e.Host
	if e.Prefix != "" {
		s += "/" + e.Prefix
	}
	return s
}

// canonicalHost maps Docker Hub's aliases onto the form used in references.
func canonicalHost(h string) string {
	switch h {
	case dockerAPIHost, "registry-1.docker.io":
		return dockerHost
	}
	return h
}

// endpointsFor lists where host's repositories are fetched from: the
// configured mirrors in order, then the host itself unless fallback is off.
func endpointsFor(regs []config.Registry, host string) ([]endpoint, error) {
	host = canonicalHost(host)
	var reg config.Registry
	found := false
	for _, r := range regs {
		if canonicalHost(r.Host) == host {
			reg, found = r, true
			break
		}
	}
	upstream := host
	if upstream == dockerHost {
		upstream = dockerAPIHost
	}
	if !found {
		return []endpoint{{Host: upstream}}, nil
	}
	var eps []endpoint
	for _, m := range reg.Mirrors {
		u, err := url.Parse(m)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("registry %s: invalid mirror %q: %w", reg.Host, m, errdefs.ErrInvalidArgument)
		}
		eps = append(eps, endpoint{
			Host:       u.Host,
			PlainHTTP:  u.Scheme == "http",
			SkipVerify: reg.InsecureSkipVerify,
			Prefix:     strings.Trim(u.Path, "/"),
			Mirror:     true,
		})
	}
	if reg.AllowFallback() {
		eps = append(eps, endpoint{Host: upstream, PlainHTTP: reg.PlainHTTP, SkipVerify: reg.InsecureSkipVerify})
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("registry %s has no mirrors and fallback is disabled: %w", reg.Host, errdefs.ErrInvalidArgument)
	}
	return eps, nil
}

// repository is the ggcr repository for path on e.
func (e endpoint) repository(path string) (name.Repository, error) {
	var opts []name.Option
	if e.PlainHTTP {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(e.Host, opts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("endpoint %s: %w", e, err)
	}
	return reg.Repo(e.Repository(path)), nil
}

// schemeGuard enforces an endpoint's scheme. ggcr tries both https and http
// for "insecure" and loopback registries; an http:// mirror must only get
// plain HTTP and an https:// one only TLS.
type schemeGuard struct {
	host   string
	scheme string
	next   http.RoundTripper
}

func (g schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == g.host && req.URL.Scheme != g.scheme {
		return nil, fmt.Errorf("%s://%s is configured, not %s", g.scheme, g.host, req.URL.Scheme)
	}
	if redirects(req) > maxRedirects {
		return nil, fmt.Errorf("%s %s: stopped after %d redirects", req.Method, req.URL.Redacted(), maxRedirects)
	}
	return g.next.RoundTrip(req)
}

// CloseIdleConnections closes the transport's idle keep-alive connections.
func (g schemeGuard) CloseIdleConnections() {
	if c, ok := g.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// maxRedirects bounds the redirects one registry request follows. ggcr's
// HTTP client replaces net/http's limit of 10 with an SSRF check that has
// none, so a registry answering with a redirect loop kept a pull spinning
// (thousands of requests a second) until its progress timeout.
const maxRedirects = 10

// redirects counts the redirects that led to req: net/http links each
// redirected request to the response that caused it.
func redirects(req *http.Request) int {
	n := 0
	for r := req.Response; r != nil && r.Request != nil && n <= maxRedirects; r = r.Request.Response {
		n++
	}
	return n
}

// transportFor builds the HTTP transport used for e. dial, when set,
// replaces the network dialer (tests record connection attempts with it).
func transportFor(e endpoint, dial func(ctx context.Context, network, addr string) (net.Conn, error)) schemeGuard {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if e.SkipVerify {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // configured by the operator
	}
	if dial != nil {
		t.DialContext = dial
	} else {
		t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	t.ResponseHeaderTimeout = 2 * time.Minute
	scheme := "https"
	if e.PlainHTTP {
		scheme = "http"
	}
	return schemeGuard{host: e.Host, scheme: scheme, next: t}
}

// authenticator turns CRI credentials into a ggcr authenticator for e of
// upstream host. Credentials naming another server are not sent.
func authenticator(a *Auth, upstream string, e endpoint) (authn.Authenticator, error) {
	if a == nil || (*a == Auth{}) {
		return authn.Anonymous, nil
	}
	if a.ServerAddress != "" {
		srv := a.ServerAddress
		if u, err := url.Parse(srv); err == nil && u.Host != "" {
			srv = u.Host
		}
		srv = canonicalHost(strings.TrimSuffix(srv, "/"))
		if srv != canonicalHost(upstream) && srv != e.Host {
			return authn.Anonymous, nil
		}
	}
	cfg := authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	}
	if a.Auth != "" && a.Username == "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return nil, fmt.Errorf("registry auth: invalid base64 in auth: %w", errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, fmt.Errorf("registry auth: auth is not user:password: %w", errdefs.ErrInvalidArgument)
		}
		cfg.Username, cfg.Password = user, pass
	}
	return authn.FromConfig(cfg), nil
}

// classify wraps a registry error with the errdefs sentinel it stands for.
func classify(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode:
				return fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
			case transport.DeniedErrorCode:
				return fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
			}
		}
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
		case http.StatusForbidden:
			return fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
		}
	}
	return err
}

// endpointsError combines the failures of every endpoint tried into one
// error naming them all, classified by the most telling failure: an auth
// failure, else "not found" when an endpoint answered so, else corrupted
// content, else unavailable.
func endpointsError(ref string, tried []string, errs []error) error {
	var kind error = errdefs.ErrUnavailable
	for _, err := range errs {
		switch {
		case errdefs.IsUnauthorized(err):
			kind = errdefs.ErrUnauthenticated
		case errdefs.IsPermissionDenied(err) && kind != errdefs.ErrUnauthenticated:
			kind = errdefs.ErrPermissionDenied
		case errdefs.IsNotFound(err) && kind == errdefs.ErrUnavailable:
			kind = errdefs.ErrNotFound
		case errdefs.IsDataLoss(err) && kind == errdefs.ErrUnavailable:
			kind = errdefs.ErrDataLoss
		}
	}
	parts := make([]string, len(tried))
	for i := range tried {
		parts[i] = fmt.Sprintf("%s: %v", tried[i], errs[i])
	}
	return fmt.Errorf("pull %s: tried %d endpoint(s): %s: %w", ref, len(tried), strings.Join(parts, "; "), kind)
}
