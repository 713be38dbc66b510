package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A report in the shape ginkgo v2 writes with --ginkgo.junit-report.
const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" disabled="0" errors="0" failures="1" time="12.5">
  <testsuite name="CRI validation" package="/x" tests="4" disabled="0" skipped="1" errors="0" failures="1" time="12.5">
    <testcase name="[BeforeSuite]" classname="CRI validation" status="passed" time="0.1"></testcase>
    <testcase name="[It] [sig-node] Image Manager public image with tag should be pulled and removed [Conformance]" classname="CRI validation" status="passed" time="1"></testcase>
    <testcase name="[It] [sig-node] Streaming runtime should support exec [Conformance]" classname="CRI validation" status="failed" time="2">
      <failure message="boom" type="failed">details</failure>
    </testcase>
    <testcase name="[It] [sig-node] AppArmor should fail" classname="CRI validation" status="skipped" time="0">
      <skipped message="skipped - no apparmor"></skipped>
    </testcase>
  </testsuite>
</testsuites>`

func TestParseReport(t *testing.T) {
	r, err := parseReport("spdy", strings.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	if r.total != 3 || len(r.passed) != 1 || r.skipped != 1 || len(r.failed) != 1 {
		t.Fatalf("got total %d passed %d skipped %d failed %v", r.total, len(r.passed), r.skipped, r.failed)
	}
	if !r.passed["[sig-node] Image Manager public image with tag should be pulled and removed [Conformance]"] {
		t.Errorf("passed set %v", r.passed)
	}
	if r.failed[0] != "[sig-node] Streaming runtime should support exec [Conformance] (failed)" {
		t.Errorf("failed %q", r.failed[0])
	}
}

func TestRunExpected(t *testing.T) {
	dir := t.TempDir()
	rep := filepath.Join(dir, "junit.xml")
	if err := os.WriteFile(rep, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, expected string
		wantErr        bool
	}{
		{"empty list", "# nothing yet\n", false},
		{"passing spec", "[sig-node] Image Manager public image with tag should be pulled and removed [Conformance]\n", false},
		{"with It prefix", "[It] [sig-node] Image Manager public image with tag should be pulled and removed [Conformance]\n", false},
		{"failing spec", "[sig-node] Streaming runtime should support exec [Conformance]\n", true},
		{"skipped spec", "[sig-node] AppArmor should fail\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := filepath.Join(dir, "expected.txt")
			if err := os.WriteFile(exp, []byte(tc.expected), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := run([]string{"--expected", exp, "spdy=" + rep, "websocket=" + rep}, &out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v\n%s", err, tc.wantErr, out.String())
			}
			if !strings.Contains(out.String(), "run websocket: 3 specs, 1 passed, 1 failed, 1 skipped") {
				t.Errorf("summary:\n%s", out.String())
			}
		})
	}

	var out bytes.Buffer
	if err := run([]string{"spdy=" + filepath.Join(dir, "missing.xml")}, &out); err == nil {
		t.Error("missing report accepted")
	}
}
