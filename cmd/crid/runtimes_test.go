package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/crid-dev/crid/internal/core"
	"github.com/crid-dev/crid/internal/runc"
)

func TestLogRuntimeHandlers(t *testing.T) {
	escapes, err := runc.KnownEscapes(runc.ParseVersionOutput("runc version 1.1.5+ds1\n"))
	if err != nil || len(escapes) == 0 {
		t.Fatalf("no known escapes for runc 1.1.5: %v", err)
	}
	tests := []struct {
		name     string
		info     core.HandlerInfo
		want     []string // substrings of the log
		wantWarn bool
	}{
		{"fixed runc", core.HandlerInfo{Name: "runc", Path: "/usr/local/sbin/runc", Version: "runc version 1.5.3", DirectExec: true},
			[]string{`level=INFO msg="runtime handler" handler=runc path=/usr/local/sbin/runc version="runc version 1.5.3" direct_exec=true`}, false},
		{"debian runc", core.HandlerInfo{Name: "old", Path: "/usr/sbin/runc", Version: "runc version 1.1.5+ds1", KnownEscapes: escapes},
			[]string{"level=WARN", "known container escapes", "handler=old", "CVE-2024-21626", "CVE-2025-31133,CVE-2025-52565,CVE-2025-52881", "1.2.8 1.3.3 1.4.0-rc.3", "scripts/build-runc.sh"}, true},
		{"problem", core.HandlerInfo{Name: "broken", Path: "/bin/false", Problems: []string{"cannot read the runtime's version"}},
			[]string{`level=WARN msg="runtime handler: cannot read the runtime's version" handler=broken`}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logRuntimeHandlers(slog.New(slog.NewTextHandler(&buf, nil)), []core.HandlerInfo{tc.info})
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
			if got := strings.Contains(out, "level=WARN"); got != tc.wantWarn {
				t.Errorf("warned = %v, want %v:\n%s", got, tc.wantWarn, out)
			}
		})
	}
}
