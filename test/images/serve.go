package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Serve runs an in-memory registry on the loopback address addr (port 0: a
// free one), pushes the images build returns into it, writes the address it
// serves on to readyFile (when not empty) once every image is there, and
// serves until ctx ends. crid-testregistry and the node e2e registry differ
// only in the catalog they serve.
func Serve(ctx context.Context, addr, readyFile string, build func() (map[string]v1.Image, error), logger *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	// Test images are served to this machine only.
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--addr %q: must be a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: NewRegistry(logger), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	// The registry keeps nothing worth draining: close connections at once.
	defer srv.Close()
	logger.Info("listening", "addr", ln.Addr().String())

	if err := fill(ctx, ln.Addr().String(), build, logger); err != nil {
		return err
	}
	if readyFile != "" {
		if err := writeAtomic(readyFile, []byte(ln.Addr().String()+"\n")); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
		defer os.Remove(readyFile)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	return nil
}

// fill builds the catalog and pushes it to the registry at addr, logging
// each reference with its digest (tests compare them with what runtimes
// report).
func fill(ctx context.Context, addr string, build func() (map[string]v1.Image, error), logger *slog.Logger) error {
	start := time.Now()
	catalog, err := build()
	if err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	built := time.Since(start)
	if err := Push(ctx, addr, catalog); err != nil {
		return err
	}
	logger.Info("images ready", "references", len(catalog), "build", built.Round(time.Millisecond),
		"total", time.Since(start).Round(time.Millisecond))
	for _, ref := range Names(catalog) {
		d, err := catalog[ref].Digest()
		if err != nil {
			return fmt.Errorf("digest of %s: %w", ref, err)
		}
		logger.Info("image", "ref", ref, "digest", d.String())
	}
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
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
