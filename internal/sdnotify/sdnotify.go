// Package sdnotify tells the service manager (systemd) about crid's state:
// the sd_notify protocol, one datagram of newline-separated KEY=VALUE
// assignments to the unix datagram socket named by $NOTIFY_SOCKET.
//
// It is written here rather than taken from go-systemd's daemon package:
// the protocol is a single sendmsg, and the few lines below also do what
// that package leaves to its callers (drop the variable from the process
// environment, so that monitors, runc and containers never inherit it).
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// EnvSocket is the variable systemd sets for Type=notify services.
const EnvSocket = "NOTIFY_SOCKET"

// Notifier sends state changes to the service manager. Its zero value (and
// a nil *Notifier) sends nothing: crid run by hand or by a script behaves
// exactly as without systemd.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET and removes the variable
// from the process environment: every process crid starts (crid-monitor,
// runc, crid-nsexec, hooks, CNI plugins) would otherwise inherit it, and a
// child that speaks sd_notify could report crid ready or stopping. Unset
// or empty, the Notifier is a no-op.
func FromEnv() (*Notifier, error) {
	path, set := os.LookupEnv(EnvSocket)
	if set {
		if err := os.Unsetenv(EnvSocket); err != nil {
			return nil, fmt.Errorf("unset %s: %w", EnvSocket, err)
		}
	}
	return New(path)
}

// New returns a Notifier sending to the socket at path: an absolute path,
// or "@name" for a socket in the abstract namespace (Go's net package maps
// a leading '@' to the NUL byte of an abstract address). An empty path
// gives a no-op Notifier.
func New(path string) (*Notifier, error) {
	switch {
	case path == "":
		return &Notifier{}, nil
	case strings.HasPrefix(path, "/"), strings.HasPrefix(path, "@") && len(path) > 1:
		return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}, nil
	}
	return nil, fmt.Errorf("%s=%q: not an absolute path nor an abstract socket (@name)", EnvSocket, path)
}

// Enabled reports whether messages go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Send sends the assignments as one datagram (the manager applies them
// together). A no-op Notifier returns nil.
func (n *Notifier) Send(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	for _, a := range assignments {
		if !strings.Contains(a, "=") || strings.Contains(a, "\n") {
			return fmt.Errorf("sd_notify: %q is not one KEY=VALUE line", a)
		}
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(assignments, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	return nil
}

// Ready says start-up (or a reload) is complete, with a status line.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", StatusLine(status))
}

// Status sets the free-form status line `systemctl status` shows.
func (n *Notifier) Status(status string) error { return n.Send(StatusLine(status)) }

// Extend asks for d more before the start (or stop) timeout fires; the
// manager expects another message within d. With status, it says why.
func (n *Notifier) Extend(d time.Duration, status string) error {
	return n.Send(ExtendTimeout(d), StatusLine(status))
}

// Stopping says crid is shutting down.
func (n *Notifier) Stopping(status string) error {
	return n.Send("STOPPING=1", StatusLine(status))
}

// Reloading says crid is reloading its configuration; READY=1 ends it.
// MONOTONIC_USEC (what Type=notify-reload needs, systemd 253 and later)
// lets the manager tell this reload from one it asked for earlier.
func (n *Notifier) Reloading(status string) error {
	now, err := Monotonic()
	if err != nil {
		return err
	}
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(now.Microseconds(), 10), StatusLine(status))
}

// StatusLine is the STATUS= assignment for s, on one line.
func StatusLine(s string) string {
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}

// ExtendTimeout is the EXTEND_TIMEOUT_USEC= assignment for d.
func ExtendTimeout(d time.Duration) string {
	return "EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10)
}

// Monotonic is CLOCK_MONOTONIC, the clock MONOTONIC_USEC is read on.
func Monotonic() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_MONOTONIC): %w", err)
	}
	return time.Duration(ts.Nano()), nil
}
