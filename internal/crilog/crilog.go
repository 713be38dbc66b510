// Package crilog writes container output in the CRI log format that kubelet
// reads back (`kubectl logs`):
//
//	<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\n
//
// Each newline-terminated line becomes one "F" (full) record. A line longer
// than the maximum record size is cut into "P" (partial) records followed by
// the final "F". Like containerd, a trailing "\r\n" counts as the line end
// (TTY output) and data left without a newline when the stream ends is
// written as a "P" record.
package crilog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Stream names used in records.
type Stream string

const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Record tags.
const (
	TagPartial = "P"
	TagFull    = "F"
)

// DefaultMaxLineSize is the content size above which a line is split into
// several records (containerd's default max_container_log_line_size).
const DefaultMaxLineSize = 16 * 1024

// LineWriter turns one raw output stream into CRI log records written to
// dst, one dst.Write per record (so two streams sharing an O_APPEND file
// never interleave inside a record). It is not safe for concurrent use; give
// each stream its own LineWriter.
//
// Write never fails: a container must keep running even when its log
// cannot be written, so write errors of dst are passed to OnError (if set)
// and the data is dropped.
type LineWriter struct {
	// OnError, if set, is called with every error dst returns.
	OnError func(error)

	dst    io.Writer
	stream Stream
	maxLen int
	now    func() time.Time

	pending []byte // content of the current unterminated line
	rec     []byte // record assembly buffer, reused
}

// NewLineWriter returns a writer for stream. maxLen <= 0 disables splitting
// of long lines. now is the clock for record timestamps (time.Now if nil).
func NewLineWriter(dst io.Writer, stream Stream, maxLen int, now func() time.Time) *LineWriter {
	if now == nil {
		now = time.Now
	}
	return &LineWriter{dst: dst, stream: stream, maxLen: maxLen, now: now}
}

// Write consumes raw output. It always reports len(p), nil.
func (w *LineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.pending = append(w.pending, p...)
			w.splitPending()
			break
		}
		w.pending = append(w.pending, p[:i]...)
		p = p[i+1:]
		line := w.pending
		if l := len(line); l > 0 && line[l-1] == '\r' {
			line = line[:l-1]
		}
		for w.maxLen > 0 && len(line) > w.maxLen {
			w.emit(TagPartial, line[:w.maxLen])
			line = line[w.maxLen:]
		}
		w.emit(TagFull, line)
		w.pending = w.pending[:0]
	}
	return n, nil
}

// splitPending writes P records while the unterminated line is longer than
// maxLen. A trailing '\r' is held back: it may be the first half of "\r\n".
func (w *LineWriter) splitPending() {
	if w.maxLen <= 0 {
		return
	}
	for {
		eff := len(w.pending)
		if eff > 0 && w.pending[eff-1] == '\r' {
			eff--
		}
		if eff <= w.maxLen {
			return
		}
		w.emit(TagPartial, w.pending[:w.maxLen])
		rest := copy(w.pending, w.pending[w.maxLen:])
		w.pending = w.pending[:rest]
	}
}

// Flush writes an unterminated line as a final P record (what containerd
// does at the end of a stream). Call it once the stream has ended.
func (w *LineWriter) Flush() {
	if len(w.pending) == 0 {
		return
	}
	w.emit(TagPartial, w.pending)
	w.pending = w.pending[:0]
}

func (w *LineWriter) emit(tag string, content []byte) {
	r := w.now().AppendFormat(w.rec[:0], time.RFC3339Nano)
	r = append(r, ' ')
	r = append(r, w.stream...)
	r = append(r, ' ')
	r = append(r, tag...)
	r = append(r, ' ')
	r = append(r, content...)
	r = append(r, '\n')
	w.rec = r
	if _, err := w.dst.Write(r); err != nil && w.OnError != nil {
		w.OnError(err)
	}
	// Do not keep a huge buffer around after a burst of long lines.
	if cap(w.rec) > 4*maxInt(w.maxLen, DefaultMaxLineSize) {
		w.rec = nil
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// File is a CRI log file that can be reopened after kubelet rotated it
// (renamed it away). It is safe for concurrent use by several LineWriters.
// A path of "" discards everything.
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// Open opens (creating if needed) path for appending.
func Open(path string) (*File, error) {
	lf := &File{path: path}
	if path == "" {
		return lf, nil
	}
	f, err := openLog(path)
	if err != nil {
		return nil, err
	}
	lf.f = f
	return lf, nil
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open container log %s: %w", path, err)
	}
	return f, nil
}

// Path is the file's path.
func (l *File) Path() string { return l.path }

// Write appends one record.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.path == "" {
		return len(p), nil
	}
	if l.f == nil {
		return 0, fmt.Errorf("container log %s is not open", l.path)
	}
	return l.f.Write(p)
}

// Reopen opens the path anew (creating the file kubelet expects after a
// rotation) and closes the old descriptor. On failure the old descriptor is
// kept so output still lands somewhere.
func (l *File) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openLog(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
