// Command crid is a Kubernetes CRI runtime daemon.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "crid:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var o daemonOptions
	root := &cobra.Command{
		Use:           "crid",
		Short:         "crid is a Kubernetes container runtime (CRI v1)",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.configExplicit = cmd.Flags().Changed("config")
			return runDaemon(cmd.Context(), o)
		},
	}
	root.PersistentFlags().StringVar(&o.configPath, "config", "/etc/crid/config.toml", "config file")
	root.Flags().StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error (overrides the config)")
	root.AddCommand(newConfigCmd(&o), newImageCmd(&o), newNetworkCmd(&o))
	return root
}
