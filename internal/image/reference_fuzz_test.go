package image

import (
	"strings"
	"testing"
)

// FuzzParseReference feeds image references (from CRI requests, import
// archives' tags and annotations) to parseReference. An accepted reference
// must normalise to a fixed point: its String() parses back to the same
// reference, so tags stored in records always resolve again.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"busybox",
		"busybox:1.36",
		"library/busybox:latest",
		"docker.io/library/busybox",
		"index.docker.io/library/busybox:1",
		"registry.k8s.io/pause:3.10",
		"registry.k8s.io/e2e-test-images/busybox:1.29-2",
		"127.0.0.1:5000/a/b/c:tag",
		"localhost/import:1.0",
		"[::1]:5000/repo:tag",
		"quay.io/repo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"repo:tag@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"repo@sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"UPPER/case",
		" busybox",
		"a//b",
		"a:b:c",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		r, err := parseReference(ref)
		if err != nil {
			if n := normaliseRef(ref); n != ref {
				t.Fatalf("normaliseRef(%q) = %q for a reference that does not parse", ref, n)
			}
			return
		}
		if r.Host == "" || r.Path == "" {
			t.Fatalf("parseReference(%q) = %+v: empty host or path", ref, r)
		}
		if (r.Tag == "") == (r.Digest == "") {
			t.Fatalf("parseReference(%q) = %+v: want exactly one of tag and digest", ref, r)
		}
		if r.Digest != "" && (!strings.HasPrefix(r.Digest, "sha256:") || len(r.Digest) != len("sha256:")+64) {
			t.Fatalf("parseReference(%q) = %+v: digest is not a sha256 digest", ref, r)
		}
		if r.Host == dockerAPIHost {
			t.Fatalf("parseReference(%q) = %+v: Docker Hub not normalised to %s", ref, r, dockerHost)
		}
		again, err := parseReference(r.String())
		if err != nil {
			t.Fatalf("parseReference(%q) = %q, which does not parse: %v", ref, r.String(), err)
		}
		if again != r {
			t.Fatalf("parseReference(%q) = %+v, but its String %q parses to %+v", ref, r, r.String(), again)
		}
		if n := normaliseRef(r.String()); n != r.String() {
			t.Fatalf("normaliseRef(%q) = %q, not a fixed point", r.String(), n)
		}
	})
}
