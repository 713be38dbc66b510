package crilog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeClock returns t0, t0+1ns, t0+2ns, ... so each record's stamp is known.
func fakeClock() func() time.Time {
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Nanosecond)
		return t
	}
}

func stamp(i int) string {
	return time.Date(2026, 1, 2, 3, 4, 5, i, time.UTC).Format(time.RFC3339Nano)
}

func TestLineWriter(t *testing.T) {
	type rec struct{ tag, content string }
	tests := []struct {
		name   string
		stream Stream
		maxLen int
		writes []string
		flush  bool
		want   []rec
	}{
		{name: "one full line", writes: []string{"hello\n"}, want: []rec{{"F", "hello"}}},
		{name: "two lines one write", writes: []string{"a\nb\n"}, want: []rec{{"F", "a"}, {"F", "b"}}},
		{name: "line across writes", writes: []string{"he", "ll", "o\nwor", "ld\n"}, want: []rec{{"F", "hello"}, {"F", "world"}}},
		{name: "empty line", writes: []string{"\n\n"}, want: []rec{{"F", ""}, {"F", ""}}},
		{name: "crlf stripped", writes: []string{"tty\r\n"}, want: []rec{{"F", "tty"}}},
		{name: "crlf split across writes", writes: []string{"tty\r", "\n"}, want: []rec{{"F", "tty"}}},
		{name: "lone cr kept", writes: []string{"a\rb\n"}, want: []rec{{"F", "a\rb"}}},
		{name: "exactly max is full", maxLen: 4, writes: []string{"abcd\n"}, want: []rec{{"F", "abcd"}}},
		{name: "max plus one", maxLen: 4, writes: []string{"abcde\n"}, want: []rec{{"P", "abcd"}, {"F", "e"}}},
		{name: "twice max", maxLen: 4, writes: []string{"abcdefgh\n"}, want: []rec{{"P", "abcd"}, {"F", "efgh"}}},
		{name: "long line over many writes", maxLen: 4, writes: []string{"ab", "cdef", "ghijk", "\n"},
			want: []rec{{"P", "abcd"}, {"P", "efgh"}, {"F", "ijk"}}},
		{name: "max with crlf not split", maxLen: 4, writes: []string{"abcd\r", "\n"}, want: []rec{{"F", "abcd"}}},
		{name: "unterminated at end is partial", writes: []string{"a\nbc"}, flush: true, want: []rec{{"F", "a"}, {"P", "bc"}}},
		{name: "unterminated long at end", maxLen: 4, writes: []string{"abcdefghij"}, flush: true,
			want: []rec{{"P", "abcd"}, {"P", "efgh"}, {"P", "ij"}}},
		{name: "unterminated cr at end kept", writes: []string{"ab\r"}, flush: true, want: []rec{{"P", "ab\r"}}},
		{name: "flush with nothing pending", writes: []string{"x\n"}, flush: true, want: []rec{{"F", "x"}}},
		{name: "no flush keeps pending", writes: []string{"x\ny"}, want: []rec{{"F", "x"}}},
		{name: "no split when disabled", maxLen: -1, writes: []string{strings.Repeat("z", 20000) + "\n"},
			want: []rec{{"F", strings.Repeat("z", 20000)}}},
		{name: "default max splits 16KiB", maxLen: DefaultMaxLineSize, writes: []string{strings.Repeat("y", DefaultMaxLineSize+3) + "\n"},
			want: []rec{{"P", strings.Repeat("y", DefaultMaxLineSize)}, {"F", "yyy"}}},
		{name: "stderr stream", stream: Stderr, writes: []string{"oops\n"}, want: []rec{{"F", "oops"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := tc.stream
			if stream == "" {
				stream = Stdout
			}
			var out bytes.Buffer
			w := NewLineWriter(&out, stream, tc.maxLen, fakeClock())
			for _, s := range tc.writes {
				n, err := w.Write([]byte(s))
				if n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if tc.flush {
				w.Flush()
			}
			var want strings.Builder
			for i, r := range tc.want {
				want.WriteString(stamp(i+1) + " " + string(stream) + " " + r.tag + " " + r.content + "\n")
			}
			if got := out.String(); got != want.String() {
				t.Errorf("records differ\n got: %q\nwant: %q", got, want.String())
			}
		})
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("disk full")
}

func TestLineWriterKeepsDrainingOnError(t *testing.T) {
	fw := &failWriter{}
	var errs int
	w := NewLineWriter(fw, Stdout, 0, fakeClock())
	w.OnError = func(error) { errs++ }
	for i := 0; i < 3; i++ {
		if n, err := w.Write([]byte("line\n")); n != 5 || err != nil {
			t.Fatalf("Write = %d, %v; want 5, nil", n, err)
		}
	}
	if fw.n != 3 || errs != 3 {
		t.Fatalf("dst writes %d, errors reported %d; want 3, 3", fw.n, errs)
	}
}

// Each record must reach the file in one write so that stdout and stderr
// writers sharing a File never interleave inside a line.
type countWriter struct{ writes []string }

func (c *countWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

func TestOneWritePerRecord(t *testing.T) {
	cw := &countWriter{}
	w := NewLineWriter(cw, Stdout, 3, fakeClock())
	w.Write([]byte("abcdefg\nxy\n"))
	if len(cw.writes) != 4 {
		t.Fatalf("got %d writes %q, want 4", len(cw.writes), cw.writes)
	}
	for _, s := range cw.writes {
		if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
			t.Errorf("write %q is not exactly one record", s)
		}
	}
}

func TestFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	rotated := path + ".20260101"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	// Before the reopen output still goes to the renamed file.
	f.Write([]byte("two\n"))
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("three\n"))
	for p, want := range map[string]string{rotated: "one\ntwo\n", path: "three\n"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s = %q, want %q", p, b, want)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
}

func TestFileDiscard(t *testing.T) {
	f, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.Write([]byte("x\n")); n != 2 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
}
