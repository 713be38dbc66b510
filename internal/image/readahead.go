package image

import (
	"io"
	"sync"
)

// readAhead reads its source in a goroutine of its own, up to a few chunks
// ahead of its reader. Under an unpack it puts the decompression of a layer
// on one CPU beside the hashing and writing of what was already
// decompressed on another, where one goroutine used to do all of it in
// turn. Its memory is bounded: depth+1 chunks of size bytes.
type readAhead struct {
	full chan raChunk // filled chunks, in order
	free chan []byte  // chunks the reader is done with

	cur  raChunk
	off  int  // read position in cur.b
	have bool // cur holds a chunk

	done     chan struct{}
	exited   chan struct{}
	stopOnce sync.Once
}

type raChunk struct {
	b   []byte
	err error // the source's error after b (io.EOF at the end)
}

func newReadAhead(r io.Reader, size, depth int) *readAhead {
	ra := &readAhead{
		full:   make(chan raChunk, depth),
		free:   make(chan []byte, depth+1),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	for range depth + 1 {
		ra.free <- make([]byte, size)
	}
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	defer close(ra.exited)
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.done:
			return
		}
		// Whole chunks, not whatever one Read returns: fewer hand-offs.
		// Not io.ReadFull: it would turn the source's own
		// io.ErrUnexpectedEOF (a truncated stream) into a short chunk.
		n := 0
		var err error
		for n < len(b) && err == nil {
			var m int
			m, err = r.Read(b[n:])
			n += m
		}
		select {
		case ra.full <- raChunk{b: b[:n], err: err}:
		case <-ra.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for !ra.have || ra.off == len(ra.cur.b) {
		if ra.have {
			if ra.cur.err != nil {
				return 0, ra.cur.err
			}
			ra.free <- ra.cur.b[:cap(ra.cur.b)]
		}
		ra.cur, ra.off, ra.have = <-ra.full, 0, true
	}
	n := copy(p, ra.cur.b[ra.off:])
	ra.off += n
	return n, nil
}

// Close stops the goroutine and returns once it no longer reads the
// source, which the caller may then close.
func (ra *readAhead) Close() error {
	ra.stopOnce.Do(func() { close(ra.done) })
	<-ra.exited
	return nil
}
