// Command crid-monitor is crid's per-container monitor: it creates the
// container with the OCI runtime, owns its stdio and CRI log, serves
// attach, and records the exit. crid starts one per container.
package main

import (
	"os"

	"github.com/crid-dev/crid/internal/monitor"
)

func main() {
	os.Exit(monitor.Main(os.Args[1:]))
}
