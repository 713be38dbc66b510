package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAgnhostSource stands in for Kubernetes' agnhost in these tests (the
// real one is built from the Kubernetes module by test/node-e2e/build.sh):
// a static Go program that names its subcommand.
const fakeAgnhostSource = `package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println("agnhost", os.Args[1:]) }
`

var (
	nodeE2EOnce sync.Once
	nodeE2EDir  string
)

// fakeAgnhost builds fakeAgnhostSource statically once per test binary and
// returns the directory NodeE2ECatalog reads.
func fakeAgnhost(t *testing.T) string {
	t.Helper()
	nodeE2EOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crid-fake-agnhost-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(fakeAgnhostSource), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module fakeagnhost\n\ngo 1.22\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Stand-ins for the TLS pair (the image only carries them).
		for f, data := range map[string]string{AgnhostCert: "test certificate\n", AgnhostKey: "test key\n"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("go", "build", "-o", AgnhostBinary, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build fake agnhost: %v\n%s", err, out)
		}
		nodeE2EDir = dir
	})
	if nodeE2EDir == "" {
		t.Fatal("fake agnhost was not built")
	}
	return nodeE2EDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if nodeE2EDir != "" {
		os.RemoveAll(nodeE2EDir)
	}
	os.Exit(code)
}

func TestNodeE2ECatalog(t *testing.T) {
	start := time.Now()
	c, err := NodeE2ECatalog(fakeAgnhost(t))
	if err != nil {
		t.Fatalf("NodeE2ECatalog: %v", err)
	}
	t.Logf("node e2e catalog ready in %v", time.Since(start))
	want := []string{NodeE2EAgnhost, NodeE2EAgnhostPrev, NodeE2EBusybox, NodeE2EGlibcDNS, NodeE2EIpcUtils,
		NodeE2ENginx, NodeE2ENginxNew, NodeE2ENonRoot, NodeE2ENonewprivs, NodeE2EPause}
	slices.Sort(want)
	if got := Names(c); !slices.Equal(got, want) {
		t.Fatalf("references\n got %v\nwant %v", got, want)
	}
	// The pod lifecycle spec replaces agnhost:2.55 with agnhost:2.66.1 and
	// waits for the new image ID.
	if digest(t, c[NodeE2EAgnhost]) == digest(t, c[NodeE2EAgnhostPrev]) {
		t.Errorf("agnhost 2.66.1 and 2.55 have the same digest")
	}
	cf, err := c[NodeE2EAgnhost].ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/agnhost"}) || !slices.Equal(cf.Config.Cmd, []string{"pause"}) {
		t.Errorf("agnhost entrypoint %q cmd %q, want [/agnhost] [pause]", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	cf, err = c[NodeE2ENonRoot].ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "1234" {
		t.Errorf("nonroot user %q, want 1234", cf.Config.User)
	}
}

func TestNodeE2EAgnhostRejectsDynamicBinary(t *testing.T) {
	// Debian's busybox is dynamically linked: not usable as agnhost.
	dir := t.TempDir()
	if err := os.Symlink(hostBusybox, filepath.Join(dir, AgnhostBinary)); err != nil {
		t.Fatal(err)
	}
	_, err := NodeE2ECatalog(dir)
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("NodeE2ECatalog with a dynamic agnhost: %v, want a dynamically linked error", err)
	}
}

// TestNodeE2EImagesRun runs what the suite runs in each image, in a chroot.
func TestNodeE2EImagesRun(t *testing.T) {
	requireRoot(t)
	c, err := NodeE2ECatalog(fakeAgnhost(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref, script string
		want        []string
	}{
		// Lifecycle hooks curl an agnhost server; probes run /bin/bash.
		{NodeE2EAgnhost, `/agnhost netexec; /agnhost-2 pause; curl --version | head -n1; bash -c 'echo bash $BASH_VERSION'; id user-defined-in-image; test -d /uploads && echo uploads; cat /localhost.crt /localhost.key`,
			[]string{"agnhost [netexec]", "agnhost [pause]", "curl ", "bash 5", "50000(group-defined-in-image)", "uploads", "test certificate", "test key"}},
		// The hostIPC specs list shared memory with ipcs; the suite makes a
		// segment with ipcmk on the host (here: in the chroot, removed again).
		{NodeE2EIpcUtils, `id=$(ipcmk -M 4096 | awk '{print $NF}'); trap "ipcrm -m $id" EXIT; ipcs -m | awk -v id=$id '$2 == id {print "found"}'`,
			[]string{"found"}},
		// glibc's hostname, not busybox's applet, answers hostname -f.
		{NodeE2EGlibcDNS, `hostname -V 2>&1; stat -c 'links=%h' /bin/hostname`, []string{"hostname ", "links=1"}},
		{NodeE2ENonewprivs, `nnp`, []string{"Effective uid: 0"}},
		{NodeE2EBusybox, `echo $((6*7)); nslookup 2>&1 | head -n1`, []string{"42", "BusyBox"}},
		// envFrom gives variables like data-1; sh -c env must show them.
		{NodeE2EBusybox, `env 'data-1=value-1' sh -c env`, []string{"data-1=value-1"}},
		{NodeE2EAgnhost, `env 'data-1=value-1' sh -c env`, []string{"data-1=value-1"}},
		// Otherwise sh is busybox ash, with its messages (the read-only
		// root file system spec compares them).
		{NodeE2EBusybox, `mkdir -p /tmp/ro && mount -t tmpfs -o ro none /tmp/ro && cd /tmp/ro && ` +
			`sh -c 'echo test > ./file' 2>&1; echo "ash=$(readlink /proc/$$/exe)"`,
			[]string{"sh: can't create ./file: Read-only file system", "ash=/bin/busybox"}},
		{NodeE2EAgnhost, `nmeter -d-1 '%3t'`, []string{":"}},
		// The networking specs: echo hostName | nc -w 1 -u IP 8081.
		{NodeE2EAgnhost, `ip link set lo up; nc -u -l -W 1 127.0.0.1 18081 > /tmp/got & sleep 0.3; ` +
			`echo hostName | nc -w 1 -u 127.0.0.1 18081; wait; cat /tmp/got`, []string{"hostName"}},
		// The container lifecycle specs' timestamp (parsed as RFC 3339).
		{NodeE2EBusybox, "t=`date -u +%FT$(nmeter -d0 '%3t' | head -n1)Z`; " +
			`echo "$t" | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$' && echo rfc3339; ` +
			`nmeter -d-1 'x%%%0t%2ty' | grep -Eqx 'x%[0-9]{2}:[0-9]{2}:[0-9]{2}[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{2}y' && echo once`,
			[]string{"rfc3339", "once"}},
	} {
		t.Run(filepath.Base(tc.ref), func(t *testing.T) {
			out, err := inRootfs(t, unpack(t, c[tc.ref]), tc.script)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
