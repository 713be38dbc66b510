package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const seedPasswd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# comment
  www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
big:x:4294967294:4294967294::/:/bin/sh
bad:x:notanumber:1::/:/bin/sh
short:x:5
`

const seedGroup = `root:x:0:
daemon:x:1:app
wheel:x:10:root, app ,
users:x:100:app,nobody
nogroup:x:65534:
big:x:4294967294:app
bad:x:-1:app
`

// FuzzParsePasswd checks that parsePasswd survives any /etc/passwd an
// image carries, yields only valid ids, and that what it parses survives
// a round trip through the passwd format.
func FuzzParsePasswd(f *testing.F) {
	f.Add([]byte(seedPasswd))
	f.Add([]byte("a:b:c:d\r\n\n\n:x:0:0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries := parsePasswd(b)
		if n := strings.Count(string(b), "\n") + 1; len(entries) > n {
			t.Fatalf("%d entries from %d lines", len(entries), n)
		}
		var buf strings.Builder
		for _, e := range entries {
			if strings.ContainsAny(e.name, ":\n") || strings.HasPrefix(e.name, "#") {
				t.Fatalf("entry name %q cannot come from one passwd line", e.name)
			}
			if e.uid > maxID || e.gid > maxID {
				t.Fatalf("entry %+v has an id over %d, which setuid/setgid take as 'unchanged'", e, uint32(maxID))
			}
			fmt.Fprintf(&buf, "%s:x:%d:%d::/:/bin/sh\n", e.name, e.uid, e.gid)
		}
		again := parsePasswd([]byte(buf.String()))
		if !slices.EqualFunc(entries, again, func(a, b passwdEntry) bool { return a == b }) {
			t.Fatalf("round trip: %+v became %+v", entries, again)
		}
	})
}

// FuzzParseGroup does the same for /etc/group.
func FuzzParseGroup(f *testing.F) {
	f.Add([]byte(seedGroup))
	f.Add([]byte("g:x:1:a,,b,\t c \n#x:x:2:\n:x:3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		groups := parseGroup(b)
		var buf strings.Builder
		for _, g := range groups {
			if strings.ContainsAny(g.name, ":\n") || strings.HasPrefix(g.name, "#") {
				t.Fatalf("group name %q cannot come from one group line", g.name)
			}
			if g.gid > maxID {
				t.Fatalf("group %+v has a gid over %d", g, uint32(maxID))
			}
			for _, m := range g.members {
				if m == "" || m != strings.TrimSpace(m) || strings.ContainsAny(m, ":,\n") {
					t.Fatalf("group %q has member %q", g.name, m)
				}
			}
			fmt.Fprintf(&buf, "%s:x:%d:%s\n", g.name, g.gid, strings.Join(g.members, ","))
		}
		again := parseGroup([]byte(buf.String()))
		if !slices.EqualFunc(groups, again, func(a, b groupEntry) bool {
			return a.name == b.name && a.gid == b.gid && slices.Equal(a.members, b.members)
		}) {
			t.Fatalf("round trip: %+v became %+v", groups, again)
		}
	})
}

// FuzzResolveUser resolves an image's USER (and the CRI run_as_* fields)
// against a rootfs holding fuzzed /etc/passwd and /etc/group. Whatever it
// accepts must be a real identity: no id is (uid_t)-1, which setuid takes
// as "keep root"; a user named by name gets that name's entry; and every
// refusal is an InvalidArgument or FailedPrecondition, never an internal
// error.
func FuzzResolveUser(f *testing.F) {
	for _, u := range []string{"", "0", "1000", "1000:100", "app", "app:users", "nobody:65534", "www-data:wheel", "4294967294", "big:big", "missing", ":10"} {
		f.Add([]byte(seedPasswd), []byte(seedGroup), u, int64(-1), int64(-1), "", false)
	}
	f.Add([]byte(seedPasswd), []byte(seedGroup), "", int64(1000), int64(10), "", true)
	f.Add([]byte(seedPasswd), []byte(seedGroup), "app", int64(-1), int64(10), "daemon", false)
	f.Fuzz(func(t *testing.T, passwd, group []byte, imageUser string, uid, gid int64, username string, strict bool) {
		rootfs := t.TempDir()
		if err := os.Mkdir(filepath.Join(rootfs, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		for n, b := range map[string][]byte{"passwd": passwd, "group": group} {
			if err := os.WriteFile(filepath.Join(rootfs, "etc", n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		req := userRequest{image: imageUser, username: username, strict: strict, supplemental: []int64{1, 2}}
		if uid >= 0 {
			req.uid = &uid
		}
		if gid >= 0 {
			req.gid = &gid
		}
		u, err := resolveUser(rootfs, req)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) && !errdefs.IsFailedPrecondition(err) {
				t.Fatalf("resolveUser: unclassified error %v", err)
			}
			return
		}
		for _, id := range append([]uint32{u.UID, u.GID}, u.AdditionalGids...) {
			if id > maxID {
				t.Fatalf("resolveUser(%+v) = %+v: id %d is (uid_t)-1, setuid/setgid would keep root's", req, u, id)
			}
		}
		if !slices.Contains(u.AdditionalGids, u.GID) {
			t.Fatalf("resolveUser = %+v: the primary gid is not among the groups", u)
		}
		name := req.username
		if name == "" && req.uid == nil {
			name, _, _ = strings.Cut(req.image, ":")
		}
		if name != "" && !isNumeric(name) {
			entries := parsePasswd(passwd)
			i := slices.IndexFunc(entries, func(e passwdEntry) bool { return e.name == name })
			if i < 0 || entries[i].uid != u.UID {
				t.Fatalf("user %q resolved to uid %d; passwd has %+v", name, u.UID, entries)
			}
		}
	})
}
