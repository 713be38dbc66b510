package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"
)

// The streaming tests drive crid's Exec/Attach/PortForward URLs with the
// clients kubelet's callers use: client-go's remotecommand (SPDY and
// WebSocket v5) and portforward (SPDY, and SPDY tunnelled over WebSocket),
// and the real crictl.

var transports = []string{"spdy", "websocket"}

func executor(t *testing.T, transport, rawURL string) remotecommand.Executor {
	t.Helper()
	e, err := newExecutor(transport, rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newExecutor is a client of the stream at rawURL over transport.
func newExecutor(transport, rawURL string) (remotecommand.Executor, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse stream URL %q: %w", rawURL, err)
	}
	switch transport {
	case "spdy":
		return remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	case "websocket":
		return remotecommand.NewWebSocketExecutor(&rest.Config{}, "GET", u.String())
	}
	return nil, fmt.Errorf("unknown transport %s", transport)
}

func execURL(t *testing.T, req *runtime.ExecRequest) string {
	t.Helper()
	resp, err := h.rt.Exec(ctxT(t), req)
	if err != nil {
		t.Fatalf("Exec %v: %v", req.Cmd, err)
	}
	return resp.Url
}

// streamExec runs cmd over transport; stdin, if not nil, is the client's stdin.
func streamExec(ctx context.Context, t *testing.T, transport, id string, stdin io.Reader, stdout, stderr io.Writer, cmd ...string) error {
	t.Helper()
	u := execURL(t, &runtime.ExecRequest{ContainerId: id, Cmd: cmd, Stdin: stdin != nil, Stdout: stdout != nil, Stderr: stderr != nil})
	return executor(t, transport, u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

func exitStatus(err error) (int, bool) {
	var ee utilexec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus(), true
	}
	return 0, false
}

// syncBuffer is a bytes.Buffer written by stream goroutines and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sizeQueue hands the client's terminal sizes to remotecommand.
type sizeQueue chan remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q
	if !ok {
		return nil
	}
	return &sz
}

// psHas reports whether a process whose command line contains s runs in the container.
func psHas(t *testing.T, id, s string) bool {
	t.Helper()
	out := string(execSync(t, id, 10, "ps", "-o", "pid,args").Stdout)
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) && !strings.Contains(l, "ps -o") {
			return true
		}
	}
	return false
}

func cridFDs(t *testing.T) int {
	t.Helper()
	e, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", h.crid.Process.Pid))
	if err != nil {
		t.Fatalf("crid fds: %v", err)
	}
	return len(e)
}

func TestStreamingExec(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	id := createStart(t, podID, pod, containerConfig("sleeper", "sleep", "100000"))

	// A file of random data whose digest the container computes itself.
	execSync(t, id, 30, "sh", "-c", "head -c 6291456 /dev/urandom > /tmp/big")
	sum := strings.Fields(string(execSync(t, id, 30, "sha256sum", "/tmp/big").Stdout))
	if len(sum) == 0 {
		t.Fatal("sha256sum in the container printed nothing")
	}

	for i, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := ctxT(t)
			t.Run("exit code", func(t *testing.T) {
				err := streamExec(ctx, t, tr, id, nil, io.Discard, io.Discard, "sh", "-c", "exit 7")
				if code, ok := exitStatus(err); !ok || code != 7 {
					t.Errorf("exit 7: err %v (code %d)", err, code)
				}
				if err := streamExec(ctx, t, tr, id, nil, io.Discard, nil, "true"); err != nil {
					t.Errorf("true: %v", err)
				}
				err = streamExec(ctx, t, tr, id, nil, io.Discard, io.Discard, "/no/such/binary")
				if err == nil {
					t.Error("exec of a missing binary succeeded")
				}
			})
			t.Run("stdout stderr", func(t *testing.T) {
				var out, errb bytes.Buffer
				if err := streamExec(ctx, t, tr, id, nil, &out, &errb, "sh", "-c", "echo out; echo err >&2; echo out2"); err != nil {
					t.Fatal(err)
				}
				if out.String() != "out\nout2\n" || errb.String() != "err\n" {
					t.Errorf("stdout %q stderr %q", out.String(), errb.String())
				}
			})
			t.Run("stdin", func(t *testing.T) {
				// cat ends only when the client's stdin is half-closed.
				in := strings.Repeat("line of stdin\n", 5000)
				var out bytes.Buffer
				if err := streamExec(ctx, t, tr, id, strings.NewReader(in), &out, nil, "cat"); err != nil {
					t.Fatal(err)
				}
				if out.String() != in {
					t.Errorf("cat returned %d bytes, sent %d", out.Len(), len(in))
				}
			})
			t.Run("tty resize", func(t *testing.T) {
				u := execURL(t, &runtime.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "stty size; while read x; do [ \"$x\" = q ] && exit 0; stty size; done"}, Stdin: true, Stdout: true, Tty: true})
				q := make(sizeQueue, 2)
				q <- remotecommand.TerminalSize{Width: 100, Height: 30}
				inR, inW := io.Pipe()
				var out syncBuffer
				done := make(chan error, 1)
				go func() {
					done <- executor(t, tr, u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: inR, Stdout: &out, Tty: true, TerminalSizeQueue: q})
				}()
				if !waitFor(10*time.Second, func() bool { return strings.Contains(out.String(), "30 100") }) {
					t.Fatalf("initial size not seen: %q", out.String())
				}
				q <- remotecommand.TerminalSize{Width: 120, Height: 40}
				ok := waitFor(10*time.Second, func() bool {
					io.WriteString(inW, "\n")
					return strings.Contains(out.String(), "40 120")
				})
				if !ok {
					t.Errorf("size after resize not seen: %q", out.String())
				}
				// A terminal has no end of input: the shell is told to leave.
				io.WriteString(inW, "q\n")
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("tty exec: %v", err)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("tty exec did not end after the shell exited")
				}
				inW.Close()
				close(q)
			})
			t.Run("large output", func(t *testing.T) {
				hash := sha256.New()
				var n countWriter
				if err := streamExec(ctx, t, tr, id, nil, io.MultiWriter(hash, &n), nil, "cat", "/tmp/big"); err != nil {
					t.Fatal(err)
				}
				if got := hex.EncodeToString(hash.Sum(nil)); got != sum[0] || n != 6291456 {
					t.Errorf("received %d bytes with sha256 %s, want 6291456 with %s", n, got, sum[0])
				}
			})
			t.Run("client killed", func(t *testing.T) {
				fdsBefore := cridFDs(t)
				marker := strconv.Itoa(4200 + i)
				for round := 0; round < 5; round++ {
					cctx, cancel := context.WithCancel(ctx)
					var out syncBuffer
					done := make(chan error, 1)
					go func() {
						done <- streamExec(cctx, t, tr, id, nil, &out, nil, "sh", "-c", "echo started; exec sleep "+marker)
					}()
					if !waitFor(10*time.Second, func() bool { return strings.Contains(out.String(), "started") }) {
						cancel()
						t.Fatalf("exec did not start: %q", out.String())
					}
					cancel()
					select {
					case <-done:
					case <-time.After(10 * time.Second):
						t.Fatal("client stream did not end after its context was cancelled")
					}
				}
				if !waitFor(10*time.Second, func() bool { return !psHas(t, id, "sleep "+marker) }) {
					t.Errorf("exec'd process outlived its killed client:\n%s", execSync(t, id, 10, "ps", "-o", "pid,args").Stdout)
				}
				// crid still answers and has released what the sessions held.
				if _, err := h.rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
					t.Fatalf("crid stopped answering: %v", err)
				}
				var fds int
				if !waitFor(10*time.Second, func() bool { fds = cridFDs(t); return fds <= fdsBefore+2 }) {
					t.Errorf("crid holds %d fds after the killed sessions, %d before", fds, fdsBefore)
				}
			})
			t.Run("concurrent", func(t *testing.T) {
				var wg sync.WaitGroup
				errs := make(chan error, 20)
				for n := 0; n < 20; n++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var out bytes.Buffer
						err := streamExec(ctx, t, tr, id, nil, &out, nil, "sh", "-c", "sleep 0.2; echo exec-$0", strconv.Itoa(n))
						if err != nil {
							errs <- fmt.Errorf("exec %d: %w", n, err)
						} else if want := fmt.Sprintf("exec-%d\n", n); out.String() != want {
							errs <- fmt.Errorf("exec %d: output %q, want %q", n, out.String(), want)
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			})
		})
	}
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

func attachURL(t *testing.T, req *runtime.AttachRequest) string {
	t.Helper()
	resp, err := h.rt.Attach(ctxT(t), req)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return resp.Url
}

func TestStreamingAttach(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")

	shCfg := containerConfig("shtty", "sh")
	shCfg.Stdin, shCfg.Tty = true, true
	sh := createStart(t, podID, pod, shCfg)
	catCfg := containerConfig("cat", "cat")
	catCfg.Stdin = true
	cat := createStart(t, podID, pod, catCfg)

	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := ctxT(t)
			t.Run("tty shell", func(t *testing.T) {
				u := attachURL(t, &runtime.AttachRequest{ContainerId: sh, Stdin: true, Stdout: true, Tty: true})
				actx, detach := context.WithCancel(ctx)
				inR, inW := io.Pipe()
				var out syncBuffer
				done := make(chan error, 1)
				go func() {
					done <- executor(t, tr, u).StreamWithContext(actx, remotecommand.StreamOptions{Stdin: inR, Stdout: &out, Tty: true})
				}()
				ok := waitFor(10*time.Second, func() bool {
					io.WriteString(inW, "echo attached-$((6*7))\n")
					return strings.Contains(out.String(), "attached-42")
				})
				if !ok {
					t.Errorf("shell output not seen: %q", out.String())
				}
				detach()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("attach did not end on detach")
				}
				time.Sleep(300 * time.Millisecond)
				if st := containerStatus(t, sh); st.State != runtime.ContainerState_CONTAINER_RUNNING {
					t.Errorf("container %v after detach", st.State)
				}
			})
			t.Run("several attachers", func(t *testing.T) {
				actx, detach := context.WithCancel(ctx)
				defer detach()
				var outs [3]syncBuffer
				var wg sync.WaitGroup
				for n := range outs {
					u := attachURL(t, &runtime.AttachRequest{ContainerId: cat, Stdout: true, Stderr: true})
					wg.Add(1)
					go func() {
						defer wg.Done()
						executor(t, tr, u).StreamWithContext(actx, remotecommand.StreamOptions{Stdout: &outs[n], Stderr: io.Discard})
					}()
				}
				// The writer: stdin of cat, echoed to every attacher.
				u := attachURL(t, &runtime.AttachRequest{ContainerId: cat, Stdin: true, Stdout: true, Stderr: true})
				inR, inW := io.Pipe()
				var own syncBuffer
				wg.Add(1)
				go func() {
					defer wg.Done()
					executor(t, tr, u).StreamWithContext(actx, remotecommand.StreamOptions{Stdin: inR, Stdout: &own, Stderr: io.Discard})
				}()
				msg := "hello-" + tr
				ok := waitFor(10*time.Second, func() bool {
					io.WriteString(inW, msg+"\n")
					all := strings.Contains(own.String(), msg)
					for n := range outs {
						all = all && strings.Contains(outs[n].String(), msg)
					}
					return all
				})
				if !ok {
					t.Errorf("not every attacher saw the echo: own %q, others %q %q %q", own.String(), outs[0].String(), outs[1].String(), outs[2].String())
				}
				// Closing stdin of an attach without stdin_once leaves
				// the container's stdin open.
				inW.Close()
				detach()
				wg.Wait()
				time.Sleep(300 * time.Millisecond)
				if st := containerStatus(t, cat); st.State != runtime.ContainerState_CONTAINER_RUNNING {
					t.Errorf("cat %v after its attachers left", st.State)
				}
			})
			t.Run("stdin once", func(t *testing.T) {
				cfg := containerConfig("once-"+tr, "sh", "-c", "cat; echo cat-ended")
				cfg.Stdin, cfg.StdinOnce = true, true
				once := createStart(t, podID, pod, cfg)
				u := attachURL(t, &runtime.AttachRequest{ContainerId: once, Stdin: true, Stdout: true, Stderr: true})
				var out syncBuffer
				err := executor(t, tr, u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("only once\n"), Stdout: &out, Stderr: io.Discard})
				if err != nil {
					t.Errorf("attach: %v", err)
				}
				st := waitExited(t, once, 10*time.Second)
				if st.ExitCode != 0 {
					t.Errorf("exit code %d", st.ExitCode)
				}
				logs := strings.Join(readLines(t, filepath.Join(pod.LogDirectory, cfg.LogPath)), "\n")
				if !strings.Contains(logs, "only once") || !strings.Contains(logs, "cat-ended") {
					t.Errorf("log after stdin_once attach: %q (attach saw %q)", logs, out.String())
				}
			})
		})
	}
}

// forward starts a client-go port forward to the sandbox's remote port and
// returns the local port; it stops with the test.
func forward(t *testing.T, transport, podID string, remote int) int {
	t.Helper()
	resp, err := h.rt.PortForward(ctxT(t), &runtime.PortForwardRequest{PodSandboxId: podID, Port: []int32{int32(remote)}})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{}
	var pf *portforward.PortForwarder
	stop, ready := make(chan struct{}), make(chan struct{})
	var out, errOut syncBuffer
	switch transport {
	case "spdy":
		rt, upgrader, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pf, err = portforward.New(spdy.NewDialer(upgrader, &http.Client{Transport: rt}, "POST", u), []string{fmt.Sprintf("0:%d", remote)}, stop, ready, &out, &errOut)
		if err != nil {
			t.Fatal(err)
		}
	case "websocket":
		// What crictl -r websocket and kubectl do: SPDY tunnelled
		// through a WebSocket.
		d, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
		if err != nil {
			t.Fatal(err)
		}
		pf, err = portforward.New(d, []string{fmt.Sprintf("0:%d", remote)}, stop, ready, &out, &errOut)
		if err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port forward over %s: %v (%s)", transport, err, errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatal("port forward not ready")
	}
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("forwarded ports %v: %v", ports, err)
	}
	return int(ports[0].Local)
}

func httpGet(port int, path string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

// startHTTPD starts a container serving files named 0..9 (and a 2 MiB one)
// on port and returns once it answers there. A forward must not reach the
// port before that: client-go's port forwarder closes the whole connection
// on the first error any forwarded stream reports, so a GET that races
// httpd's listen (connection refused in the pod) kills the forward.
func startHTTPD(t *testing.T, podID string, pod *runtime.PodSandboxConfig, name string, port int) string {
	t.Helper()
	id := createStart(t, podID, pod, containerConfig(name, "sh", "-c", fmt.Sprintf(
		"mkdir -p /www && for i in 0 1 2 3 4 5 6 7 8 9; do echo file-$i > /www/$i; done && head -c 2097152 /dev/zero > /www/big && exec httpd -f -p %d -h /www", port)))
	probe := fmt.Sprintf("wget -q -O - http://127.0.0.1:%d/0", port)
	var last *runtime.ExecSyncResponse
	if !waitFor(20*time.Second, func() bool {
		last = execSync(t, id, 5, "sh", "-c", probe)
		return last.ExitCode == 0 && string(last.Stdout) == "file-0\n"
	}) {
		t.Fatalf("httpd in %s not answering on port %d: exit %d, %q %q", name, port, last.ExitCode, last.Stdout, last.Stderr)
	}
	return id
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestStreamingPortForward(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	startHTTPD(t, podID, pod, "httpd", 8080)

	hostPod := podConfig(t)
	hostPod.Metadata.Name += "-host"
	hostPod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}
	hostPodID := runPod(t, hostPod, "")
	hostPort := freeTCPPort(t)
	startHTTPD(t, hostPodID, hostPod, "httpd-host", hostPort)

	cases := []struct {
		name  string
		podID string
		port  int
	}{{"pod network", podID, 8080}, {"host network", hostPodID, hostPort}}
	for _, tr := range transports {
		for _, c := range cases {
			t.Run(tr+"/"+c.name, func(t *testing.T) {
				local := forward(t, tr, c.podID, c.port)
				if _, err := httpGet(local, "/0"); err != nil {
					t.Fatalf("GET through the forward: %v", err)
				}
				var wg sync.WaitGroup
				errs := make(chan error, 20)
				for n := 0; n < 20; n++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if n%10 == 9 {
							body, err := httpGet(local, "/big")
							if err == nil && len(body) != 2097152 {
								err = fmt.Errorf("big: %d bytes", len(body))
							}
							if err != nil {
								errs <- err
							}
							return
						}
						body, err := httpGet(local, fmt.Sprintf("/%d", n%10))
						if err == nil && body != fmt.Sprintf("file-%d\n", n%10) {
							err = fmt.Errorf("file %d: %q", n%10, body)
						}
						if err != nil {
							errs <- err
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			})
		}
	}
}

func TestStreamingErrors(t *testing.T) {
	pull(t, busybox)
	ctx := ctxT(t)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	cr, err := h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("created", "sleep", "100"), SandboxConfig: pod})
	if err != nil {
		t.Fatal(err)
	}
	stopped := createStart(t, podID, pod, containerConfig("stopped", "sleep", "100"))
	if _, err := h.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: stopped, Timeout: 5}); err != nil {
		t.Fatal(err)
	}
	const unknown = "0123456789abcdef0123"
	check := func(name string, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	for _, c := range []struct {
		id   string
		want codes.Code
	}{{unknown, codes.NotFound}, {stopped, codes.FailedPrecondition}, {cr.ContainerId, codes.FailedPrecondition}} {
		_, err := h.rt.Exec(ctx, &runtime.ExecRequest{ContainerId: c.id, Cmd: []string{"true"}, Stdout: true})
		check("Exec "+c.id, err, c.want)
		_, err = h.rt.Attach(ctx, &runtime.AttachRequest{ContainerId: c.id, Stdout: true})
		check("Attach "+c.id, err, c.want)
		_, err = h.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: c.id, Cmd: []string{"true"}})
		check("ExecSync "+c.id, err, c.want)
	}
	_, err = h.rt.PortForward(ctx, &runtime.PortForwardRequest{PodSandboxId: unknown, Port: []int32{80}})
	check("PortForward unknown sandbox", err, codes.NotFound)
	_, err = h.rt.Exec(ctx, &runtime.ExecRequest{ContainerId: stopped, Cmd: []string{"true"}})
	check("Exec without streams", err, codes.InvalidArgument)

	// A URL is good for one session only.
	run := createStart(t, podID, pod, containerConfig("running", "sleep", "100"))
	u := execURL(t, &runtime.ExecRequest{ContainerId: run, Cmd: []string{"true"}, Stdout: true})
	if err := executor(t, "spdy", u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if err := executor(t, "websocket", u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
		t.Error("second use of an exec URL succeeded")
	}
}

// crictlCmd is crictl against crid with the given arguments.
func crictlCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	crictl := os.Getenv("CRICTL")
	if crictl == "" {
		var err error
		if crictl, err = exec.LookPath("crictl"); err != nil {
			t.Fatal("crictl not found: set CRICTL")
		}
	}
	endpoint := "unix://" + h.socket
	cfg := filepath.Join(h.base, "crictl.yaml")
	if _, err := os.Stat(cfg); err != nil {
		os.WriteFile(cfg, []byte("runtime-endpoint: "+endpoint+"\nimage-endpoint: "+endpoint+"\n"), 0o644)
	}
	return exec.Command(crictl, append([]string{"--config", cfg, "--runtime-endpoint", endpoint, "--timeout", "60s"}, args...)...)
}

func TestStreamingCrictl(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	id := createStart(t, podID, pod, containerConfig("sleeper", "sleep", "100000"))
	catCfg := containerConfig("cat", "cat")
	catCfg.Stdin = true
	cat := createStart(t, podID, pod, catCfg)
	startHTTPD(t, podID, pod, "httpd", 8080)

	for i, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Run("exec", func(t *testing.T) {
				cmd := crictlCmd(t, "exec", "-r", tr, id, "sh", "-c", "echo out; echo err >&2")
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				if err := cmd.Run(); err != nil {
					t.Fatalf("crictl exec: %v\n%s", err, errb.String())
				}
				if out.String() != "out\n" || !strings.Contains(errb.String(), "err\n") || strings.Contains(errb.String(), "out") {
					t.Errorf("stdout %q stderr %q", out.String(), errb.String())
				}
				cmd = crictlCmd(t, "exec", "-r", tr, id, "sh", "-c", "exit 4")
				if err := cmd.Run(); err == nil {
					t.Error("crictl exec of a failing command succeeded")
				}
				cmd = crictlCmd(t, "exec", "-r", tr, "-i", id, "sh", "-c", "cat; echo eof-seen")
				cmd.Stdin = strings.NewReader("piped stdin\n")
				b, err := cmd.Output()
				if err != nil || string(b) != "piped stdin\neof-seen\n" {
					t.Errorf("crictl exec -i: %q, %v", b, err)
				}
			})
			t.Run("exec tty", func(t *testing.T) {
				cmd := crictlCmd(t, "exec", "-r", tr, "-i", "-t", id, "sh")
				ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 25, Cols: 90})
				if err != nil {
					t.Fatal(err)
				}
				defer ptmx.Close()
				var out syncBuffer
				go io.Copy(&out, ptmx)
				if !waitFor(15*time.Second, func() bool {
					io.WriteString(ptmx, "echo tty-$((6*7))\r")
					return strings.Contains(out.String(), "tty-42")
				}) {
					t.Fatalf("no shell output: %q", out.String())
				}
				if !waitFor(10*time.Second, func() bool {
					io.WriteString(ptmx, "stty size\r")
					return strings.Contains(out.String(), "25 90")
				}) {
					t.Errorf("initial size not seen: %q", out.String())
				}
				pty.Setsize(ptmx, &pty.Winsize{Rows: 33, Cols: 111})
				if !waitFor(10*time.Second, func() bool {
					io.WriteString(ptmx, "stty size\r")
					return strings.Contains(out.String(), "33 111")
				}) {
					t.Errorf("size after resize not seen: %q", out.String())
				}
				io.WriteString(ptmx, "exit 0\r")
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("crictl exec -it: %v", err)
					}
				case <-time.After(15 * time.Second):
					cmd.Process.Kill()
					t.Error("crictl exec -it did not end after exit")
				}
			})
			t.Run("killed client", func(t *testing.T) {
				marker := strconv.Itoa(4300 + i)
				cmd := crictlCmd(t, "exec", "-r", tr, id, "sh", "-c", "echo started; exec sleep "+marker)
				stdout, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				line, _ := bufio.NewReader(stdout).ReadString('\n')
				if line != "started\n" {
					t.Errorf("first line %q", line)
				}
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				if !waitFor(10*time.Second, func() bool { return !psHas(t, id, "sleep "+marker) }) {
					t.Errorf("exec outlived its killed crictl:\n%s", execSync(t, id, 10, "ps", "-o", "pid,args").Stdout)
				}
			})
			t.Run("attach", func(t *testing.T) {
				cmd := crictlCmd(t, "attach", "-r", tr, "-i", cat)
				inR, inW := io.Pipe()
				cmd.Stdin = inR
				var out syncBuffer
				cmd.Stdout = &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				msg := "crictl-attach-" + tr
				ok := waitFor(15*time.Second, func() bool {
					io.WriteString(inW, msg+"\n")
					return strings.Contains(out.String(), msg)
				})
				cmd.Process.Signal(syscall.SIGKILL)
				inW.Close() // else Wait waits for the stdin copier
				cmd.Wait()
				if !ok {
					t.Errorf("crictl attach output %q", out.String())
				}
				time.Sleep(300 * time.Millisecond)
				if st := containerStatus(t, cat); st.State != runtime.ContainerState_CONTAINER_RUNNING {
					t.Errorf("cat %v after crictl attach was killed", st.State)
				}
			})
			t.Run("port-forward", func(t *testing.T) {
				cmd := crictlCmd(t, "port-forward", "-r", tr, podID, "0:8080")
				stdout, _ := cmd.StdoutPipe()
				var errb syncBuffer
				cmd.Stderr = &errb
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() }()
				re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
				lines := bufio.NewScanner(stdout)
				local := 0
				for lines.Scan() {
					if m := re.FindStringSubmatch(lines.Text()); m != nil {
						local, _ = strconv.Atoi(m[1])
						break
					}
				}
				if local == 0 {
					t.Fatalf("crictl port-forward printed no local port; stderr %q", errb.String())
				}
				go io.Copy(io.Discard, stdout)
				var body string
				var err error
				if !waitFor(10*time.Second, func() bool { body, err = httpGet(local, "/3"); return err == nil }) || body != "file-3\n" {
					t.Errorf("GET through crictl port-forward: %q, %v; stderr %q", body, err, errb.String())
				}
			})
		})
	}
}

func percentiles(ds []time.Duration) string {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	p := func(q float64) time.Duration {
		i := int(q*float64(len(ds))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(ds) {
			i = len(ds) - 1
		}
		return ds[i].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %v p90 %v p99 %v (n=%d, min %v, max %v)", p(0.5), p(0.9), p(0.99), len(ds), ds[0].Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond))
}

// firstByte records when the first output arrives.
type firstByte struct {
	once sync.Once
	at   time.Time
	buf  bytes.Buffer
}

func (f *firstByte) Write(p []byte) (int, error) {
	f.once.Do(func() { f.at = time.Now() })
	return f.buf.Write(p)
}

// TestExecLatency measures exec latency on this machine. It only logs:
// timing never fails a test.
func TestExecLatency(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	id := createStart(t, podID, pod, containerConfig("sleeper", "sleep", "100000"))
	ctx := ctxT(t)
	const runs = 50
	var ttfb, total, syncTotal []time.Duration
	for n := 0; n < runs; n++ {
		start := time.Now()
		resp, err := h.rt.Exec(ctx, &runtime.ExecRequest{ContainerId: id, Cmd: []string{"echo", "hi"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		var fb firstByte
		if err := executor(t, "spdy", resp.Url).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &fb}); err != nil {
			t.Fatal(err)
		}
		end := time.Now()
		if fb.buf.String() != "hi\n" {
			t.Fatalf("output %q", fb.buf.String())
		}
		ttfb = append(ttfb, fb.at.Sub(start))
		total = append(total, end.Sub(start))
	}
	for n := 0; n < runs; n++ {
		start := time.Now()
		r := execSync(t, id, 10, "true")
		syncTotal = append(syncTotal, time.Since(start))
		if r.ExitCode != 0 {
			t.Fatalf("true exited %d", r.ExitCode)
		}
	}
	t.Logf("streaming exec (SPDY) `echo hi`, time to first byte (from the Exec RPC): %s", percentiles(ttfb))
	t.Logf("streaming exec (SPDY) `echo hi`, time to exit status:                    %s", percentiles(total))
	t.Logf("ExecSync `true`:                                                         %s", percentiles(syncTotal))
}
