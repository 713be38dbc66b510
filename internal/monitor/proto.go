package monitor

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The monitor's socket protocol.
//
// A client connects to <StateDir>/monitor.sock and sends one JSON request
// line (request). The monitor answers with one JSON line (reply). For "wait"
// that line is sent when the container has exited and carries the exit; for
// "reopen" it is sent once the log file is reopened. For "attach" the reply
// line says whether the attach is accepted and is followed, in both
// directions, by frames: 1 byte type, 4 bytes big-endian length, payload.
//
//	monitor -> client: frameStdout, frameStderr (output), frameExit (JSON Exit; last frame)
//	client -> monitor: frameStdin (input), frameStdinEOF, frameResize (u16 width, u16 height)
//
// The monitor closes an attach connection after frameExit, or right away
// if the attacher falls too far behind the container's output.
const (
	opAttach = "attach"
	opWait   = "wait"
	opReopen = "reopen"
)

type request struct {
	Op     string `json:"op"`
	Stdin  bool   `json:"stdin,omitempty"`
	Stdout bool   `json:"stdout,omitempty"`
	Stderr bool   `json:"stderr,omitempty"`
}

type reply struct {
	Error string `json:"error,omitempty"`
	Exit  *Exit  `json:"exit,omitempty"`
}

const (
	frameStdout   byte = 1
	frameStderr   byte = 2
	frameExit     byte = 3
	frameStdin    byte = 10
	frameStdinEOF byte = 11
	frameResize   byte = 12

	maxFrame = 1 << 20
)

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	_, err := w.Write(appendFrame(nil, typ, payload))
	return err
}

func appendFrame(b []byte, typ byte, payload []byte) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("monitor protocol: frame of %d bytes exceeds %d", n, maxFrame)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], p, nil
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Files in the state dir.
const (
	socketName  = "monitor.sock"
	consoleName = "console.sock"
	optionsName = "options.json"
	pidName     = "pid"         // container init pid (runtime --pid-file)
	monPidName  = "monitor.pid" // the monitor's pid
	exitName    = "exit"
	logName     = "monitor.log"
	runcLogName = "runtime.log"
)

// sunPathMax is the usable length of a unix socket path (108 with the NUL).
const sunPathMax = 107

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

// writeFileAtomic makes path appear complete or not at all.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
