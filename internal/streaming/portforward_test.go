package streaming

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// newNetNS creates a network namespace with loopback up, pinned by a bind
// mount in a temp dir; it is unmounted (and so destroyed) at cleanup.
func newNetNS(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: this thread leaves the host namespace for good
		// and is discarded when the goroutine ends.
		goruntime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
			if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("pin netns: %w", err)
			}
			return loopbackUp()
		}()
	}()
	err := <-errc
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmount netns: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// listen opens a TCP listener on addr inside nsPath ("" = host).
func listen(t *testing.T, nsPath, addr string) net.Listener {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	if nsPath == "" {
		ln, err = net.Listen("tcp", addr)
	} else {
		done := make(chan struct{})
		go func() {
			defer close(done)
			goruntime.LockOSThread()
			restored := false
			err = withNetNS(nsPath, func() error {
				var lerr error
				ln, lerr = net.Listen("tcp", addr)
				return lerr
			}, &restored)
			if restored {
				goruntime.UnlockOSThread()
			}
		}()
		<-done
	}
	if err != nil {
		t.Fatalf("listen on %s in %q: %v", addr, nsPath, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// target is a TCP service behind the port forward.
type target struct {
	ln       net.Listener
	mu       sync.Mutex
	received []string
	closed   chan struct{} // one value per connection whose peer closed
	wg       sync.WaitGroup
}

// serveTarget runs mode on every accepted connection:
//   - "reply": read to EOF, answer "PONG:<data>", close (needs half-close)
//   - "lines": upper-case each line back until EOF, then close
//   - "silent": read to EOF and report it, then hold the connection open
func serveTarget(t *testing.T, ln net.Listener, mode string) *target {
	tg := &target{ln: ln, closed: make(chan struct{}, 16)}
	hold := make(chan struct{})
	t.Cleanup(func() {
		close(hold)
		ln.Close()
		tg.wg.Wait()
	})
	tg.wg.Add(1)
	go func() {
		defer tg.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.wg.Add(1)
			go func() {
				defer tg.wg.Done()
				defer c.Close()
				switch mode {
				case "reply":
					data, _ := io.ReadAll(c)
					tg.record(string(data))
					io.WriteString(c, "PONG:"+string(data))
				case "lines":
					r := bufio.NewReader(c)
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							break
						}
						tg.record(line)
						io.WriteString(c, strings.ToUpper(line))
					}
					tg.closed <- struct{}{}
				case "silent":
					buf := make([]byte, 1024)
					for {
						n, err := c.Read(buf)
						if n > 0 {
							tg.record(string(buf[:n]))
						}
						if err != nil {
							break
						}
					}
					tg.closed <- struct{}{}
					<-hold
				}
			}()
		}
	}()
	return tg
}

func (tg *target) record(s string) {
	tg.mu.Lock()
	tg.received = append(tg.received, s)
	tg.mu.Unlock()
}

func (tg *target) port() int32 { return int32(tg.ln.Addr().(*net.TCPAddr).Port) }

// spdyForward starts client-go's port forwarder against the server and
// returns the local port and a stop function.
func spdyForward(t *testing.T, s *Server, sandbox string, port int32) (int, func()) {
	t.Helper()
	resp, err := s.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: sandbox, Port: []int32{port}})
	if err != nil {
		t.Fatalf("GetPortForward: %v", err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	rt, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fwdErr := make(chan error, 1)
	go func() { fwdErr <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-fwdErr:
		t.Fatalf("ForwardPorts: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("port forwarder not ready")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stopFn := func() {
		once.Do(func() {
			close(stop)
			<-fwdErr
		})
	}
	t.Cleanup(stopFn)
	return int(ports[0].Local), stopFn
}

func dialLocal(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func TestPortForwardSPDY(t *testing.T) {
	ns := newNetNS(t)
	tests := []struct {
		name, netns, addr string
	}{
		{"host network", "", "127.0.0.1:0"},
		{"pod netns ipv4", ns, "127.0.0.1:0"},
		{"pod netns ipv6 only", ns, "[::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFakeBackend()
			b.netns["pod"] = tt.netns
			s := startServer(t, config.Streaming{}, b)

			reply := serveTarget(t, listen(t, tt.netns, tt.addr), "reply")
			if tt.netns != "" {
				// The service really is in the other namespace.
				if c, err := net.DialTimeout("tcp", reply.ln.Addr().String(), time.Second); err == nil {
					c.Close()
					t.Fatalf("%s reachable from the host namespace", reply.ln.Addr())
				}
			}
			local, _ := spdyForward(t, s, "pod", reply.port())

			// Half-close: the target answers only after our EOF.
			c := dialLocal(t, local)
			if _, err := io.WriteString(c, "ping"); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read reply: %v", err)
			}
			if string(got) != "PONG:ping" {
				t.Fatalf("reply %q, want PONG:ping", got)
			}

			// A second connection over the same forward, with bulk data.
			payload := strings.Repeat("0123456789abcdef", 256<<10) // 4 MiB
			c2 := dialLocal(t, local)
			go func() {
				io.WriteString(c2, payload)
				c2.CloseWrite()
			}()
			got, err = io.ReadAll(c2)
			if err != nil {
				t.Fatalf("read bulk reply: %v", err)
			}
			if len(got) != len(payload)+5 || string(got) != "PONG:"+payload {
				t.Fatalf("bulk reply corrupted: %d bytes, want %d", len(got), len(payload)+5)
			}
			waitNoGoroutines(t, "streaming.(*adapter).PortForward", 10*time.Second)
		})
	}
}

// Interactive traffic both ways; closing the client ends the target side.
func TestPortForwardSPDYInteractive(t *testing.T) {
	b := newFakeBackend()
	b.netns["pod"] = newNetNS(t)
	s := startServer(t, config.Streaming{}, b)
	tg := serveTarget(t, listen(t, b.netns["pod"], "127.0.0.1:0"), "lines")
	local, _ := spdyForward(t, s, "pod", tg.port())
	c := dialLocal(t, local)
	r := bufio.NewReader(c)
	for i := 0; i < 50; i++ {
		msg := fmt.Sprintf("message %d\n", i)
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if line != strings.ToUpper(msg) {
			t.Fatalf("round trip %d: got %q", i, line)
		}
	}
	c.Close()
	select {
	case <-tg.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("target connection not closed after the client closed")
	}
	waitNoGoroutines(t, "streaming.(*adapter).PortForward", 10*time.Second)
}

// A client that vanishes without closing its streams (its connection just
// ends) must not leave the forward and the target connection behind, even
// when the target never closes on its own.
func TestPortForwardClientGone(t *testing.T) {
	b := newFakeBackend()
	b.netns["pod"] = ""
	s := startServer(t, config.Streaming{}, b)
	tg := serveTarget(t, listen(t, "", "127.0.0.1:0"), "silent")
	local, stop := spdyForward(t, s, "pod", tg.port())
	c := dialLocal(t, local)
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tg.mu.Lock()
		n := len(tg.received)
		tg.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("target got nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The local connection stays open: the forwarder's connection to the
	// server is torn down under it.
	stop()
	select {
	case <-tg.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("target connection still open after the client went away")
	}
	waitNoGoroutines(t, "streaming.(*adapter).PortForward", 10*time.Second)
	waitNoGoroutines(t, "streaming.proxy", 10*time.Second)
}

func TestPortForwardNothingListening(t *testing.T) {
	b := newFakeBackend()
	b.netns["pod"] = newNetNS(t)
	s := startServer(t, config.Streaming{}, b)
	// A port that is open on the host but not in the pod's namespace.
	host := serveTarget(t, listen(t, "", "127.0.0.1:0"), "reply")
	local, _ := spdyForward(t, s, "pod", host.port())
	c := dialLocal(t, local)
	io.WriteString(c, "anyone?")
	c.CloseWrite()
	got, _ := io.ReadAll(c)
	if len(got) != 0 {
		t.Fatalf("got %q from a port nobody listens on in the pod", got)
	}
	host.mu.Lock()
	defer host.mu.Unlock()
	if len(host.received) != 0 {
		t.Fatalf("forward reached the host service: %q", host.received)
	}
}

// WebSocket port forward (v4.channel.k8s.io): client-go has no plain
// WebSocket port-forward client (its tunneling dialer speaks SPDY over
// WebSocket, which cri-streaming does not serve), so the protocol is driven
// with gorilla/websocket: channel 0 data, channel 1 errors, each opened
// with the port as little-endian uint16.
func TestPortForwardWebSocket(t *testing.T) {
	b := newFakeBackend()
	b.netns["pod"] = newNetNS(t)
	s := startServer(t, config.Streaming{}, b)
	tg := serveTarget(t, listen(t, b.netns["pod"], "127.0.0.1:0"), "lines")
	resp, err := s.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: "pod", Port: []int32{tg.port()}})
	if err != nil {
		t.Fatal(err)
	}
	wsURL := strings.Replace(resp.Url, "http://", "ws://", 1) + "?port=" + strconv.Itoa(int(tg.port()))
	d := websocket.Dialer{Subprotocols: []string{"v4.channel.k8s.io"}, HandshakeTimeout: 5 * time.Second}
	ws, hresp, err := d.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", wsURL, err, hresp)
	}
	defer ws.Close()
	if ws.Subprotocol() != "v4.channel.k8s.io" {
		t.Fatalf("subprotocol %q", ws.Subprotocol())
	}
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	// Both channels announce the port first.
	for ch := byte(0); ch < 2; ch++ {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if len(msg) != 3 || msg[0] != ch || binary.LittleEndian.Uint16(msg[1:]) != uint16(tg.port()) {
			t.Fatalf("channel %d preamble %v", ch, msg)
		}
	}
	for i := 0; i < 20; i++ {
		msg := fmt.Sprintf("ws line %d\n", i)
		if err := ws.WriteMessage(websocket.BinaryMessage, append([]byte{0}, msg...)); err != nil {
			t.Fatal(err)
		}
		var got []byte
		for len(got) < len(msg) {
			_, frame, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if len(frame) == 0 {
				continue
			}
			if frame[0] == 1 && len(frame) > 1 {
				t.Fatalf("error channel: %s", frame[1:])
			}
			if frame[0] == 0 {
				got = append(got, frame[1:]...)
			}
		}
		if string(got) != strings.ToUpper(msg) {
			t.Fatalf("got %q, want %q", got, strings.ToUpper(msg))
		}
	}
	ws.Close()
	select {
	case <-tg.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("target connection still open after the WebSocket closed")
	}
	waitNoGoroutines(t, "streaming.(*adapter).PortForward", 10*time.Second)
}

func TestPortForwardUnknownSandbox(t *testing.T) {
	s := startServer(t, config.Streaming{}, newFakeBackend())
	tg := serveTarget(t, listen(t, "", "127.0.0.1:0"), "reply")
	local, _ := spdyForward(t, s, "nope", tg.port())
	c := dialLocal(t, local)
	c.CloseWrite()
	if got, _ := io.ReadAll(c); len(got) != 0 {
		t.Fatalf("got %q through an unknown sandbox", got)
	}
}
