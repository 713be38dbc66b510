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
	"os"
	"os/signal"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

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
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	build := func() (map[string]v1.Image, error) { return images.NodeE2ECatalog(agnhost) }
	return images.Serve(ctx, addr, ready, build, logger)
}
