package images

import (
	"fmt"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Image references Kubernetes v1.37.2's node e2e suite pulls for its
// NodeConformance specs (test/utils/image/manifest.go), spelled as the suite
// spells them so that a mirror of registry.k8s.io serves them unchanged.
const (
	e2eImages = "registry.k8s.io/e2e-test-images/"

	NodeE2EBusybox     = e2eImages + "busybox:1.37.0-2"
	NodeE2EAgnhost     = e2eImages + "agnhost:2.66.1"
	NodeE2EAgnhostPrev = e2eImages + "agnhost:2.55"
	NodeE2ENginx       = e2eImages + "nginx:1.27.0-2"
	NodeE2ENginxNew    = e2eImages + "nginx:1.28.0-2"
	NodeE2ENonewprivs  = e2eImages + "nonewprivs:1.4"
	NodeE2ENonRoot     = e2eImages + "nonroot:1.5"
	NodeE2EIpcUtils    = e2eImages + "ipc-utils:1.4"
	NodeE2EGlibcDNS    = e2eImages + "glibc-dns-testing:2.1.1"
	NodeE2EPause       = "registry.k8s.io/pause:3.10.2"
)

// Host files the node e2e images add to the busybox base: the upstream
// agnhost image (Alpine) has curl, bash and OpenBSD's nc, which the
// suite's lifecycle hooks, probes and networking checks call; ipc-utils has util-linux's ipcmk and ipcs;
// glibc-dns-testing is Debian with glibc's hostname, whose -f the suite
// reads the pod's FQDN with.
const (
	hostCurl     = "/usr/bin/curl"
	hostNc       = "/bin/nc.openbsd" // netcat-openbsd, as the upstream image has
	hostBash     = "/usr/bin/bash"
	hostIpcmk    = "/usr/bin/ipcmk"
	hostIpcrm    = "/usr/bin/ipcrm"
	hostHostname = "/bin/hostname"
)

// Accounts of the upstream agnhost image: user-defined-in-image (1000) is a
// member of group-defined-in-image (50000), which the supplemental groups
// specs look for in the container's groups.
const (
	agnhostPasswd = basePasswd + "user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh\n"
	agnhostGroup  = baseGroup + "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"
)

// nonRootUID is the USER of the upstream nonroot image.
const nonRootUID = "1234"

// Files of the agnhost image that come from the Kubernetes module (not
// this machine's files), in the directory NodeE2ECatalog reads: the static
// agnhost program and the TLS pair of its porter/netexec servers, which
// the suite's HTTPS lifecycle hook specs pass to netexec as /localhost.crt
// and /localhost.key. test/node-e2e/build.sh puts them there.
const (
	AgnhostBinary = "agnhost"
	AgnhostCert   = "localhost.crt"
	AgnhostKey    = "localhost.key"
)

// NodeE2ECatalog returns the node e2e images by reference; agnhostDir
// holds AgnhostBinary, AgnhostCert and AgnhostKey.
func NodeE2ECatalog(agnhostDir string) (map[string]v1.Image, error) {
	return newBuilder().nodeE2ECatalog(agnhostDir)
}

func (b *builder) nodeE2ECatalog(agnhost string) (map[string]v1.Image, error) {
	busybox := func(id, user string) func() (v1.Image, error) {
		return func() (v1.Image, error) { return b.busyboxImage(id, user, nil, nil) }
	}
	items := []struct {
		refs  []string
		build func() (v1.Image, error)
	}{
		// The suite's busybox (1.37) has nmeter, and its sh passes on
		// environment variables whose names are not shell names
		// ("data-1", from envFrom); Debian's busybox 1.35 has no nmeter and
		// its sh drops those variables (see shWrapSource).
		{[]string{NodeE2EBusybox}, func() (v1.Image, error) {
			return b.busyboxImage("node-e2e-busybox", "", []func() (v1.Layer, error){b.nmeterLayer, b.shWrapLayer},
				[]string{"/bin/nmeter (stand-in for the busybox applet: -d MSEC, %[N]t)", "/bin/sh: busybox ash, or bash for environments ash would cut; bash and its libraries"})
		}},
		{[]string{NodeE2ENonRoot}, busybox("node-e2e-nonroot", nonRootUID)},
		// Two agnhost versions the pod lifecycle spec swaps between: the
		// same program, different image IDs.
		{[]string{NodeE2EAgnhost}, func() (v1.Image, error) { return b.agnhostImage("agnhost-2.66.1", agnhost) }},
		{[]string{NodeE2EAgnhostPrev}, func() (v1.Image, error) { return b.agnhostImage("agnhost-2.55", agnhost) }},
		{[]string{NodeE2ENginx}, func() (v1.Image, error) { return b.nginxImage("node-e2e-nginx-1.27", 80) }},
		{[]string{NodeE2ENginxNew}, func() (v1.Image, error) { return b.nginxImage("node-e2e-nginx-1.28", 80) }},
		{[]string{NodeE2ENonewprivs}, b.nnpImage},
		{[]string{NodeE2EIpcUtils}, b.ipcUtilsImage},
		{[]string{NodeE2EGlibcDNS}, b.glibcDNSImage},
		{[]string{NodeE2EPause}, func() (v1.Image, error) { return b.pauseImage("3.10.2") }},
	}
	out := map[string]v1.Image{}
	for _, it := range items {
		img, err := it.build()
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", it.refs[0], err)
		}
		for _, ref := range it.refs {
			out[ref] = img
		}
	}
	return out, nil
}

// agnhostToolsLayer holds what the upstream agnhost image has beyond
// busybox and the agnhost program: curl, bash and their libraries, the
// image's accounts, and the /uploads directory agnhost's netexec writes to.
func (b *builder) agnhostToolsLayer() (v1.Layer, error) {
	if _, err := b.busyboxLayer(); err != nil {
		return nil, err
	}
	base := b.builtTree("busybox")
	return b.layer("agnhost-tools", func() (*tree, error) {
		t := newTree()
		skip := func(p string) bool { return base.has(p) || t.has(p) }
		if err := addBinary(t, "/usr/bin/curl", hostCurl, skip); err != nil {
			return nil, err
		}
		// /usr/bin comes before busybox's /bin in PATH: nc is OpenBSD's,
		// with the UDP mode (-u) the networking specs probe pods with.
		if err := addBinary(t, "/usr/bin/nc", hostNc, skip); err != nil {
			return nil, err
		}
		if err := addBinary(t, "/bin/bash", hostBash, skip); err != nil {
			return nil, err
		}
		t.file("/etc/passwd", 0o644, []byte(agnhostPasswd))
		t.file("/etc/group", 0o644, []byte(agnhostGroup))
		t.dir("/home/user-defined-in-image", 0o755, 1000, 1000)
		t.dir("/uploads", 0o755, 0, 0)
		return t, nil
	})
}

// agnhostLayer holds the agnhost program at /agnhost (and the /agnhost-2
// link of the upstream image) and its TLS pair, from dir. The program must
// be static: the busybox base's libraries are Debian's, not the ones a
// dynamic agnhost was linked with.
func (b *builder) agnhostLayer(dir string) (v1.Layer, error) {
	return b.layer("agnhost:"+dir, func() (*tree, error) {
		bin := filepath.Join(dir, AgnhostBinary)
		interp, needed, err := elfDeps(bin)
		if err != nil {
			return nil, fmt.Errorf("agnhost: %w", err)
		}
		if interp != "" || len(needed) > 0 {
			return nil, fmt.Errorf("agnhost %s is dynamically linked (interpreter %q, libraries %v); build it with CGO_ENABLED=0", bin, interp, needed)
		}
		t := newTree()
		if err := t.hostFile("/agnhost", bin); err != nil {
			return nil, err
		}
		t.symlink("/agnhost-2", "agnhost")
		for _, f := range []string{AgnhostCert, AgnhostKey} {
			if err := t.hostFile("/"+f, filepath.Join(dir, f)); err != nil {
				return nil, fmt.Errorf("agnhost: %w", err)
			}
		}
		return t, nil
	})
}

func (b *builder) agnhostImage(id, agnhost string) (v1.Image, error) {
	return b.image(imageSpec{
		id: id,
		// nmeter: the upstream image's busybox (Alpine) has it, and the
		// container lifecycle specs swap agnhost in for busybox.
		layers: []func() (v1.Layer, error){b.busyboxLayer, b.agnhostToolsLayer, b.nmeterLayer, b.shWrapLayer,
			func() (v1.Layer, error) { return b.agnhostLayer(agnhost) }},
		history: []string{busyboxHistory, "curl, bash, nc (OpenBSD) and their libraries; user-defined-in-image, group-defined-in-image; /uploads",
			"/bin/nmeter (stand-in for the busybox applet: -d MSEC, %[N]t)",
			"/bin/sh: busybox ash, or bash for environments ash would cut; bash and its libraries",
			"ADD agnhost /agnhost (Kubernetes v1.37.2, static), porter/localhost.crt, porter/localhost.key"},
		entrypoint: []string{"/agnhost"},
		cmd:        []string{"pause"},
		workdir:    "/",
		env:        []string{defaultPath},
		ports:      []string{"80/tcp", "8080/tcp", "8081/tcp", "9376/tcp", "5000/tcp"},
	})
}

// ipcUtilsLayer adds util-linux's ipcmk and ipcrm next to the busybox
// base's ipcs.
func (b *builder) ipcUtilsLayer() (v1.Layer, error) {
	if _, err := b.busyboxLayer(); err != nil {
		return nil, err
	}
	base := b.builtTree("busybox")
	return b.layer("ipc-utils", func() (*tree, error) {
		t := newTree()
		for p, host := range map[string]string{"/usr/bin/ipcmk": hostIpcmk, "/usr/bin/ipcrm": hostIpcrm} {
			if err := addBinary(t, p, host, base.has); err != nil {
				return nil, err
			}
		}
		return t, nil
	})
}

func (b *builder) ipcUtilsImage() (v1.Image, error) {
	return b.image(imageSpec{
		id:      "node-e2e-ipc-utils",
		layers:  []func() (v1.Layer, error){b.busyboxLayer, b.ipcUtilsLayer},
		history: []string{busyboxHistory, "ipcmk, ipcrm (util-linux) and their libraries"},
		cmd:     []string{"sh"},
		workdir: "/",
		env:     []string{defaultPath},
	})
}

// glibcHostnameLayer replaces busybox's hostname applet with Debian's
// (glibc's resolver answers `hostname -f` from the pod's /etc/hosts).
func (b *builder) glibcHostnameLayer() (v1.Layer, error) {
	if _, err := b.busyboxLayer(); err != nil {
		return nil, err
	}
	base := b.builtTree("busybox")
	return b.layer("glibc-hostname", func() (*tree, error) {
		t := newTree()
		if err := addBinary(t, "/bin/hostname", hostHostname, base.has); err != nil {
			return nil, err
		}
		return t, nil
	})
}

func (b *builder) glibcDNSImage() (v1.Image, error) {
	return b.image(imageSpec{
		id:      "node-e2e-glibc-dns-testing",
		layers:  []func() (v1.Layer, error){b.busyboxLayer, b.glibcHostnameLayer},
		history: []string{busyboxHistory, "hostname (Debian, glibc) over the busybox applet"},
		cmd:     []string{"sh"},
		workdir: "/",
		env:     []string{defaultPath},
	})
}
