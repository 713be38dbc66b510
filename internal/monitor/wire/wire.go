// Package wire is what crid (internal/monitor) and the crid-monitor
// process (internal/monitor/shim) share: the options file, the exit
// record, the socket protocol and the state dir's file names. It imports
// nothing heavy (no net), so the monitor binary stays small and static.
package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Options describe one container for its monitor (JSON, written by
// monitor.Pending.Create to the options pipe, the monitor's fd 4).
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
	// SeccompNotify, when set, makes the monitor listen on
	// SeccompSocketName for the seccomp notify fds the runtime sends
	// (the spec's linux.seccomp.listenerPath) and answer them.
	SeccompNotify *SeccompNotify `json:",omitempty"`
	// SystemdCgroup: run the runtime with --systemd-cgroup (runc.Runtime).
	SystemdCgroup bool `json:",omitempty"`
}

// SeccompNotify is the io.crid.seccomp-notifier of a container: how the
// monitor answers the syscalls its rewritten profile notifies.
type SeccompNotify struct {
	Stop         bool              // stop the container after a notified syscall ("stop"), not only log it
	AuditArch    uint32            // AUDIT_ARCH_* of Syscalls' numbers
	DefaultErrno uint32            // answer to a syscall not in Syscalls (another architecture's)
	Syscalls     []NotifiedSyscall // the notified native syscalls
}

// NotifiedSyscall is one notified syscall and the errno the original
// profile fails it with.
type NotifiedSyscall struct {
	Name  string `json:"name"`
	Nr    uint32 `json:"nr"`
	Errno uint32 `json:"errno"`
}

// SeccompReason is Exit.Reason of a container the seccomp notifier
// stopped (CRI-O's words).
const SeccompReason = "seccomp killed"

// Exit is how a container ended.
type Exit struct {
	Code      int32     `json:"code"`
	ExitedAt  time.Time `json:"exitedAt"`
	OOMKilled bool      `json:"oomKilled"`
	Signal    int       `json:"signal,omitempty"`
	// Reason and Message, when set, are the container's status reason and
	// message: the monitor stopped it (SeccompReason).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// SyncMsg is what the monitor reports on the sync pipe (fd 3) once
// `runtime create` has finished.
type SyncMsg struct {
	ContainerPID int    `json:"containerPid,omitempty"`
	Error        string `json:"error,omitempty"`
}

// The monitor's socket protocol.
//
// A client connects to <StateDir>/monitor.sock and sends one JSON request
// line (Request). The monitor answers with one JSON line (Reply). For "wait"
// that line is sent when the container has exited and carries the exit; for
// "reopen" it is sent once the log file is reopened. For "attach" the reply
// line says whether the attach is accepted and is followed, in both
// directions, by frames: 1 byte type, 4 bytes big-endian length, payload.
//
//	monitor -> client: FrameStdout, FrameStderr (output), FrameExit (JSON Exit; last frame)
//	client -> monitor: FrameStdin (input), FrameStdinEOF, FrameResize (u16 width, u16 height)
//
// The monitor closes an attach connection after FrameExit, or right away
// if the attacher falls too far behind the container's output.
const (
	OpAttach = "attach"
	OpWait   = "wait"
	OpReopen = "reopen"
)

// Request is a client's first line.
type Request struct {
	Op     string `json:"op"`
	Stdin  bool   `json:"stdin,omitempty"`
	Stdout bool   `json:"stdout,omitempty"`
	Stderr bool   `json:"stderr,omitempty"`
}

// Reply is the monitor's answer line.
type Reply struct {
	Error string `json:"error,omitempty"`
	Exit  *Exit  `json:"exit,omitempty"`
}

// Frame types.
const (
	FrameStdout   byte = 1
	FrameStderr   byte = 2
	FrameExit     byte = 3
	FrameStdin    byte = 10
	FrameStdinEOF byte = 11
	FrameResize   byte = 12

	MaxFrame = 1 << 20
)

// AppendFrame appends one frame to b.
func AppendFrame(b []byte, typ byte, payload []byte) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("monitor protocol: frame of %d bytes exceeds %d", n, MaxFrame)
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

// Files in the state dir.
const (
	SocketName  = "monitor.sock"
	ConsoleName = "console.sock"
	PidName     = "pid"         // container init pid (runtime --pid-file)
	MonPidName  = "monitor.pid" // the monitor's pid
	ExitName    = "exit"
	LogName     = "monitor.log"
	RuncLogName = "runtime.log"
	// SeccompSocketName is the seccomp notifier's listener socket.
	SeccompSocketName = "seccomp.sock"
)

// SunPathMax is the usable length of a unix socket path (108 with the NUL).
const SunPathMax = 107

// WriteFileAtomic makes path appear complete or not at all. With sync the
// data is also on disk before the rename; the state dir normally lives on
// tmpfs, where that costs nothing, but it is only needed for records that
// must survive a crash of the writer (the exit).
func WriteFileAtomic(path string, data []byte, sync bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// WriteJSONLine writes v as one JSON line: the monitor's request/reply
// protocol.
func WriteJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
