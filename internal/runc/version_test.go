package runc

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseVersionOutput(t *testing.T) {
	tests := []struct {
		name, out              string
		runtime, version, line string
	}{
		{"runc 1.5", "runc version 1.5.3\ncommit: v1.5.3 h1:x\nspec: 1.3.0\n", "runc", "1.5.3", "runc version 1.5.3"},
		{"debian runc", "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\n", "runc", "1.1.5+ds1", "runc version 1.1.5+ds1"},
		{"crun", "crun version 1.8.1\ncommit: f8a0\nrundir: /run/crun\n+SYSTEMD +SECCOMP\n", "crun", "1.8.1", "crun version 1.8.1"},
		{"other layout", "kata-runtime  : 3.2.0\n   commit   : abc\n", "", "", "kata-runtime  : 3.2.0"},
		{"empty", "\n", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := ParseVersionOutput(tc.out)
			if v.Runtime != tc.runtime || v.Version != tc.version || v.Line != tc.line {
				t.Errorf("ParseVersionOutput(%q) = %+v, want runtime %q version %q line %q", tc.out, v, tc.runtime, tc.version, tc.line)
			}
		})
	}
	if f := ParseVersionOutput("crun version 1.19\n+SYSTEMD +LIBKRUN +WASM:wasmedge\n").Features(); !slices.Equal(f, []string{"SYSTEMD", "LIBKRUN", "WASM:wasmedge"}) {
		t.Errorf("Features = %q", f)
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.1.5", "1.1.12", -1},
		{"1.2.7", "1.2.8", -1},
		{"1.2.8", "1.2.8", 0},
		{"1.3.3", "1.2.8", 1},
		{"1.4.0-rc.2", "1.4.0-rc.3", -1},
		{"1.4.0-rc.3", "1.4.0", -1},
		{"1.4.0", "1.4.0-rc.3", 1},
		{"1.0.0-rc10", "1.0.0-rc7", 1}, // runc's old tags: numeric, not lexical
		{"1.0.0-rc95", "1.0.0-rc95", 0},
		{"1.1.5+ds1", "1.1.5", 0},        // Debian's build suffix
		{"1.1.12-0ubuntu2", "1.1.12", 0}, // a package revision is no pre-release
		{"v1.5.3", "1.5.3", 0},
		{"1.28", "1.28.0", 0},
		{"1.8.1", "1.28", -1},
		{"2.0.0", "1.99.99", 1},
	}
	for _, tc := range tests {
		a, err := ParseVersion(tc.a)
		if err != nil {
			t.Fatalf("ParseVersion(%q): %v", tc.a, err)
		}
		b, err := ParseVersion(tc.b)
		if err != nil {
			t.Fatalf("ParseVersion(%q): %v", tc.b, err)
		}
		if got := a.Compare(b); got != tc.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := b.Compare(a); got != -tc.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestParseVersionRejects(t *testing.T) {
	for _, s := range []string{"", "1", "release-20231009.0", "1.x.3", "1.2.3.4", "1.2.-3", "1.2.3-rc.x", "unknown"} {
		if v, err := ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%q) = %v, want an error", s, v)
		}
	}
}

func TestKnownEscapes(t *testing.T) {
	const nov2025 = "CVE-2025-52881"
	tests := []struct {
		name, out string
		want      []string // CVE ids expected among the hits
		notWant   []string // CVE ids that must not be reported
		none      bool     // no advisory at all
		err       bool
	}{
		{name: "debian 1.1.5", out: "runc version 1.1.5+ds1\n",
			want:    []string{"CVE-2024-21626", "CVE-2024-45310", "CVE-2025-31133", "CVE-2025-52565", nov2025, "CVE-2026-41579"},
			notWant: []string{"CVE-2019-5736", "CVE-2021-30465", "CVE-2023-27561"}},
		{name: "1.1.14", out: "runc version 1.1.14\n", want: []string{nov2025}, notWant: []string{"CVE-2024-21626", "CVE-2024-45310"}},
		{name: "1.2.7 lacks the Nov 2025 fixes", out: "runc version 1.2.7\n", want: []string{nov2025}, notWant: []string{"CVE-2024-45310"}},
		{name: "1.2.8 has them, 1.2 never got CVE-2026-41579's", out: "runc version 1.2.8\n", want: []string{"CVE-2026-41579"}, notWant: []string{nov2025}},
		{name: "1.3.3", out: "runc version 1.3.3\n", want: []string{"CVE-2026-41579"}, notWant: []string{nov2025}},
		{name: "1.3.6", out: "runc version 1.3.6\n", none: true},
		{name: "1.4.0-rc.2", out: "runc version 1.4.0-rc.2\n", want: []string{nov2025, "CVE-2026-41579"}},
		{name: "1.4.0", out: "runc version 1.4.0\n", want: []string{"CVE-2026-41579"}, notWant: []string{nov2025}},
		{name: "1.5.0-rc.2", out: "runc version 1.5.0-rc.2\n", want: []string{"CVE-2026-41579"}},
		{name: "1.5.3", out: "runc version 1.5.3\ncommit: v1.5.3\n", none: true},
		{name: "a later line", out: "runc version 1.6.0-rc.1\n", none: true},
		{name: "1.0.0-rc6", out: "runc version 1.0.0-rc6\n", want: []string{"CVE-2019-5736", "CVE-2019-19921", "CVE-2021-30465"}, notWant: []string{"CVE-2023-27561", "CVE-2024-21626"}},
		{name: "1.0.0-rc93", out: "runc version 1.0.0-rc93\n", want: []string{"CVE-2021-30465", "CVE-2024-21626"}, notWant: []string{"CVE-2019-5736", "CVE-2019-19921"}},
		{name: "unparseable runc", out: "runc version unknown\n", err: true},
		{name: "debian crun 1.8.1", out: "crun version 1.8.1\ncommit: x\n+SYSTEMD +SECCOMP\n", want: []string{"CVE-2026-47766"}, notWant: []string{"CVE-2025-24965", "CVE-2019-18837"}},
		{name: "crun 1.19 with krun", out: "crun version 1.19\n+SYSTEMD +LIBKRUN\n", want: []string{"CVE-2025-24965", "CVE-2026-47766"}},
		{name: "crun 1.28", out: "crun version 1.28\n+LIBKRUN\n", none: true},
		{name: "runsc: no table", out: "runsc version release-20231009.0\nspec: 1.1.0\n", none: true},
		{name: "unknown layout", out: "kata-runtime  : 3.2.0\n", none: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hits, err := KnownEscapes(ParseVersionOutput(tc.out))
			if tc.err {
				if err == nil {
					t.Fatalf("KnownEscapes = %v, want an error", hits)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range hits {
				got = append(got, a.CVEs...)
			}
			if tc.none && len(got) > 0 {
				t.Errorf("KnownEscapes = %v, want none", got)
			}
			for _, c := range tc.want {
				if !slices.Contains(got, c) {
					t.Errorf("%s not reported; got %v", c, got)
				}
			}
			for _, c := range tc.notWant {
				if slices.Contains(got, c) {
					t.Errorf("%s reported; got %v", c, got)
				}
			}
		})
	}
}

// Every version in the table parses, so a typo cannot silently hide an
// advisory at run time.
func TestAdvisoryTableParses(t *testing.T) {
	for _, a := range advisories() {
		if a.Runtime == "" || len(a.CVEs) == 0 || len(a.Fixed) == 0 || a.Summary == "" {
			t.Errorf("incomplete advisory %+v", a)
		}
		for _, s := range append([]string{a.Introduced}, a.Fixed...) {
			if s == "" {
				continue
			}
			if _, err := ParseVersion(s); err != nil {
				t.Errorf("advisory %v: %v", a.CVEs, err)
			}
		}
	}
}

// VersionInfo runs the binary once and serves later calls from the cache;
// a failure is not cached.
func TestVersionInfoCachedAndRetried(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-runtime")
	r := &Runtime{Name: "fake", Path: bin}
	ctx := context.Background()
	if _, err := r.VersionInfo(ctx); err == nil {
		t.Fatal("VersionInfo of a missing binary succeeded")
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'runc version 1.2.7'\necho 'commit: test'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := r.VersionInfo(ctx)
	if err != nil || v.Runtime != "runc" || v.Version != "1.2.7" {
		t.Fatalf("VersionInfo = %+v, %v", v, err)
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if v2, err := r.VersionInfo(ctx); err != nil || v2 != v {
		t.Errorf("second call not cached: %+v, %v", v2, err)
	}
}
