package streaming

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
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
	"github.com/crid-dev/crid/internal/monitor"
	"github.com/crid-dev/crid/internal/runc"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	clientexec "k8s.io/client-go/util/exec"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeBackend implements Backend with scripted commands (cmd[0]).
type fakeBackend struct {
	netns map[string]string // sandbox ID -> netns path

	mu      sync.Mutex
	sizes   []runc.Size
	started chan struct{} // "block": backend entered
	ended   chan struct{} // "block"/attach: ctx cancelled and stdin reader finished
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{netns: map[string]string{}, started: make(chan struct{}, 1), ended: make(chan struct{}, 1)}
}

func (f *fakeBackend) ExecStream(ctx context.Context, id string, cmd []string, eio runc.ExecIO) (int, error) {
	code := 0
	if len(cmd) > 1 {
		code, _ = strconv.Atoi(cmd[1])
	}
	switch cmd[0] {
	case "echo": // stdin to stdout until EOF, then a marker on stderr
		if eio.Stdin != nil {
			if _, err := io.Copy(eio.Stdout, eio.Stdin); err != nil {
				return -1, err
			}
		}
		fmt.Fprintf(eio.Stderr, "stderr of %s", id)
		return code, nil
	case "line": // one line of stdin to stdout (WebSocket v4 cannot close stdin)
		line, err := bufio.NewReader(eio.Stdin).ReadString('\n')
		if err != nil {
			return -1, err
		}
		io.WriteString(eio.Stdout, strings.ToUpper(line))
		io.WriteString(eio.Stderr, "err-line")
		return code, nil
	case "out": // no stdin
		io.WriteString(eio.Stdout, "out-data")
		io.WriteString(eio.Stderr, "err-data")
		return code, nil
	case "big": // cmd[1] MiB of a deterministic pattern
		buf := make([]byte, 1<<20)
		for i := 0; i < code; i++ {
			for j := range buf {
				buf[j] = byte((i*7 + j*13) % 251)
			}
			if _, err := eio.Stdout.Write(buf); err != nil {
				return -1, err
			}
		}
		return 0, nil
	case "tty": // report two resize events
		if !eio.Terminal || eio.Stderr != nil {
			return -1, fmt.Errorf("terminal=%v stderr=%v", eio.Terminal, eio.Stderr)
		}
		var got []string
		for sz := range eio.Resize {
			f.mu.Lock()
			f.sizes = append(f.sizes, sz)
			f.mu.Unlock()
			got = append(got, fmt.Sprintf("%dx%d", sz.Width, sz.Height))
			if len(got) == 2 {
				break
			}
		}
		fmt.Fprintf(eio.Stdout, "sizes %s\n", strings.Join(got, " "))
		return 0, nil
	case "block": // stream until the session ends
		return -1, f.block(ctx, eio.Stdin, eio.Stdout)
	case "fail":
		return -1, errors.New("runtime exploded")
	}
	return 127, nil
}

// block writes to out and reads stdin until ctx ends; it signals ended
// only once ctx is cancelled and its stdin reader has returned.
func (f *fakeBackend) block(ctx context.Context, in io.Reader, out io.Writer) error {
	f.started <- struct{}{}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		io.Copy(io.Discard, in)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			select {
			case <-readerDone:
				f.ended <- struct{}{}
			case <-time.After(5 * time.Second):
			}
			return ctx.Err()
		case <-tick.C:
			out.Write([]byte("tick\n")) // errors once the client is gone; keep waiting for ctx
		}
	}
}

func (f *fakeBackend) AttachStream(ctx context.Context, id string, o monitor.AttachOptions) error {
	if id == "blocking" {
		return f.block(ctx, o.Stdin, o.Stdout)
	}
	io.WriteString(o.Stdout, "attached to "+id+"\n")
	if o.Stderr != nil {
		io.WriteString(o.Stderr, "attach stderr\n")
	}
	if o.Stdin != nil {
		line, err := bufio.NewReader(o.Stdin).ReadString('\n')
		if err != nil {
			return err
		}
		io.WriteString(o.Stdout, "got "+line)
	}
	return nil
}

func (f *fakeBackend) SandboxNetNS(ctx context.Context, id string) (string, error) {
	p, ok := f.netns[id]
	if !ok {
		return "", fmt.Errorf("sandbox %s not found", id)
	}
	return p, nil
}

func startServer(t *testing.T, cfg config.Streaming, b Backend) *Server {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	s, err := New(cfg, b)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Start() }()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Start returned %v", err)
		}
	})
	return s
}

func newExecutor(t *testing.T, kind, rawURL string, cfg *rest.Config) remotecommand.Executor {
	t.Helper()
	if cfg == nil {
		cfg = &rest.Config{}
	}
	var (
		e   remotecommand.Executor
		err error
	)
	switch kind {
	case "spdy":
		u, perr := url.Parse(rawURL)
		if perr != nil {
			t.Fatal(perr)
		}
		e, err = remotecommand.NewSPDYExecutor(cfg, "POST", u)
	case "ws":
		// cri-streaming serves WebSocket v4, not the client's default v5.
		e, err = remotecommand.NewWebSocketExecutorForProtocols(cfg, "GET", rawURL, "v4.channel.k8s.io")
	default:
		t.Fatalf("unknown executor %q", kind)
	}
	if err != nil {
		t.Fatalf("executor: %v", err)
	}
	return e
}

func execURL(t *testing.T, s *Server, req *runtime.ExecRequest) string {
	t.Helper()
	resp, err := s.GetExec(req)
	if err != nil {
		t.Fatalf("GetExec: %v", err)
	}
	return resp.Url
}

func exitCode(err error) (int, bool) {
	var ce clientexec.CodeExitError
	if errors.As(err, &ce) {
		return ce.Code, true
	}
	return 0, false
}

func TestURLCarriesListeningPort(t *testing.T) {
	s := startServer(t, config.Streaming{Port: 0}, newFakeBackend())
	port := s.Addr().(*net.TCPAddr).Port
	if port == 0 {
		t.Fatal("listener has port 0")
	}
	u, err := url.Parse(execURL(t, s, &runtime.ExecRequest{ContainerId: "c", Cmd: []string{"out"}, Stdout: true}))
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "http" || u.Host != net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) || !strings.HasPrefix(u.Path, "/exec/") {
		t.Fatalf("exec URL %s does not point at the listener %s", u, s.Addr())
	}
}

// A wildcard bind address is replaced by a connectable one in URLs.
func TestURLForWildcardAddress(t *testing.T) {
	s := startServer(t, config.Streaming{Address: "0.0.0.0"}, newFakeBackend())
	u, err := url.Parse(execURL(t, s, &runtime.ExecRequest{ContainerId: "c", Cmd: []string{"out"}, Stdout: true}))
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		t.Fatalf("URL host %q is not a connectable address", host)
	}
	if port != strconv.Itoa(s.Addr().(*net.TCPAddr).Port) {
		t.Fatalf("URL port %s, listening on %s", port, s.Addr())
	}
	// And the advertised address works.
	e := newExecutor(t, "spdy", u.String(), nil)
	var out bytes.Buffer
	if err := e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out}); err != nil || out.String() != "out-data" {
		t.Fatalf("exec via %s: %v %q", u, err, out.String())
	}
}

func TestExecStreams(t *testing.T) {
	s := startServer(t, config.Streaming{}, newFakeBackend())
	tests := []struct {
		name       string
		kind       string
		cmd        []string
		stdin      string
		wantOut    string
		wantErr    string
		wantCode   int
		wantFailed bool // non-exit error
	}{
		{name: "spdy echo ok", kind: "spdy", cmd: []string{"echo", "0"}, stdin: "hello world", wantOut: "hello world", wantErr: "stderr of ctr"},
		{name: "spdy echo exit 3", kind: "spdy", cmd: []string{"echo", "3"}, stdin: "abc", wantOut: "abc", wantErr: "stderr of ctr", wantCode: 3},
		{name: "spdy no stdin exit 42", kind: "spdy", cmd: []string{"out", "42"}, wantOut: "out-data", wantErr: "err-data", wantCode: 42},
		{name: "spdy backend error", kind: "spdy", cmd: []string{"fail"}, wantFailed: true},
		{name: "ws line ok", kind: "ws", cmd: []string{"line", "0"}, stdin: "over websocket\n", wantOut: "OVER WEBSOCKET\n", wantErr: "err-line"},
		{name: "ws exit 7", kind: "ws", cmd: []string{"out", "7"}, wantOut: "out-data", wantErr: "err-data", wantCode: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &runtime.ExecRequest{ContainerId: "ctr", Cmd: tt.cmd, Stdin: tt.stdin != "", Stdout: true, Stderr: true}
			e := newExecutor(t, tt.kind, execURL(t, s, req), nil)
			var stdout, stderr bytes.Buffer
			opts := remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}
			if tt.stdin != "" {
				opts.Stdin = strings.NewReader(tt.stdin)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := e.StreamWithContext(ctx, opts)
			switch {
			case tt.wantFailed:
				if err == nil || !strings.Contains(err.Error(), "runtime exploded") {
					t.Fatalf("want backend error, got %v", err)
				}
				if _, ok := exitCode(err); ok {
					t.Fatalf("backend error reported as exit code: %v", err)
				}
				return
			case tt.wantCode != 0:
				code, ok := exitCode(err)
				if !ok || code != tt.wantCode {
					t.Fatalf("want exit code %d, got %v (%T)", tt.wantCode, err, err)
				}
			case err != nil:
				t.Fatalf("stream: %v", err)
			}
			if stdout.String() != tt.wantOut {
				t.Errorf("stdout = %q, want %q", stdout.String(), tt.wantOut)
			}
			if stderr.String() != tt.wantErr {
				t.Errorf("stderr = %q, want %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

type sizeQueue struct {
	ch chan remotecommand.TerminalSize
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q.ch
	if !ok {
		return nil
	}
	return &sz
}

func TestExecTTYResize(t *testing.T) {
	b := newFakeBackend()
	s := startServer(t, config.Streaming{}, b)
	for _, kind := range []string{"spdy", "ws"} {
		t.Run(kind, func(t *testing.T) {
			b.mu.Lock()
			b.sizes = nil
			b.mu.Unlock()
			req := &runtime.ExecRequest{ContainerId: "ctr", Cmd: []string{"tty"}, Tty: true, Stdout: true}
			e := newExecutor(t, kind, execURL(t, s, req), nil)
			q := &sizeQueue{ch: make(chan remotecommand.TerminalSize, 2)}
			q.ch <- remotecommand.TerminalSize{Width: 80, Height: 24}
			q.ch <- remotecommand.TerminalSize{Width: 132, Height: 43}
			defer close(q.ch)
			var stdout bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Tty: true, TerminalSizeQueue: q}); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if got, want := stdout.String(), "sizes 80x24 132x43\n"; got != want {
				t.Fatalf("stdout = %q, want %q", got, want)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.sizes) != 2 || b.sizes[1] != (runc.Size{Width: 132, Height: 43}) {
				t.Fatalf("backend saw sizes %v", b.sizes)
			}
		})
	}
}

func TestExecLargeOutput(t *testing.T) {
	const mib = 8
	want := sha256.New()
	buf := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		for j := range buf {
			buf[j] = byte((i*7 + j*13) % 251)
		}
		want.Write(buf)
	}
	s := startServer(t, config.Streaming{}, newFakeBackend())
	for _, kind := range []string{"spdy", "ws"} {
		t.Run(kind, func(t *testing.T) {
			req := &runtime.ExecRequest{ContainerId: "ctr", Cmd: []string{"big", strconv.Itoa(mib)}, Stdout: true}
			e := newExecutor(t, kind, execURL(t, s, req), nil)
			got := sha256.New()
			cw := &countWriter{w: got}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: cw}); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if cw.n != mib<<20 {
				t.Fatalf("got %d bytes, want %d", cw.n, mib<<20)
			}
			if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Fatal("output corrupted")
			}
		})
	}
}

type countWriter struct {
	w io.Writer
	n int
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	return c.w.Write(p)
}

// goroutinesIn counts goroutines whose stack mentions fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 4<<20)
	n := goruntime.Stack(buf, true)
	count := 0
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

func waitNoGoroutines(t *testing.T, fn string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for goroutinesIn(fn) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still in %s", goroutinesIn(fn), fn)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A client that goes away mid-stream cancels the backend's context and
// ends its stdin; nothing of the session stays behind.
func TestClientCancelEndsBackend(t *testing.T) {
	b := newFakeBackend()
	s := startServer(t, config.Streaming{}, b)
	for _, tc := range []struct{ kind, op string }{{"spdy", "exec"}, {"ws", "exec"}, {"spdy", "attach"}, {"ws", "attach"}} {
		t.Run(tc.kind+"-"+tc.op, func(t *testing.T) {
			var u string
			if tc.op == "exec" {
				u = execURL(t, s, &runtime.ExecRequest{ContainerId: "ctr", Cmd: []string{"block"}, Stdin: true, Stdout: true})
			} else {
				resp, err := s.GetAttach(&runtime.AttachRequest{ContainerId: "blocking", Stdin: true, Stdout: true})
				if err != nil {
					t.Fatal(err)
				}
				u = resp.Url
			}
			e := newExecutor(t, tc.kind, u, nil)
			ctx, cancel := context.WithCancel(context.Background())
			stdinR, stdinW := io.Pipe() // never closed by the client
			defer stdinW.Close()
			done := make(chan error, 1)
			go func() {
				done <- e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdinR, Stdout: io.Discard})
			}()
			select {
			case <-b.started:
			case <-time.After(10 * time.Second):
				t.Fatal("backend never started")
			}
			time.Sleep(50 * time.Millisecond) // let some output flow
			cancel()
			select {
			case <-b.ended:
			case <-time.After(10 * time.Second):
				t.Fatal("backend context not cancelled / stdin not closed after client went away")
			}
			<-done
			waitNoGoroutines(t, "streaming.(*adapter)", 10*time.Second)
			waitNoGoroutines(t, "(*fakeBackend).block", 10*time.Second)
		})
	}
}

func TestConcurrentExecs(t *testing.T) {
	s := startServer(t, config.Streaming{}, newFakeBackend())
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &runtime.ExecRequest{ContainerId: fmt.Sprintf("c%d", i), Cmd: []string{"echo", strconv.Itoa(i % 3)}, Stdin: true, Stdout: true, Stderr: true}
			e := newExecutor(t, "spdy", execURL(t, s, req), nil)
			in := strings.Repeat(fmt.Sprintf("payload-%d;", i), 1000)
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader(in), Stdout: &stdout, Stderr: &stderr})
			if code, _ := exitCode(err); code != i%3 || (err != nil && code == 0) {
				errs <- fmt.Errorf("exec %d: err %v, want exit %d", i, err, i%3)
				return
			}
			if stdout.String() != in || stderr.String() != fmt.Sprintf("stderr of c%d", i) {
				errs <- fmt.Errorf("exec %d: mixed up output (%d bytes stdout, stderr %q)", i, stdout.Len(), stderr.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAttach(t *testing.T) {
	s := startServer(t, config.Streaming{}, newFakeBackend())
	resp, err := s.GetAttach(&runtime.AttachRequest{ContainerId: "ctr", Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Url, "/attach/") {
		t.Fatalf("attach URL %s", resp.Url)
	}
	e := newExecutor(t, "spdy", resp.Url, nil)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("hi there\n"), Stdout: &stdout, Stderr: &stderr}); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if got, want := stdout.String(), "attached to ctr\ngot hi there\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := stderr.String(), "attach stderr\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

func TestTokens(t *testing.T) {
	s := startServer(t, config.Streaming{}, newFakeBackend())
	u := execURL(t, s, &runtime.ExecRequest{ContainerId: "ctr", Cmd: []string{"out"}, Stdout: true})
	e := newExecutor(t, "spdy", u, nil)
	var out bytes.Buffer
	if err := e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out}); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if out.String() != "out-data" {
		t.Fatalf("stdout %q", out.String())
	}
	for name, target := range map[string]string{
		"reused":    u,
		"bad":       s.URL() + "exec/notatokn",
		"wrongkind": strings.Replace(execURL(t, s, &runtime.ExecRequest{ContainerId: "ctr", Cmd: []string{"out"}, Stdout: true}), "/exec/", "/attach/", 1),
	} {
		resp, err := http.Post(target, "text/plain", nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s token: status %d, want 404", name, resp.StatusCode)
		}
	}
	// The real client fails on a reused token too.
	e = newExecutor(t, "spdy", u, nil)
	if err := e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
		t.Fatal("reused token accepted")
	}
}

func TestGetValidation(t *testing.T) {
	s := startServer(t, config.Streaming{}, newFakeBackend())
	if _, err := s.GetExec(&runtime.ExecRequest{Cmd: []string{"x"}, Stdout: true}); err == nil {
		t.Error("exec without container accepted")
	}
	if _, err := s.GetExec(&runtime.ExecRequest{ContainerId: "c", Cmd: []string{"x"}, Tty: true, Stderr: true}); err == nil {
		t.Error("exec with tty and stderr accepted")
	}
	if _, err := s.GetAttach(&runtime.AttachRequest{ContainerId: "c"}); err == nil {
		t.Error("attach without streams accepted")
	}
	if _, err := s.GetPortForward(&runtime.PortForwardRequest{}); err == nil {
		t.Error("port forward without sandbox accepted")
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(config.Streaming{Address: "127.0.0.1", TLSCert: certFile}, newFakeBackend()); err == nil {
		t.Fatal("cert without key accepted")
	}
	s := startServer(t, config.Streaming{TLSCert: certFile, TLSKey: keyFile}, newFakeBackend())
	u := execURL(t, s, &runtime.ExecRequest{ContainerId: "ctr", Cmd: []string{"echo", "5"}, Stdin: true, Stdout: true, Stderr: true})
	if !strings.HasPrefix(u, "https://") {
		t.Fatalf("TLS server handed out %s", u)
	}
	e := newExecutor(t, "spdy", u, &rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: certPEM}})
	var stdout, stderr bytes.Buffer
	err := e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: strings.NewReader("secret"), Stdout: &stdout, Stderr: &stderr})
	if code, _ := exitCode(err); code != 5 {
		t.Fatalf("want exit 5, got %v", err)
	}
	if stdout.String() != "secret" || stderr.String() != "stderr of ctr" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	// Plain HTTP to the TLS port is refused.
	resp, err := http.Post(strings.Replace(u, "https://", "http://", 1), "", nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on TLS port: %d", resp.StatusCode)
		}
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "crid-streaming-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// Stop ends running sessions: the backend's context is cancelled.
func TestStopEndsSessions(t *testing.T) {
	b := newFakeBackend()
	s, err := New(config.Streaming{Address: "127.0.0.1"}, b)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Start() }()
	u := execURL(t, s, &runtime.ExecRequest{ContainerId: "ctr", Cmd: []string{"block"}, Stdin: true, Stdout: true})
	e := newExecutor(t, "spdy", u, nil)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	done := make(chan error, 1)
	go func() {
		done <- e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: stdinR, Stdout: io.Discard})
	}()
	<-b.started
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-b.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not cancel the running exec")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("client still connected after Stop")
	}
	if err := <-served; err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still open after Stop")
	}
	waitNoGoroutines(t, "streaming.(*adapter)", 10*time.Second)
}
