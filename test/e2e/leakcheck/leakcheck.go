// Package leakcheck finds what a crid under test left on the host: it
// takes a snapshot of everything crid creates outside its own memory
// (mounts, namespace pins, IP allocations, veths, portmap's iptables
// rules, runtime state, monitor and container processes, crid's live and
// zombie children, cgroups, object and temp dirs, and what the caller
// adds) and of crid's
// own fds and goroutines, and diffs a later snapshot against it. Tests
// take one before they start pods and check after removing everything.
//
// Only what is new counts: the host may hold other runs' objects, and a
// diff of two snapshots of the same run is not disturbed by them as long
// as the Target names only this run's network, bridge and cgroup parents.
package leakcheck

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
)

// Target is one crid and the host objects that belong to it.
type Target struct {
	Root, State string // crid's root and state dirs
	PID         int    // crid's pid (fds, goroutines, zombie children)
	// Network is the CNI network name whose host-local IPAM files
	// (/var/lib/cni/networks/<Network>) are its IP allocations.
	Network string
	// Bridge is the CNI bridge its pods' veths are plugged into.
	Bridge string
	// CgroupParents are the cgroupfs parents of its pods, e.g. "/crid-e2e-x":
	// every cgroup below them, in every hierarchy, is crid's.
	CgroupParents []string
	// AdminSocket is crid's admin socket (<state>/admin.sock), whose pprof
	// endpoint counts goroutines; empty leaves goroutines unchecked.
	AdminSocket string
	// Extra lists more kinds of items by name, for what only the caller
	// can see: crid's records through the CRI, images' files.
	Extra map[string]func(context.Context) ([]string, error)
}

// Snapshot is what a Target had at one moment.
type Snapshot struct {
	// Sets holds the items of each kind ("mount", "ip", "process"...).
	Sets map[string][]string
	// FDs is crid's open file descriptors, FDTargets what they point at.
	FDs       int
	FDTargets []string
	// Goroutines is crid's goroutines, -1 when not measured.
	Goroutines int
	// Young is how many processes were too young to count (Check looks
	// again before it calls a snapshot with some clean).
	Young int
	// PIDs are all the target's processes, young ones too: a process
	// that existed at a baseline is not new later, whatever its age was.
	PIDs map[int]bool
}

// Slack is how much crid's fds and goroutines may grow between snapshots
// without being a leak: connections of the checking client, a collector
// or watcher between two steps.
type Slack struct {
	FDs, Goroutines int
}

// DefaultSlack tolerates the churn of an idle crid.
var DefaultSlack = Slack{FDs: 4, Goroutines: 10}

// Take snapshots t.
func Take(ctx context.Context, t Target) (Snapshot, error) {
	s := Snapshot{Sets: map[string][]string{}, Goroutines: -1}
	for kind, f := range map[string]func(Target) ([]string, error){
		"mount":     mounts,
		"ns-pin":    pins,
		"ip":        ips,
		"veth":      veths,
		"runtime":   runtimeState,
		"cgroup":    cgroupDirs,
		"process":   processes,
		"object":    objectDirs,
		"temp":      tempFiles,
		"zombie":    zombies,
		"child":     children,
		"image-tmp": imageTemp,
		"iptables":  iptablesRules,
	} {
		items, err := f(t)
		if err != nil {
			return s, fmt.Errorf("leakcheck %s: %w", kind, err)
		}
		slices.Sort(items)
		s.Sets[kind] = items
	}
	for kind, f := range t.Extra {
		items, err := f(ctx)
		if err != nil {
			return s, fmt.Errorf("leakcheck %s: %w", kind, err)
		}
		slices.Sort(items)
		s.Sets[kind] = items
	}
	pids, err := processPIDs(t)
	if err != nil {
		return s, fmt.Errorf("leakcheck processes: %w", err)
	}
	s.PIDs = pids
	for pid := range pids {
		if age, ok := processAge(pid); ok && age < MinProcessAge {
			s.Young++
		}
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", t.PID)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return s, fmt.Errorf("leakcheck fds of crid %d: %w", t.PID, err)
	}
	s.FDs = len(fds)
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil {
			s.FDTargets = append(s.FDTargets, target)
		}
	}
	if t.AdminSocket != "" {
		n, err := goroutines(ctx, t.AdminSocket)
		if err != nil {
			return s, fmt.Errorf("leakcheck goroutines: %w", err)
		}
		s.Goroutines = n
	}
	return s, nil
}

// Diff lists what after has that before had not, one line per leak.
func Diff(before, after Snapshot, slack Slack) []string {
	var out []string
	kinds := make([]string, 0, len(after.Sets))
	for k := range after.Sets {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		for _, item := range after.Sets[k] {
			if slices.Contains(before.Sets[k], item) {
				continue
			}
			if k == "process" && before.PIDs[itemPID(item)] {
				continue // there before, only too young to count then
			}
			out = append(out, k+": "+item)
		}
	}
	if after.FDs > before.FDs+slack.FDs {
		var added []string
		for _, f := range after.FDTargets {
			if !slices.Contains(before.FDTargets, f) {
				added = append(added, f)
			}
		}
		out = append(out, fmt.Sprintf("fds: crid has %d open, %d before; new: %v", after.FDs, before.FDs, added))
	}
	if before.Goroutines >= 0 && after.Goroutines > before.Goroutines+slack.Goroutines {
		out = append(out, fmt.Sprintf("goroutines: crid runs %d, %d before", after.Goroutines, before.Goroutines))
	}
	return out
}

// Check snapshots t until nothing leaked since before or within has
// passed (background deletion, exiting goroutines), and returns the leaks
// of the last snapshot.
func Check(ctx context.Context, t Target, before Snapshot, slack Slack, within time.Duration) ([]string, error) {
	deadline := time.Now().Add(within)
	lookedAgain := false
	for {
		after, err := Take(ctx, t)
		if err != nil {
			return nil, err
		}
		leaks := Diff(before, after, slack)
		if len(leaks) == 0 && after.Young > 0 && !lookedAgain {
			// A process just started may be a leak that is not old
			// enough to count yet: look once more when it is.
			lookedAgain = true
			select {
			case <-ctx.Done():
				return leaks, nil
			case <-time.After(MinProcessAge):
			}
			continue
		}
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks, nil
		}
		select {
		case <-ctx.Done():
			return leaks, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// under is whether p is dir or below it.
func under(p, dir string) bool {
	return dir != "" && (p == dir || strings.HasPrefix(p, dir+"/"))
}

func mounts(t Target) ([]string, error) {
	ms, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !under(m.Mountpoint, t.Root) && !under(m.Mountpoint, t.State), false
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint+" ("+m.FSType+")")
	}
	return out, nil
}

// entries lists the names in dir as dir/name; a missing dir is empty.
func entries(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out, nil
}

// entriesOf concatenates entries of several dirs.
func entriesOf(dirs ...string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		es, err := entries(d)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

func pins(t Target) ([]string, error) {
	return entriesOf(filepath.Join(t.State, "netns"), filepath.Join(t.State, "nspins"))
}

func ips(t Target) ([]string, error) {
	if t.Network == "" {
		return nil, nil
	}
	es, err := entries(filepath.Join("/var/lib/cni/networks", t.Network))
	if err != nil {
		return nil, err
	}
	// The plugin's own bookkeeping, not allocations.
	return slices.DeleteFunc(es, func(p string) bool {
		b := filepath.Base(p)
		return b == "lock" || strings.HasPrefix(b, "last_reserved_ip")
	}), nil
}

func veths(t Target) ([]string, error) {
	if t.Bridge == "" {
		return nil, nil
	}
	return entries(filepath.Join("/sys/class/net", t.Bridge, "brif"))
}

// runtimeState is the containers each handler's runtime root holds.
func runtimeState(t Target) ([]string, error) {
	roots, err := entries(filepath.Join(t.State, "runtime"))
	if err != nil {
		return nil, err
	}
	return entriesOf(roots...)
}

// cgroupDirs lists every cgroup below the parents, in every hierarchy
// (cgroup v1 controllers and the v2 unified tree alike).
func cgroupDirs(t Target) ([]string, error) {
	hierarchies, err := entries("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		hierarchies = []string{"/sys/fs/cgroup"} // pure v2
	}
	var out []string
	for _, h := range hierarchies {
		for _, p := range t.CgroupParents {
			top := filepath.Join(h, p)
			err := filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
				if os.IsNotExist(err) {
					return nil
				}
				if err != nil {
					return err
				}
				if d.IsDir() && path != top {
					out = append(out, path)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// processes are the ones in the pods' cgroups (containers, pauses) and
// those whose command line names crid's root or state (monitors).
// processPIDs are the processes in the target's cgroups or naming its
// root or state on their command line.
func processPIDs(t Target) (map[int]bool, error) {
	pids := map[int]bool{}
	dirs, err := cgroupDirs(t)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue // removed while reading, or a v1 hierarchy without procs
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids[pid] = true
			}
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == t.PID {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue // exited
		}
		args := strings.Split(string(cmd), "\x00")
		if slices.ContainsFunc(args, func(a string) bool { return under(a, t.Root) || under(a, t.State) }) {
			pids[pid] = true
		}
	}
	return pids, nil
}

// processes are processPIDs old enough to count (MinProcessAge).
func processes(t Target) ([]string, error) {
	pids, err := processPIDs(t)
	if err != nil {
		return nil, err
	}
	var out []string
	for pid := range pids {
		// A leaked process outlives the check's polling; a container's
		// own short-lived children (a shell loop's `sleep 0.05`) come and
		// go with new pids and would be reported as new at every poll.
		if age, ok := processAge(pid); !ok || age < MinProcessAge {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue // exited
		}
		out = append(out, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(comm))))
	}
	return out, nil
}

// itemPID is the pid of a process item ("pid (comm)").
func itemPID(item string) int {
	pid, _ := strconv.Atoi(strings.SplitN(item, " ", 2)[0])
	return pid
}

// MinProcessAge is how long a process must have lived to count: a
// test that wants to see one waits that long first.
const MinProcessAge = time.Second

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's start time: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// processAge is how long pid has run (false if it is gone).
func processAge(pid int) (time.Duration, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return 0, false
	}
	start, err := strconv.ParseInt(f[19], 10, 64) // field 22: starttime
	if err != nil {
		return 0, false
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, false
	}
	secs, err := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(secs*float64(time.Second)) - time.Duration(start)*time.Second/clockTicks, true
}

// objectDirs are the per-pod and per-container dirs of root and state,
// and the removed containers' layers still being deleted.
func objectDirs(t Target) ([]string, error) {
	return entriesOf(
		filepath.Join(t.Root, "containers"), filepath.Join(t.Root, "sandboxes"),
		filepath.Join(t.State, "containers"), filepath.Join(t.State, "sandboxes"),
	)
}

// tempFiles are removed containers' layers being deleted and the work
// dirs of checkpoints being assembled.
func tempFiles(t Target) ([]string, error) {
	return entriesOf(filepath.Join(t.Root, "trash"), filepath.Join(t.State, "checkpoints"))
}

// imageTemp is what the image store holds only while a pull or a
// collection runs: downloads, half-made snapshots, the GC's trash.
func imageTemp(t Target) ([]string, error) {
	out, err := entriesOf(filepath.Join(t.Root, "content", "ingest"), filepath.Join(t.Root, "content", "trash"))
	if err != nil {
		return nil, err
	}
	snaps, err := entries(filepath.Join(t.Root, "snapshots"))
	if err != nil {
		return nil, err
	}
	for _, s := range snaps {
		if strings.HasPrefix(filepath.Base(s), ".tmp-") {
			out = append(out, s)
		}
	}
	return out, nil
}

// iptablesRules are the rules of the nat and filter tables that name the
// network: the portmap plugin comments its DNAT and SNAT rules with it
// ("dnat name: \"<network>\" id: \"<container>\"").
func iptablesRules(t Target) ([]string, error) {
	if t.Network == "" {
		return nil, nil
	}
	var out []string
	for _, table := range []string{"nat", "filter"} {
		b, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			return nil, fmt.Errorf("iptables-save -t %s: %w", table, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `\"`+t.Network+`\"`) {
				out = append(out, table+": "+line)
			}
		}
	}
	return out, nil
}

// children are crid's live child processes old enough to count
// (MinProcessAge): what it started and did not end (a runtime command or
// CNI plugin it gave up on), and orphans it adopted as a subreaper (a
// plugin's delegate whose parent was killed). Monitors are crid's
// children too until crid restarts.
func children(t Target) ([]string, error) {
	return cridProcs(t, func(pid int, state, _ string) (string, bool) {
		if state == "Z" {
			return "", false
		}
		if age, ok := processAge(pid); !ok || age < MinProcessAge {
			return "", false
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return fmt.Sprintf("%d %s", pid, strings.Join(strings.Fields(strings.ReplaceAll(string(cmd), "\x00", " ")), " ")), true
	})
}

// zombies are crid's children that exited and were not reaped.
func zombies(t Target) ([]string, error) {
	return cridProcs(t, func(pid int, state, head string) (string, bool) {
		return fmt.Sprintf("%d %s", pid, head), state == "Z"
	})
}

// cridProcs lists, through keep, the processes whose parent is crid:
// keep gets each one's pid, state and the head of its stat line
// ("pid (comm)") and says what to report of it, if anything.
func cridProcs(t Target, keep func(pid int, state, head string) (string, bool)) ([]string, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(t.PID) {
			continue
		}
		if line, ok := keep(pid, f[0], s[:i+1]); ok {
			out = append(out, line)
		}
	}
	return out, nil
}

// goroutines reads the count from the goroutine profile on crid's admin
// socket ("goroutine profile: total N").
func goroutines(ctx context.Context, socket string) (int, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true, // no connection of ours stays to be counted
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://crid/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("goroutine profile: %s", resp.Status)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil && err != io.EOF {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total ")))
	if err != nil {
		return 0, fmt.Errorf("goroutine profile: first line %q: %w", line, err)
	}
	return n, nil
}
