package images

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/crid-dev/crid/images/pause"
)

// Host files the images are made of (Debian 12 packages busybox,
// util-linux, procps, nginx-light or nginx-core, and gcc for pause).
const (
	hostBusybox   = "/bin/busybox"
	hostIpcs      = "/usr/bin/ipcs"
	hostPgrep     = "/usr/bin/pgrep"
	hostNginx     = "/usr/sbin/nginx"
	hostMimeTypes = "/etc/nginx/mime.types"
	hostNginxHTML = "/usr/share/nginx/html/index.html"
	hostGCC       = "gcc"
)

// defaultPath is the PATH of every image that has a shell. /bin comes last,
// and nothing in the earlier directories shadows a busybox applet, so `ls`
// run by sh is /bin/ls (critest masks /bin/ls and expects that to bite).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// labelKey distinguishes images whose file systems are equal but that must
// have different IDs (e.g. pause:3.9 and pause:3.10: removing one must not
// remove the other).
const labelKey = "dev.crid.test-image"

// builder builds layers once and assembles images from them.
type builder struct {
	mu     sync.Mutex
	layers map[string]v1.Layer
	files  map[string]*tree // kept for layers later layers build on (busybox)
}

func newBuilder() *builder {
	return &builder{layers: map[string]v1.Layer{}, files: map[string]*tree{}}
}

// layer returns the cached layer key, building it with build on first use.
func (b *builder) layer(key string, build func() (*tree, error)) (v1.Layer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.layers[key]; ok {
		return l, nil
	}
	t, err := build()
	if err != nil {
		return nil, fmt.Errorf("build layer %s: %w", key, err)
	}
	l, err := t.layer()
	if err != nil {
		return nil, fmt.Errorf("build layer %s: %w", key, err)
	}
	b.layers[key] = l
	b.files[key] = t
	return l, nil
}

// passwd and group of the busybox base, with the accounts critest relies
// on: nobody (RunAsUsername) and www-data (image USER www-data).
const (
	basePasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	baseGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`
	nsswitch = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
)

// busyboxTree is the base of every image with a shell: Debian's dynamic
// busybox with each applet a hard link in /bin (a symlink would make
// masking /bin/ls mask busybox itself), ipcs and pgrep, and their libraries.
func busyboxTree() (*tree, error) {
	t := newTree()
	for _, d := range []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin",
		"/etc", "/proc", "/sys", "/dev", "/home", "/run", "/var", "/var/www", "/var/spool/mail", "/lib64", imageLibDir} {
		t.dir(d, 0o755, 0, 0)
	}
	t.dir("/tmp", 0o1777, 0, 0)
	t.dir("/root", 0o700, 0, 0)
	t.symlink("/var/run", "../run")

	none := func(string) bool { return false }
	if err := addBinary(t, "/bin/busybox", hostBusybox, none); err != nil {
		return nil, err
	}
	out, err := exec.Command(hostBusybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	applets := strings.Fields(string(out))
	if len(applets) < 100 {
		return nil, fmt.Errorf("busybox --list gave only %d applets", len(applets))
	}
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		t.hardlink("/bin/"+a, "/bin/busybox")
	}
	if err := addBinary(t, "/usr/bin/ipcs", hostIpcs, none); err != nil {
		return nil, err
	}
	if err := addBinary(t, "/usr/bin/pgrep", hostPgrep, none); err != nil {
		return nil, err
	}
	t.file("/etc/passwd", 0o644, []byte(basePasswd))
	t.file("/etc/group", 0o644, []byte(baseGroup))
	t.file("/etc/nsswitch.conf", 0o644, []byte(nsswitch))
	return t, nil
}

func (b *builder) busyboxLayer() (v1.Layer, error) { return b.layer("busybox", busyboxTree) }

// builtTree returns the file tree of an already built layer.
func (b *builder) builtTree(key string) *tree {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.files[key]
}

// nginxLayer holds nginx, its libraries missing from busybox, mime types,
// the default page and the directories nginx writes to.
func (b *builder) nginxLayer() (v1.Layer, error) {
	if _, err := b.busyboxLayer(); err != nil {
		return nil, err
	}
	// Libraries the busybox layer has are not copied again (no second libc).
	base := b.builtTree("busybox")
	return b.layer("nginx", func() (*tree, error) {
		t := newTree()
		if err := addBinary(t, "/usr/sbin/nginx", hostNginx, base.has); err != nil {
			return nil, err
		}
		if err := t.hostFile("/etc/nginx/mime.types", hostMimeTypes); err != nil {
			return nil, err
		}
		if err := t.hostFile("/usr/share/nginx/html/index.html", hostNginxHTML); err != nil {
			return nil, err
		}
		t.dir("/etc/nginx/conf.d", 0o755, 0, 0)
		t.dir("/var/log/nginx", 0o755, 0, 0)
		t.dir("/var/lib/nginx", 0o755, 0, 0)
		t.dir("/var/cache/nginx", 0o755, 0, 0)
		return t, nil
	})
}

// nginxConf is a foreground nginx serving the default page on port; logs go
// to the container's stdout/stderr, the pid file is where critest looks.
func nginxConf(port int) string {
	return fmt.Sprintf(`user www-data;
worker_processes 1;
daemon off;
pid /var/run/nginx.pid;
error_log /dev/stderr notice;

events {
    worker_connections 128;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;

    server {
        listen %d;
        server_name localhost;
        location / {
            root /usr/share/nginx/html;
            index index.html;
        }
    }
}
`, port)
}

func (b *builder) nginxConfLayer(port int) (v1.Layer, error) {
	return b.layer(fmt.Sprintf("nginx-conf-%d", port), func() (*tree, error) {
		t := newTree()
		t.file("/etc/nginx/nginx.conf", 0o644, []byte(nginxConf(port)))
		return t, nil
	})
}

// httpdForeground stands in for Apache's httpd-foreground of the upstream
// e2e httpd image: it serves a page on port 80 with busybox httpd and, like
// Apache at start-up, names itself in the container log.
const httpdForeground = `#!/bin/sh
# Foreground web server on port 80 (busybox httpd) for the e2e httpd image.
echo "httpd: serving /usr/local/apache2/htdocs on port 80 (busybox httpd)" >&2
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
`

func (b *builder) httpdLayer() (v1.Layer, error) {
	return b.layer("httpd", func() (*tree, error) {
		t := newTree()
		t.file("/usr/local/bin/httpd-foreground", 0o755, []byte(httpdForeground))
		t.file("/usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n"))
		return t, nil
	})
}

// predefinedGroupLayer reproduces cri-tools' image-predefined-group:
// default-user (uid 1000, primary gid 1000) is a member of
// group-defined-in-image (gid 50000) in /etc/group.
func (b *builder) predefinedGroupLayer() (v1.Layer, error) {
	return b.layer("predefined-group", func() (*tree, error) {
		t := newTree()
		t.file("/etc/passwd", 0o644, []byte(basePasswd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"))
		t.file("/etc/group", 0o644, []byte(baseGroup+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"))
		t.dir("/home/default-user", 0o755, 1000, 1000)
		return t, nil
	})
}

// fileLayer adds one empty file /name, like cri-tools' image-test
// Dockerfile (`ADD ${TEST} ${TEST}`) does to tell its test images apart.
func (b *builder) fileLayer(name string) (v1.Layer, error) {
	return b.layer("file-"+name, func() (*tree, error) {
		t := newTree()
		t.file("/"+name, 0o644, nil)
		return t, nil
	})
}

// pauseLayer compiles images/pause/pause.c statically with gcc.
func (b *builder) pauseLayer() (v1.Layer, error) {
	return b.layer("pause", func() (*tree, error) {
		bin, err := compileC(pause.Source())
		if err != nil {
			return nil, err
		}
		t := newTree()
		t.file("/pause", 0o755, bin)
		return t, nil
	})
}

// compileC builds a static binary from C source with gcc.
func compileC(src []byte) ([]byte, error) {
	dir, err := os.MkdirTemp("", "crid-cc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "pause")
	args := append(pause.CompileArgs(), "-o", out)
	cmd := exec.Command(hostGCC, args...)
	cmd.Stdin = bytes.NewReader(src)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("compile (gcc %s): %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return os.ReadFile(out)
}

// imageSpec describes an image: its layers (bottom first) and config.
type imageSpec struct {
	id         string // label value; equal ids and layers give equal images
	layers     []func() (v1.Layer, error)
	history    []string
	entrypoint []string
	cmd        []string
	user       string
	workdir    string
	env        []string
	stopSignal string
	ports      []string
}

func (b *builder) image(s imageSpec) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	adds := make([]mutate.Addendum, 0, len(s.layers))
	for i, mk := range s.layers {
		l, err := mk()
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: s.history[i], Comment: "crid test image"},
		})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.id, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s config: %w", s.id, err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = "amd64"
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: s.entrypoint,
		Cmd:        s.cmd,
		User:       s.user,
		WorkingDir: s.workdir,
		Env:        s.env,
		StopSignal: s.stopSignal,
		Labels:     map[string]string{labelKey: s.id},
	}
	if len(s.ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s config: %w", s.id, err)
	}
	// Compute the digest now: later concurrent readers then only read.
	if _, err := img.Digest(); err != nil {
		return nil, fmt.Errorf("image %s digest: %w", s.id, err)
	}
	return img, nil
}

const busyboxHistory = "busybox (Debian, applets hard-linked), ipcs, pgrep, libraries, /etc/passwd, /etc/group"

// busyboxImage is busybox with an optional user and extra layers on top.
func (b *builder) busyboxImage(id, user string, extra []func() (v1.Layer, error), history []string) (v1.Image, error) {
	return b.image(imageSpec{
		id:      id,
		layers:  append([]func() (v1.Layer, error){b.busyboxLayer}, extra...),
		history: append([]string{busyboxHistory}, history...),
		cmd:     []string{"sh"},
		user:    user,
		workdir: "/",
		env:     []string{defaultPath},
	})
}

func (b *builder) nginxImage(id string, port int) (v1.Image, error) {
	return b.image(imageSpec{
		id: id,
		layers: []func() (v1.Layer, error){b.busyboxLayer, b.nginxLayer,
			func() (v1.Layer, error) { return b.nginxConfLayer(port) }},
		history: []string{busyboxHistory, "nginx (Debian) and its libraries",
			fmt.Sprintf("/etc/nginx/nginx.conf: foreground, port %d", port)},
		cmd:        []string{"nginx"},
		workdir:    "/",
		env:        []string{defaultPath},
		stopSignal: "SIGQUIT",
		ports:      []string{fmt.Sprintf("%d/tcp", port)},
	})
}

func (b *builder) httpdImage() (v1.Image, error) {
	return b.image(imageSpec{
		id:      "httpd",
		layers:  []func() (v1.Layer, error){b.busyboxLayer, b.httpdLayer},
		history: []string{busyboxHistory, "httpd-foreground (busybox httpd on port 80), htdocs"},
		cmd:     []string{"httpd-foreground"},
		workdir: "/",
		env:     []string{defaultPath},
		ports:   []string{"80/tcp"},
	})
}

func (b *builder) pauseImage(version string) (v1.Image, error) {
	return b.image(imageSpec{
		id:         "pause-" + version,
		layers:     []func() (v1.Layer, error){b.pauseLayer},
		history:    []string{"static pause binary (images/pause/pause.c)"},
		entrypoint: []string{"/pause"},
		user:       "65535:65535",
		workdir:    "/",
		env:        []string{defaultPath},
	})
}
