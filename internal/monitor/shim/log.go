package shim

import (
	"os"
	"strconv"
	"sync"
	"time"
)

// logger writes the monitor's own diagnostics to stderr (the state dir's
// monitor.log) as logfmt lines, like slog's text handler. It exists so the
// monitor binary does not link log/slog; it logs a handful of lines in its
// whole life.
type logger struct {
	mu sync.Mutex
	id string // container id, once known
}

// log writes one line; kv alternates keys and values (string, error, int,
// int32, bool, fmt.Stringer-less values).
func (l *logger) log(level, msg string, kv ...any) {
	b := make([]byte, 0, 160)
	b = append(b, "time="...)
	b = time.Now().AppendFormat(b, time.RFC3339Nano)
	b = append(b, " level="...)
	b = append(b, level...)
	b = append(b, " msg="...)
	b = appendValue(b, msg)
	if l.id != "" {
		b = append(b, " id="...)
		b = appendValue(b, l.id)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		b = append(b, ' ')
		b = append(b, k...)
		b = append(b, '=')
		switch v := kv[i+1].(type) {
		case string:
			b = appendValue(b, v)
		case error:
			b = appendValue(b, v.Error())
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int32:
			b = strconv.AppendInt(b, int64(v), 10)
		case bool:
			b = strconv.AppendBool(b, v)
		case os.Signal:
			b = appendValue(b, v.String())
		default:
			b = append(b, '?')
		}
	}
	b = append(b, '\n')
	l.mu.Lock()
	os.Stderr.Write(b)
	l.mu.Unlock()
}

func (l *logger) info(msg string, kv ...any)  { l.log("INFO", msg, kv...) }
func (l *logger) warn(msg string, kv ...any)  { l.log("WARN", msg, kv...) }
func (l *logger) error(msg string, kv ...any) { l.log("ERROR", msg, kv...) }

// appendValue quotes s when it is empty or holds spaces, quotes, '=' or
// control characters.
func appendValue(b []byte, s string) []byte {
	if s == "" {
		return append(b, `""`...)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '"' || c == '=' || c >= 0x7f {
			return strconv.AppendQuote(b, s)
		}
	}
	return append(b, s...)
}
