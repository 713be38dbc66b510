package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The replay server is the list scenario's floor: it answers each gRPC
// method with response bytes recorded from the runtime under test and does
// nothing else — no lookup, no encoding, no goroutine per call, one write
// per response. The same client calling it measures what any server must
// cost for that call on this machine: the client's own work, the kernel's
// socket round trip and decoding the same bytes. A runtime's figure minus
// the replayed one is all that runtime's own overhead could ever save.
//
// It speaks just enough HTTP/2 for a gRPC client (settings, pings, flow
// control both ways) and runs in a child process so it does not share the
// measuring client's Go scheduler.

// ReplayCommand is the argument that makes crid-bench (or a test binary)
// run ReplayMain.
const ReplayCommand = "replay-server"

// ReplayMain serves the responses read as JSON (gRPC method path → message
// bytes) from stdin on the unix socket args[0], writes "ready" to stdout
// once listening, and serves until stdin is closed.
func ReplayMain(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: %s SOCKET < responses.json", ReplayCommand)
	}
	dec := json.NewDecoder(stdin)
	var responses map[string][]byte
	if err := dec.Decode(&responses); err != nil {
		return fmt.Errorf("read responses: %w", err)
	}
	l, err := net.Listen("unix", args[0])
	if err != nil {
		return err
	}
	defer l.Close()
	go func() { _ = ServeReplay(l, responses) }()
	if _, err := fmt.Fprintln(stdout, "ready"); err != nil {
		return err
	}
	// The parent closes stdin (or dies) when it is done.
	_, _ = io.Copy(io.Discard, dec.Buffered())
	_, _ = io.Copy(io.Discard, stdin)
	return nil
}

// ServeReplay accepts connections on l until it is closed and answers
// every call to a method in responses with its bytes; other methods get
// Unimplemented.
func ServeReplay(l net.Listener, responses map[string][]byte) error {
	framed := make(map[string][]byte, len(responses))
	for path, msg := range responses {
		b := make([]byte, 5+len(msg))
		binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
		copy(b[5:], msg)
		framed[path] = b
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_ = newReplayConn(c, framed).serve()
		}()
	}
}

// replayStream is a response being sent: its data waits for flow-control
// window, then the trailers follow.
type replayStream struct {
	id     uint32
	window int64
	data   []byte
}

type replayConn struct {
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	fr        *http2.Framer
	responses map[string][]byte

	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	paths    map[uint32]string // requests whose body is still arriving
	sending  []*replayStream   // in arrival order
	connWin  int64             // what the peer lets us send on the connection
	initWin  int64             // the peer's initial stream window
	maxFrame int
}

func newReplayConn(c net.Conn, responses map[string][]byte) *replayConn {
	rc := &replayConn{
		c:         c,
		br:        bufio.NewReaderSize(c, 64<<10),
		bw:        bufio.NewWriterSize(c, 64<<10),
		responses: responses,
		paths:     map[uint32]string{},
		connWin:   65535,
		initWin:   65535,
		maxFrame:  16384,
	}
	rc.fr = http2.NewFramer(rc.bw, rc.br)
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	return rc
}

func (rc *replayConn) serve() error {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(rc.br, preface); err != nil || string(preface) != http2.ClientPreface {
		return fmt.Errorf("bad client preface")
	}
	if err := rc.fr.WriteSettings(); err != nil {
		return err
	}
	for {
		// Write what is ready before blocking for more input: one write
		// per burst of requests, as a server should.
		if rc.br.Buffered() == 0 {
			if err := rc.bw.Flush(); err != nil {
				return err
			}
		}
		f, err := rc.fr.ReadFrame()
		if err != nil {
			return err
		}
		if err := rc.handle(f); err != nil {
			return err
		}
		if err := rc.pump(); err != nil {
			return err
		}
	}
}

func (rc *replayConn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		err := f.ForeachSetting(func(s http2.Setting) error {
			switch s.ID {
			case http2.SettingInitialWindowSize:
				delta := int64(s.Val) - rc.initWin
				rc.initWin = int64(s.Val)
				for _, st := range rc.sending {
					st.window += delta
				}
			case http2.SettingMaxFrameSize:
				rc.maxFrame = int(s.Val)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return rc.fr.WriteSettingsAck()
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		return rc.fr.WritePing(true, f.Data)
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			rc.connWin += int64(f.Increment)
			return nil
		}
		for _, st := range rc.sending {
			if st.id == f.StreamID {
				st.window += int64(f.Increment)
			}
		}
		return nil
	case *http2.MetaHeadersFrame:
		path := f.PseudoValue("path")
		if f.StreamEnded() {
			return rc.respond(f.StreamID, path)
		}
		rc.paths[f.StreamID] = path
		return nil
	case *http2.DataFrame:
		if n := len(f.Data()); n > 0 {
			// Give the connection window back; the stream ends with
			// its one request message, so its own window does not matter.
			if err := rc.fr.WriteWindowUpdate(0, uint32(n)); err != nil {
				return err
			}
		}
		if f.StreamEnded() {
			path := rc.paths[f.StreamID]
			delete(rc.paths, f.StreamID)
			return rc.respond(f.StreamID, path)
		}
		return nil
	case *http2.RSTStreamFrame:
		delete(rc.paths, f.StreamID)
		for i, st := range rc.sending {
			if st.id == f.StreamID {
				rc.sending = append(rc.sending[:i], rc.sending[i+1:]...)
				break
			}
		}
		return nil
	case *http2.GoAwayFrame:
		return io.EOF
	}
	return nil
}

func (rc *replayConn) headers(id uint32, end bool, fields ...string) error {
	rc.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		if err := rc.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
			return err
		}
	}
	return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndHeaders: true, EndStream: end})
}

func (rc *replayConn) respond(id uint32, path string) error {
	data, ok := rc.responses[path]
	if !ok {
		return rc.headers(id, true, ":status", "200", "content-type", "application/grpc",
			"grpc-status", "12", "grpc-message", "replay server: no recorded response for "+path)
	}
	if err := rc.headers(id, false, ":status", "200", "content-type", "application/grpc"); err != nil {
		return err
	}
	rc.sending = append(rc.sending, &replayStream{id: id, window: rc.initWin, data: data})
	return nil
}

// pump sends as much response data as the windows allow, and the trailers
// of every response that is complete.
func (rc *replayConn) pump() error {
	kept := rc.sending[:0]
	for _, st := range rc.sending {
		for len(st.data) > 0 && rc.connWin > 0 && st.window > 0 {
			n := min(int64(len(st.data)), rc.connWin, st.window, int64(rc.maxFrame))
			if err := rc.fr.WriteData(st.id, false, st.data[:n]); err != nil {
				return err
			}
			st.data = st.data[n:]
			rc.connWin -= n
			st.window -= n
		}
		if len(st.data) > 0 {
			kept = append(kept, st)
			continue
		}
		if err := rc.headers(st.id, true, "grpc-status", "0"); err != nil {
			return err
		}
	}
	rc.sending = kept
	return nil
}

// replayProc is a replay server running in a child process.
type replayProc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	dir      string
	Endpoint string
}

// startReplay starts exe as a replay server (exe must call ReplayMain when
// its first argument is ReplayCommand) serving responses.
func startReplay(ctx context.Context, exe string, responses map[string][]byte) (*replayProc, error) {
	dir, err := os.MkdirTemp("", "crid-bench-replay-")
	if err != nil {
		return nil, fmt.Errorf("replay server: %w", err)
	}
	sock := filepath.Join(dir, "replay.sock")
	cmd := exec.CommandContext(ctx, exe, ReplayCommand, sock)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("replay server: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("replay server: %w", err)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start replay server %s: %w", exe, err)
	}
	p := &replayProc{cmd: cmd, stdin: stdin, dir: dir, Endpoint: "unix://" + sock}
	if err := json.NewEncoder(stdin).Encode(responses); err != nil {
		p.stop()
		return nil, fmt.Errorf("replay server: send responses: %w", err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = errors.New("not ready after 10s")
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("replay server: %w", err)
	}
	return p, nil
}

// stop ends the child (closing its stdin is its signal) and removes its
// socket directory.
func (p *replayProc) stop() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(p.dir)
}
