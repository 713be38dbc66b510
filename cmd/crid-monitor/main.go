// Command crid-monitor is crid's per-container monitor: it creates the
// container with the OCI runtime, owns its stdio and CRI log, serves
// attach, and records the exit. crid starts one per container.
//
// It imports the monitor process (internal/monitor/shim) directly, not
// crid's client side (internal/monitor), so it links no package net: a
// small static binary, one per container.
package main

import (
	"os"

	"github.com/crid-dev/crid/internal/monitor/shim"
)

func main() {
	os.Exit(shim.Main(os.Args[1:]))
}
