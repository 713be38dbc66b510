package shim

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/crid-dev/crid/internal/monitor/wire"
)

// oomCounter reads the number of OOM kills of the container's memory
// cgroup: "oom_kill N" in memory.oom_control (cgroup v1) or memory.events
// (cgroup v2). The file is found from /proc/<pid>/cgroup while the
// container's init is alive, so it is known when the exit has to be judged.
type oomCounter struct {
	path string // "" if unknown
	base uint64 // count when the container was created
}

func newOOMCounter(pid int) oomCounter {
	c := oomCounter{path: oomFile(pid)}
	if c.path != "" {
		c.base, _ = readOOMKills(c.path)
	}
	return c
}

// killed reports whether the cgroup recorded an OOM kill since creation.
func (c oomCounter) killed() bool {
	if c.path == "" {
		return false
	}
	n, ok := readOOMKills(c.path)
	return ok && n > c.base
}

func readOOMKills(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == "oom_kill" {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// oomFile returns the OOM-kill counter file of pid's memory cgroup, "" if
// it cannot be found. A v1 memory controller (hybrid hosts) wins over v2.
func oomFile(pid int) string {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	defer f.Close()
	var v1Path, v2Path string
	haveV2 := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2Path, haveV2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				v1Path = parts[2]
			}
		}
	}
	mounts := cgroupMounts()
	if v1Path != "" {
		if m, ok := mounts["memory"]; ok {
			return filepath.Join(m.point, relTo(v1Path, m.root), "memory.oom_control")
		}
	}
	if haveV2 {
		if m, ok := mounts[""]; ok {
			return filepath.Join(m.point, relTo(v2Path, m.root), "memory.events")
		}
	}
	return ""
}

type cgMount struct{ point, root string }

// cgroupMounts maps v1 controller names, and "" for cgroup2, to their
// mount in this mount namespace.
func cgroupMounts() map[string]cgMount {
	out := map[string]cgMount{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root point opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields := strings.Fields(pre)
		tail := strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 {
			continue
		}
		m := cgMount{point: fields[4], root: fields[3]}
		switch tail[0] {
		case "cgroup2":
			if _, seen := out[""]; !seen {
				out[""] = m
			}
		case "cgroup":
			for _, opt := range strings.Split(tail[2], ",") {
				if _, seen := out[opt]; !seen {
					out[opt] = m
				}
			}
		}
	}
	return out
}

// relTo makes a /proc/<pid>/cgroup path relative to a mount's root.
func relTo(p, root string) string {
	if root != "/" && strings.HasPrefix(p, root) {
		p = strings.TrimPrefix(p, root)
	}
	return p
}

// oomEnded says whether an exit was the OOM killer's doing, given whether
// the cgroup counted an OOM kill since the container was created. The
// killer ends a process with SIGKILL, so the init died of it (or, as a
// shell, reported a child's 137). An earlier OOM kill of some other
// process in the container does not turn a later, different exit (an
// error code, SIGTERM on stop) into "OOMKilled": the counter is cumulative
// (kubernetes PR #140718).
func oomEnded(e *wire.Exit, counted bool) bool {
	return counted && (e.Signal == int(syscall.SIGKILL) || e.Code == 128+int32(syscall.SIGKILL))
}
