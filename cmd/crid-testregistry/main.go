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
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", *addr, err)
	}
	// Test images are served to this machine only.
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--addr %q: must be a loopback address", *addr)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: images.NewRegistry(logger), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())

	start := time.Now()
	catalog, err := images.Catalog()
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("build images: %w", err)
	}
	built := time.Since(start)
	if err := images.Push(ctx, ln.Addr().String(), catalog); err != nil {
		_ = srv.Close()
		return err
	}
	logger.Info("images ready", "references", len(catalog), "build", built.Round(time.Millisecond),
		"total", time.Since(start).Round(time.Millisecond))
	for _, ref := range images.Names(catalog) {
		d, _ := catalog[ref].Digest()
		logger.Info("image", "ref", ref, "digest", d.String())
	}
	if *ready != "" {
		if err := writeAtomic(*ready, []byte(ln.Addr().String()+"\n")); err != nil {
			_ = srv.Close()
			return fmt.Errorf("ready file: %w", err)
		}
		defer os.Remove(*ready)
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	// The registry keeps nothing worth draining: close connections at once.
	if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
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

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
