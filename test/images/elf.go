package images

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// libDirs are searched, in order, for the shared libraries a binary needs;
// they are the default search path of Debian's amd64 dynamic loader.
var libDirs = []string{
	"/lib/x86_64-linux-gnu",
	"/usr/lib/x86_64-linux-gnu",
	"/lib64",
	"/usr/lib64",
	"/lib",
	"/usr/lib",
}

const (
	imageLibDir = "/lib/x86_64-linux-gnu"
	imageLoader = "/lib64/ld-linux-x86-64.so.2"
)

// addBinary copies the host binary to p and every shared library it needs,
// transitively, into the tree, skipping libraries skip already provides (a
// lower layer). Libraries land in /lib/x86_64-linux-gnu under their soname;
// the loader lands at /lib64/ld-linux-x86-64.so.2.
func addBinary(t *tree, p, host string, skip func(string) bool) error {
	if err := t.hostFile(p, host); err != nil {
		return err
	}
	return addLibraries(t, host, skip)
}

func addLibraries(t *tree, host string, skip func(string) bool) error {
	seen := map[string]bool{}
	queue := []string{host}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		interp, needed, err := elfDeps(cur)
		if err != nil {
			return err
		}
		if interp != "" {
			if interp != imageLoader {
				return fmt.Errorf("%s: unexpected ELF interpreter %s", cur, interp)
			}
			if !skip(imageLoader) && !t.has(imageLoader) {
				if err := t.hostFile(imageLoader, interp); err != nil {
					return err
				}
			}
		}
		for _, lib := range needed {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			hostLib, err := findLibrary(lib)
			if err != nil {
				return fmt.Errorf("%s needs %s: %w", cur, lib, err)
			}
			dst := imageLibDir + "/" + lib
			if !skip(dst) && !t.has(dst) {
				if err := t.hostFile(dst, hostLib); err != nil {
					return err
				}
			}
			queue = append(queue, hostLib)
		}
	}
	return nil
}

// elfDeps reads the program interpreter and DT_NEEDED entries of an ELF file.
func elfDeps(host string) (interp string, needed []string, err error) {
	f, err := elf.Open(host)
	if err != nil {
		return "", nil, fmt.Errorf("read ELF %s: %w", host, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return "", nil, fmt.Errorf("read interpreter of %s: %w", host, err)
		}
		interp = strings.TrimRight(string(b), "\x00")
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("read needed libraries of %s: %w", host, err)
	}
	return interp, needed, nil
}

func findLibrary(soname string) (string, error) {
	for _, dir := range libDirs {
		p := filepath.Join(dir, soname)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("library %s not found in %s", soname, strings.Join(libDirs, ":"))
}
