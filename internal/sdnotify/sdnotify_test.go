package sdnotify

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a datagram socket like systemd's notify socket at name (a
// path, or @name for the abstract namespace) and returns a function that
// reads the next message.
func listen(t *testing.T, name string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read notify socket: %v", err)
		}
		return string(buf[:n])
	}
}

func TestSendToPathAndAbstractSockets(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify.sock"),
		"@crid-sdnotify-test-" + strconv.Itoa(os.Getpid()),
	} {
		t.Run(name, func(t *testing.T) {
			next := listen(t, name)
			n, err := New(name)
			if err != nil {
				t.Fatal(err)
			}
			if !n.Enabled() {
				t.Fatal("notifier with a socket is not enabled")
			}
			steps := []struct {
				send func() error
				want string
			}{
				{func() error { return n.Extend(90*time.Second, "recovering 3 of 10") }, "EXTEND_TIMEOUT_USEC=90000000\nSTATUS=recovering 3 of 10\n"},
				{func() error { return n.Ready("serving\nCRI") }, "READY=1\nSTATUS=serving CRI\n"},
				{func() error { return n.Status("idle") }, "STATUS=idle\n"},
				{func() error { return n.Stopping("bye") }, "STOPPING=1\nSTATUS=bye\n"},
			}
			for _, s := range steps {
				if err := s.send(); err != nil {
					t.Fatal(err)
				}
				if got := next(); got != s.want {
					t.Errorf("got %q, want %q", got, s.want)
				}
			}
		})
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify.sock")
	next := listen(t, name)
	n, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	before, err := Monotonic()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Reloading("reloading config"); err != nil {
		t.Fatal(err)
	}
	after, err := Monotonic()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(next(), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "RELOADING=1" || lines[2] != "STATUS=reloading config" {
		t.Fatalf("reloading message = %q", lines)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("second line %q is not MONOTONIC_USEC=<n>", lines[1])
	}
	if usec < before.Microseconds() || usec > after.Microseconds() {
		t.Errorf("MONOTONIC_USEC=%d not within [%d, %d]", usec, before.Microseconds(), after.Microseconds())
	}
}

func TestNoSocketIsANoop(t *testing.T) {
	var nilN *Notifier
	for _, n := range []*Notifier{nilN, {}} {
		if n.Enabled() {
			t.Error("empty notifier is enabled")
		}
		if err := n.Ready("x"); err != nil {
			t.Errorf("no-op Ready: %v", err)
		}
	}
	t.Setenv(EnvSocket, "")
	n, err := FromEnv()
	if err != nil || n.Enabled() {
		t.Errorf("FromEnv with an empty %s = %v, %v; want a no-op", EnvSocket, n, err)
	}
}

func TestInvalidSocketAndMessages(t *testing.T) {
	for _, bad := range []string{"relative/path", "@", "vsock:2:1234"} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
	n, err := New(filepath.Join(t.TempDir(), "nobody-listens"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Send("READY=1"); err == nil {
		t.Error("send to a socket nobody listens on reported no error")
	}
	for _, bad := range []string{"READY", "STATUS=a\nREADY=1"} {
		if err := n.Send(bad); err == nil || !strings.Contains(err.Error(), "KEY=VALUE") {
			t.Errorf("Send(%q) = %v, want a KEY=VALUE error", bad, err)
		}
	}
}

// TestFromEnvHidesTheSocketFromChildren runs a real child after FromEnv
// and reads its environment: it must not see NOTIFY_SOCKET.
func TestFromEnvHidesTheSocketFromChildren(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify.sock")
	next := listen(t, name)
	t.Setenv(EnvSocket, name)
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := os.LookupEnv(EnvSocket); ok {
		t.Fatalf("%s still set in the process after FromEnv", EnvSocket)
	}
	out, err := exec.Command("env").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), EnvSocket+"=") {
		t.Errorf("child inherited %s:\n%s", EnvSocket, out)
	}
	if err := n.Ready("ok"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "READY=1\nSTATUS=ok\n" {
		t.Errorf("got %q after the variable was unset", got)
	}
}
