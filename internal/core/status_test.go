package core

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/runc"
)

func TestDescribeHandler(t *testing.T) {
	off := false
	tests := []struct {
		name        string
		h           config.Handler
		path        string
		version     string // --version output; "" with verErr
		verErr      error
		directExec  bool
		wantCVE     string // a CVE expected among KnownEscapes; "" = none at all
		wantProblem string // substring of a problem; "" = no problems
	}{
		{name: "runc 1.5.3", h: config.Handler{Path: config.DefaultRuncPath}, path: config.DefaultRuncPath,
			version: "runc version 1.5.3\ncommit: v1.5.3\n", directExec: true},
		{name: "debian runc", h: config.Handler{Path: "/usr/sbin/runc"}, path: "/usr/sbin/runc",
			version: "runc version 1.1.5+ds1\n", directExec: true, wantCVE: "CVE-2025-52881"},
		{name: "debian crun", h: config.Handler{Path: "crun"}, path: "/usr/bin/crun",
			version: "crun version 1.8.1\n+SYSTEMD +SECCOMP\n", directExec: true, wantCVE: "CVE-2026-47766"},
		{name: "runsc", h: config.Handler{Path: "runsc"}, path: "/usr/local/bin/runsc",
			version: "runsc version release-20231009.0\nspec: 1.1.0\n"},
		{name: "runsc installed as runc", h: config.Handler{Path: "/opt/bin/runc"}, path: "/opt/bin/runc",
			version: "runsc version release-20231009.0\n", directExec: true, wantProblem: "direct_exec = false"},
		{name: "runsc as runc, direct exec off", h: config.Handler{Path: "/opt/bin/runc", DirectExec: &off}, path: "/opt/bin/runc",
			version: "runsc version release-20231009.0\n"},
		{name: "no version", h: config.Handler{Path: "/bin/false"}, path: "/bin/false",
			verErr: errors.New("exit status 1"), wantProblem: "cannot read the runtime's version"},
		{name: "unparseable runc version", h: config.Handler{Path: "runc"}, path: "/usr/bin/runc",
			version: "runc version unknown\n", directExec: true, wantProblem: "cannot parse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := &runc.Runtime{Name: "h", Path: tc.path, Root: "/run/crid/runtime/h"}
			vi := runc.ParseVersionOutput(tc.version)
			hi := describeHandler("h", tc.h, rt, vi, tc.verErr)
			if hi.Name != "h" || hi.Path != tc.path || hi.Root != rt.Root || hi.DirectExec != tc.directExec {
				t.Errorf("info = %+v, want path %s directExec %v", hi, tc.path, tc.directExec)
			}
			if tc.verErr == nil && hi.Version != vi.Line {
				t.Errorf("version = %q, want %q", hi.Version, vi.Line)
			}
			var cves []string
			for _, a := range hi.KnownEscapes {
				cves = append(cves, a.CVEs...)
			}
			if tc.wantCVE == "" && len(cves) > 0 || tc.wantCVE != "" && !slices.Contains(cves, tc.wantCVE) {
				t.Errorf("known escapes %v, want %q", cves, tc.wantCVE)
			}
			probs := strings.Join(hi.Problems, "\n")
			if tc.wantProblem == "" && probs != "" || !strings.Contains(probs, tc.wantProblem) {
				t.Errorf("problems %q, want %q", probs, tc.wantProblem)
			}
		})
	}
}
