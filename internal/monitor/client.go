// Package monitor is the per-container monitor process (crid-monitor) and
// crid's client of it. The monitor, not the daemon, owns the container's
// stdio: it runs `runtime create`, becomes the container's subreaper, writes
// the CRI log, serves attach, records the exit; it outlives crid restarts.
package monitor

import (
	"context"
	"io"
	"time"

	"github.com/crid-dev/crid/internal/runc"
)

// Options describe one container for its monitor.
type Options struct {
	ID          string
	Bundle      string // holds config.json; rootfs already mounted
	StateDir    string // monitor's own dir: socket, pid file, exit file
	RuntimePath string
	RuntimeRoot string
	LogPath     string // CRI log file; "" discards output
	Stdin       bool
	StdinOnce   bool
	Terminal    bool
}

// Process is a created container under its monitor.
type Process struct {
	MonitorPID   int
	ContainerPID int
}

// Exit is how a container ended.
type Exit struct {
	Code      int32     `json:"code"`
	ExitedAt  time.Time `json:"exitedAt"`
	OOMKilled bool      `json:"oomKilled"`
	Signal    int       `json:"signal,omitempty"`
}

// AttachOptions are the streams of one attach session.
type AttachOptions struct {
	Stdin          io.Reader // nil: no stdin
	Stdout, Stderr io.Writer // nil: not wanted
	Resize         <-chan runc.Size
}

// Spawn starts a monitor (binary monitorBin) that creates the container with
// `runtime create`. It returns once the container is created (or creation
// failed, with the runtime's error text; nothing is left behind then).
func Spawn(ctx context.Context, monitorBin string, o Options) (*Process, error) { panic("not implemented") }

// Wait blocks until the container exits and returns its exit. It works for
// monitors spawned by an earlier crid process too.
func Wait(ctx context.Context, stateDir string) (*Exit, error) { panic("not implemented") }

// ReadExit returns the recorded exit; errdefs.ErrNotFound if not exited yet.
func ReadExit(stateDir string) (*Exit, error) { panic("not implemented") }

// Alive reports whether the monitor for stateDir is running.
func Alive(stateDir string) bool { panic("not implemented") }

// Attach connects to the container's live stdio until the container exits,
// the client's stdin ends (with StdinOnce), or ctx is done.
func Attach(ctx context.Context, stateDir string, o AttachOptions) error { panic("not implemented") }

// ReopenLog makes the monitor reopen the log path (after kubelet rotated it).
func ReopenLog(ctx context.Context, stateDir string) error { panic("not implemented") }
