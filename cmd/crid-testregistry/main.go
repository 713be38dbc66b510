// Command crid-testregistry serves crid's offline test images (package
// test/images) from an in-memory registry on a loopback address, with
// repositories named "<upstream host>/<path>" so that a crid mirror such as
// http://127.0.0.1:5000/registry.k8s.io resolves registry.k8s.io images.
//
//	crid-testregistry [--addr 127.0.0.1:5000] [--ready-file F]
//	crid-testregistry archive --out FILE --ref registry.k8s.io/pause:3.10 [--ref ...] [--all]
//	crid-testregistry list
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/crid-dev/crid/test/images"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(context.Background(), os.Args[1:], os.Stdout, logger); err != nil {
		fmt.Fprintln(os.Stderr, "crid-testregistry:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	if len(args) > 0 {
		switch args[0] {
		case "archive":
			return archive(args[1:], logger)
		case "list":
			return list(stdout)
		}
	}
	return serve(ctx, args, logger)
}

type refList []string

func (r *refList) String() string     { return strings.Join(*r, ",") }
func (r *refList) Set(v string) error { *r = append(*r, v); return nil }

func serve(ctx context.Context, args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("crid-testregistry", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5000", "loopback host:port to serve the registry on")
	ready := fs.String("ready-file", "", "file written (with the address) once every image is pushed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (subcommands: archive, list)", fs.Args())
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return images.Serve(ctx, *addr, *ready, images.Catalog, logger)
}

func archive(args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("crid-testregistry archive", flag.ContinueOnError)
	out := fs.String("out", "", "archive file to write (docker-save tarball)")
	all := fs.Bool("all", false, "archive every image of the catalog")
	var refs refList
	fs.Var(&refs, "ref", "image reference to archive (repeatable), e.g. registry.k8s.io/pause:3.10")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || (len(refs) == 0 && !*all) {
		return errors.New("archive: --out and at least one --ref (or --all) are required")
	}
	catalog, err := images.Catalog()
	if err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	chosen := map[string]v1.Image{}
	if *all {
		chosen = catalog
	}
	for _, r := range refs {
		img, ok := catalog[r]
		if !ok {
			return fmt.Errorf("archive: %q is not a test image (see `crid-testregistry list`)", r)
		}
		chosen[r] = img
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".crid-archive-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := images.WriteArchive(tmp, chosen); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	logger.Info("archive written", "file", *out, "images", len(chosen))
	return nil
}

func list(w io.Writer) error {
	catalog, err := images.Catalog()
	if err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	for _, ref := range images.Names(catalog) {
		img := catalog[ref]
		d, err := img.Digest()
		if err != nil {
			return err
		}
		id, err := img.ConfigName()
		if err != nil {
			return err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\t%s\tid=%s\tuser=%q\tentrypoint=%q\tcmd=%q\n", ref, d, id, cf.Config.User, cf.Config.Entrypoint, cf.Config.Cmd)
	}
	return nil
}
