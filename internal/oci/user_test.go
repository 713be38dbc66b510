package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// TestReadRootfsFileHostileImage plants what a hostile image can put at
// /etc/passwd and checks that reading it neither blocks nor reads without
// bound, and names what is wrong.
func TestReadRootfsFileHostileImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (mknod)")
	}
	plant := map[string]func(path string) error{
		"FIFO": func(p string) error { return unix.Mkfifo(p, 0o644) },
		"character device": func(p string) error {
			return unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))) // /dev/zero
		},
		"directory": func(p string) error { return os.Mkdir(p, 0o755) },
		"socket": func(p string) error {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Bind(fd, &unix.SockaddrUnix{Name: p})
		},
		"larger than": func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(maxAccountFile + 1) // sparse: costs no disk
		},
		"symlink to a FIFO": func(p string) error {
			fifo := filepath.Join(filepath.Dir(p), "fifo")
			if err := unix.Mkfifo(fifo, 0o644); err != nil {
				return err
			}
			return os.Symlink("/etc/fifo", p) // absolute: resolved inside rootfs
		},
	}
	for kind, mk := range plant {
		t.Run(kind, func(t *testing.T) {
			rootfs := t.TempDir()
			if err := os.Mkdir(filepath.Join(rootfs, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := mk(filepath.Join(rootfs, "etc", "passwd")); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { _, err := readPasswd(rootfs); done <- err }()
			select {
			case err := <-done:
				if !errors.Is(err, errdefs.ErrFailedPrecondition) {
					t.Fatalf("readPasswd = %v, want FailedPrecondition", err)
				}
				want := strings.TrimPrefix(kind, "symlink to a ")
				if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "/etc/passwd") {
					t.Fatalf("error %q does not say /etc/passwd is a %s", err, want)
				}
			case <-ctx.Done():
				t.Fatal("readPasswd blocked on the planted file")
			}
		})
	}
}

// TestReadRootfsFileStaysInRootfs: a symlink out of the image resolves
// inside it, as it would in the container, never to the host's file.
func TestReadRootfsFileStaysInRootfs(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../etc/hostname", filepath.Join(rootfs, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	b, err := readRootfsFile(rootfs, "etc/passwd")
	if err == nil && b != nil {
		t.Fatalf("read %q through a symlink out of rootfs", b)
	}
}

// TestColonRecordsLongLine: a line over bufio.Scanner's 64 KiB limit does
// not hide the entries after it.
func TestColonRecordsLongLine(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := "root:x:0:0::/root:/bin/sh\nlong:x:1:1:" + strings.Repeat("g", 100<<10) + ":/:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	ents, err := readPasswd(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.name)
	}
	if strings.Join(names, ",") != "root,long,app" {
		t.Fatalf("entries %v, want root,long,app", names)
	}
}
