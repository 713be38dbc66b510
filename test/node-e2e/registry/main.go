// Command registry serves the images of Kubernetes' node e2e suite
// (test/images.NodeE2ECatalog) from an in-memory registry on a loopback
// address, under "<upstream host>/<path>" repositories like
// crid-testregistry, so that a runtime's mirror of registry.k8s.io at
// http://ADDR/registry.k8s.io resolves them. test/node-e2e/run.sh starts it.
//
//	registry --agnhost-dir DIR [--addr 127.0.0.1:0] [--ready-file F]
//	registry --agnhost-dir DIR --list
//
// DIR holds agnhost and its TLS pair (test/node-e2e/build.sh's output).
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
	"syscall"
	"time"

	"github.com/crid-dev/crid/test/images"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(context.Background(), os.Args[1:], os.Stdout, logger); err != nil {
		fmt.Fprintln(os.Stderr, "node-e2e registry:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "loopback host:port to serve on (port 0: a free one)")
	ready := fs.String("ready-file", "", "file written with the address once every image is pushed")
	agnhost := fs.String("agnhost-dir", "", "directory with the static agnhost binary, localhost.crt and localhost.key (required)")
	list := fs.Bool("list", false, "print the references served and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *agnhost == "" {
		return errors.New("--agnhost-dir is required")
	}
	if *list {
		catalog, err := images.NodeE2ECatalog(*agnhost)
		if err != nil {
			return fmt.Errorf("build images: %w", err)
		}
		for _, ref := range images.Names(catalog) {
			fmt.Fprintln(stdout, ref)
		}
		return nil
	}
	return serve(ctx, *addr, *ready, *agnhost, logger)
}

func serve(ctx context.Context, addr, ready, agnhost string, logger *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	// Test images are served to this machine only.
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--addr %q: must be a loopback address", addr)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: images.NewRegistry(logger), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	defer srv.Close()
	logger.Info("listening", "addr", ln.Addr().String())

	start := time.Now()
	catalog, err := images.NodeE2ECatalog(agnhost)
	if err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	if err := images.Push(ctx, ln.Addr().String(), catalog); err != nil {
		return err
	}
	logger.Info("images ready", "references", len(catalog), "took", time.Since(start).Round(time.Millisecond))
	for _, ref := range images.Names(catalog) {
		d, err := catalog[ref].Digest()
		if err != nil {
			return fmt.Errorf("digest of %s: %w", ref, err)
		}
		logger.Info("image", "ref", ref, "digest", d.String())
	}
	if ready != "" {
		if err := writeAtomic(ready, []byte(ln.Addr().String()+"\n")); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
		defer os.Remove(ready)
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	return nil
}

// writeAtomic writes data to path through a temporary file in the same
// directory, so a reader polling for path never sees it half written.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ready-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
