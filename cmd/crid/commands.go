package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/image"
	"github.com/crid-dev/crid/internal/network"
	"github.com/crid-dev/crid/internal/store"
	"github.com/spf13/cobra"
)

func newConfigCmd(o *daemonOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show crid's configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the default configuration, commented",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := config.Marshal(config.Default())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}, &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.configExplicit = true
			if _, err := loadConfig(o); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "config OK:", o.configPath)
			return nil
		},
	})
	return cmd
}

func newImageCmd(o *daemonOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage images without a registry"}
	cmd.AddCommand(&cobra.Command{
		Use:   "import FILE",
		Short: "Import an OCI image layout archive or a `docker save` tarball ('-' reads stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.configExplicit = cmd.Flags().Changed("config")
			cfg, err := loadConfig(o)
			if err != nil {
				return err
			}
			var r io.Reader = os.Stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			names, err := importImages(cmd.Context(), cfg, r)
			if err != nil {
				return err
			}
			for _, n := range names {
				fmt.Fprintln(cmd.OutOrStdout(), "imported", n)
			}
			return nil
		},
	})
	return cmd
}

func newNetworkCmd(o *daemonOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Pod network helpers"}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Write the default bridge network config when the CNI config dir has none",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.configExplicit = cmd.Flags().Changed("config")
			cfg, err := loadConfig(o)
			if err != nil {
				return err
			}
			subnet, err := network.WriteDefaultConfig(cfg.Network.ConfDir)
			if err != nil {
				return err
			}
			if subnet != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote default network config to %s (bridge crid0, subnet %s)\n", cfg.Network.ConfDir, subnet)
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "a network config already exists in", cfg.Network.ConfDir)
			}
			return nil
		},
	})
	return cmd
}

// importImages sends the archive to a running daemon, or imports it
// directly into the store when no daemon runs (the store is locked by a
// running daemon, so the two never race).
func importImages(ctx context.Context, cfg *config.Config, r io.Reader) ([]string, error) {
	sock := adminSocket(cfg)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	// NopCloser: the client closes a ReadCloser body even when the dial
	// fails, and the offline path below still needs the reader.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://crid/images/import", io.NopCloser(r))
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("import: %s", strings.TrimSpace(string(body)))
		}
		var names []string
		if err := json.Unmarshal(body, &names); err != nil {
			return nil, fmt.Errorf("import: bad daemon answer: %w", err)
		}
		return names, nil
	}
	if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("import through daemon at %s: %w", sock, err)
	}
	// No daemon: import offline.
	st, err := store.Open(filepath.Join(cfg.Root, "meta.db"))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	images, err := image.New(cfg.Images, cfg.Root, st)
	if err != nil {
		return nil, err
	}
	return importInto(ctx, images, r)
}

func importInto(ctx context.Context, images *image.Service, r io.Reader) ([]string, error) {
	imgs, err := images.Import(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var names []string
	for _, img := range imgs {
		if len(img.RepoTags) == 0 {
			names = append(names, img.ID)
		}
		names = append(names, img.RepoTags...)
	}
	return names, nil
}

func adminHandler(images *image.Service, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /images/import", func(w http.ResponseWriter, r *http.Request) {
		names, err := importInto(r.Context(), images, r.Body)
		if err != nil {
			log.Warn("image import failed", "error", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		log.Info("images imported", "images", names)
		_ = json.NewEncoder(w).Encode(names)
	})
	// Profiles for finding where time and memory go on a live node; the
	// admin socket is root-only, like the CRI socket.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}
