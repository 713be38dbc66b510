package pidfd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fields are read after the command name, which may hold spaces and
// parentheses: a child named "a) b (c" has this process as its parent,
// sleeps, then is a zombie until it is reaped; its start time is the one
// /proc/self/stat gives the child itself.
func TestStat(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(t.TempDir(), "a) b (c")
	if err := os.WriteFile(odd, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	if ppid, err := ParentPID(pid); err != nil || ppid != os.Getpid() {
		t.Errorf("ParentPID = %d, %v; want %d", ppid, err, os.Getpid())
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil || !strings.Contains(string(stat), "(a) b (c)") {
		t.Fatalf("the child's stat does not show its odd name: %q, %v", stat, err)
	}
	want := strings.Fields(string(stat))[21+2] // "a)", "b", "(c)" are three words
	if st, err := StartTime(pid); err != nil || strconv.FormatUint(st, 10) != want {
		t.Errorf("StartTime = %d, %v; want %s", st, err, want)
	}
	waitState(t, pid, 'S')
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, 'Z')
	_ = cmd.Wait()
	if _, err := State(pid); !os.IsNotExist(err) {
		t.Errorf("State of a reaped process = %v, want not found", err)
	}
}

func waitState(t *testing.T, pid int, want byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := State(pid)
		if err != nil {
			t.Fatal(err)
		}
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %c, want %c", st, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
