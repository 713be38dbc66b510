package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// unitPath is the systemd unit scripts/install.sh installs.
const unitPath = "../../contrib/systemd/crid.service"

// readUnit returns the unit's assignments by "Section.Key", in order
// (a key may repeat, like ExecStartPre).
func readUnit(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("unit line %q is not Key=Value", l)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnitFile checks the settings crid's behaviour as a service depends
// on: readiness through sd_notify, containers and monitors surviving a
// restart of the unit, delegation, limits and ordering before kubelet.
func TestUnitFile(t *testing.T) {
	u := readUnit(t)
	want := map[string]string{
		"Service.Type":           "notify",
		"Service.NotifyAccess":   "main",
		"Service.KillMode":       "process",
		"Service.Delegate":       "yes",
		"Service.Restart":        "always",
		"Service.ExecStart":      "/usr/local/bin/crid",
		"Service.ExecReload":     "/bin/kill -HUP $MAINPID",
		"Service.OOMScoreAdjust": "-999",
		"Service.LimitNOFILE":    "1048576",
		"Service.LimitNPROC":     "infinity",
		"Service.TasksMax":       "infinity",
		"Install.WantedBy":       "multi-user.target",
	}
	for k, v := range want {
		if got := u[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for k, items := range map[string][]string{
		"Unit.After":  {"network-online.target", "local-fs.target"},
		"Unit.Wants":  {"network-online.target"},
		"Unit.Before": {"kubelet.service"},
	} {
		have := strings.Fields(strings.Join(u[k], " "))
		for _, it := range items {
			if !slices.Contains(have, it) {
				t.Errorf("%s = %q lacks %s", k, u[k], it)
			}
		}
	}
	// Loading a module may fail (built in, or absent): '-' ignores it.
	if got := u["Service.ExecStartPre"]; !slices.Equal(got, []string{"-/sbin/modprobe overlay", "-/sbin/modprobe br_netfilter"}) {
		t.Errorf("ExecStartPre = %q", got)
	}
	// The binary the unit runs is where the install script puts it, and
	// the script installs this unit.
	script, err := os.ReadFile("../../scripts/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"install -m 0755 bin/crid ", " /usr/local/bin/", "contrib/systemd/crid.service", "/etc/systemd/system/crid.service"} {
		if !bytes.Contains(script, []byte(s)) {
			t.Errorf("scripts/install.sh lacks %q", s)
		}
	}
}

// TestUnitFileVerifies runs systemd's own checker on the unit where
// systemd-analyze is installed (Debian's systemd package; it need not be
// PID 1). verify fails on a missing ExecStart binary, so where crid is not
// installed the copy it checks runs this test binary instead; it reports
// unknown keys and bad values only as warnings, so any output fails.
func TestUnitFileVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/usr/local/bin/crid"); err != nil {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		unit = bytes.ReplaceAll(unit, []byte("ExecStart=/usr/local/bin/crid"), []byte("ExecStart="+self))
	}
	p := filepath.Join(t.TempDir(), "crid.service")
	if err := os.WriteFile(p, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
