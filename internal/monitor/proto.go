package monitor

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/internal/monitor/shim"
	"github.com/crid-dev/crid/internal/monitor/wire"
)

// The protocol, the options file and the state dir's names are shared with
// the monitor process (package shim) through package wire; see there.
type (
	request = wire.Request
	reply   = wire.Reply
	syncMsg = wire.SyncMsg
)

const (
	opAttach = wire.OpAttach
	opWait   = wire.OpWait
	opReopen = wire.OpReopen

	frameStdout   = wire.FrameStdout
	frameStderr   = wire.FrameStderr
	frameExit     = wire.FrameExit
	frameStdin    = wire.FrameStdin
	frameStdinEOF = wire.FrameStdinEOF
	frameResize   = wire.FrameResize

	socketName  = wire.SocketName
	consoleName = wire.ConsoleName
	pidName     = wire.PidName
	monPidName  = wire.MonPidName
	exitName    = wire.ExitName
	logName     = wire.LogName
	runcLogName = wire.RuncLogName

	sunPathMax = wire.SunPathMax
)

// Main is the crid-monitor program; it returns the process exit status.
// cmd/crid-monitor calls shim.Main directly, so the monitor binary does
// not link this package (and package net with it).
func Main(args []string) int { return shim.Main(args) }

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	_, err := w.Write(wire.AppendFrame(nil, typ, payload))
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) { return wire.ReadFrame(r) }

func cleanStateDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("state dir %s: %w", dir, err)
	}
	return abs, nil
}

// dial connects to the monitor socket of stateDir. A path too long for
// sun_path is reached through /proc/self/fd of an O_PATH descriptor of the
// directory; the monitor itself binds relative to its working directory.
func dial(ctx context.Context, stateDir string) (net.Conn, error) {
	dir, err := cleanStateDir(stateDir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, socketName)
	var d net.Dialer
	if len(path) <= sunPathMax {
		return d.DialContext(ctx, "unix", path)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open state dir %s: %w", dir, err)
	}
	defer unix.Close(fd)
	return d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(fd)+"/"+socketName)
}

// writeFileAtomic makes path appear complete (and synced) or not at all.
func writeFileAtomic(path string, data []byte) error {
	return wire.WriteFileAtomic(path, data, true)
}
