package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process as read from /proc.
type proc struct {
	pid, ppid int
	comm      string
	exe       string // basename of argv[0]
	cmdline   string // arguments joined by spaces
}

// readProcs lists the processes under procRoot (normally /proc).
func readProcs(procRoot string) ([]proc, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", procRoot, err)
	}
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		p, ok := parseStat(pid, data)
		if !ok {
			continue
		}
		if cl, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline")); err == nil {
			arg0, _, _ := bytes.Cut(cl, []byte{0})
			p.exe = filepath.Base(string(arg0))
			p.cmdline = strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))
		}
		out = append(out, p)
	}
	return out, nil
}

// parseStat reads comm and ppid from /proc/<pid>/stat. comm is in
// parentheses and may itself contain spaces and parentheses, so the last ')'
// ends it.
func parseStat(pid int, data []byte) (proc, bool) {
	s := string(data)
	open := strings.IndexByte(s, '(')
	end := strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return proc{}, false
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 2 {
		return proc{}, false
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return proc{}, false
	}
	return proc{pid: pid, ppid: ppid, comm: s[open+1 : end]}, true
}

// matchName tells whether p is the program name: comm is cut to 15 bytes by
// the kernel, so compare the cut name too, and argv[0]'s basename.
func (p proc) matchName(name string) bool {
	if name == "" {
		return false
	}
	cut := name
	if len(cut) > 15 {
		cut = cut[:15]
	}
	return p.comm == cut || p.exe == name
}

// MemoryUsage is the memory of a runtime's process tree, by role, in KiB.
type MemoryUsage struct {
	DaemonRSS, DaemonPSS   int64
	MonitorRSS, MonitorPSS int64
	PauseRSS, PausePSS     int64
	OtherRSS, OtherPSS     int64
	Monitors, Pauses       int
	Others                 int
}

// treeSelector describes the runtime's process tree.
type treeSelector struct {
	daemonPID    int
	monitorNames []string
	// monitorMatch, when set, must occur in a monitor's command line: other
	// runtimes on the host (another containerd) run same-named shims.
	monitorMatch string
	pauseName    string
}

func (s treeSelector) isMonitor(p proc) bool {
	for _, n := range s.monitorNames {
		if p.matchName(n) && (s.monitorMatch == "" || strings.Contains(p.cmdline, s.monitorMatch)) {
			return true
		}
	}
	return false
}

// findDaemon returns the pid of the single process named name.
func findDaemon(procs []proc, name string) (int, error) {
	var found []int
	for _, p := range procs {
		if p.matchName(name) {
			found = append(found, p.pid)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("no process named %q", name)
	case 1:
		return found[0], nil
	default:
		return 0, fmt.Errorf("%d processes named %q (%v): give --daemon-pid", len(found), name, found)
	}
}

// classify selects the runtime's tree: the daemon, its descendants, and
// every monitor (shims are reparented away from the daemon) with its
// descendants. It returns pid -> role ("daemon", "monitor", "pause", "other").
func classify(procs []proc, sel treeSelector) map[int]string {
	children := map[int][]int{}
	byPID := map[int]proc{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
		byPID[p.pid] = p
	}
	roots := []int{sel.daemonPID}
	for _, p := range procs {
		if sel.isMonitor(p) {
			roots = append(roots, p.pid)
		}
	}
	in := map[int]bool{}
	var walk func(int)
	walk = func(pid int) {
		if in[pid] {
			return
		}
		if _, ok := byPID[pid]; !ok {
			return
		}
		in[pid] = true
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	roles := map[int]string{}
	for pid := range in {
		p := byPID[pid]
		role := "other"
		switch {
		case pid == sel.daemonPID:
			role = "daemon"
		case p.matchName(sel.pauseName):
			role = "pause"
		case sel.isMonitor(p):
			role = "monitor"
		}
		roles[pid] = role
	}
	return roles
}

// readRollup returns Rss and Pss in KiB from a smaps_rollup file.
func readRollup(path string) (rss, pss int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			rss = v
		case "Pss:":
			pss = v
		}
	}
	return rss, pss, sc.Err()
}

// measureTree sums smaps_rollup over the runtime's tree.
func measureTree(procRoot string, sel treeSelector) (MemoryUsage, error) {
	procs, err := readProcs(procRoot)
	if err != nil {
		return MemoryUsage{}, err
	}
	var u MemoryUsage
	roles := classify(procs, sel)
	if roles[sel.daemonPID] != "daemon" {
		return u, fmt.Errorf("daemon pid %d not found", sel.daemonPID)
	}
	for pid, role := range roles {
		rss, pss, err := readRollup(filepath.Join(procRoot, strconv.Itoa(pid), "smaps_rollup"))
		if err != nil {
			if pid != sel.daemonPID && (errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH)) {
				continue // exited between the scan and the read (runc, exec)
			}
			return u, fmt.Errorf("smaps_rollup of %d: %w", pid, err)
		}
		switch role {
		case "daemon":
			u.DaemonRSS, u.DaemonPSS = rss, pss
		case "monitor":
			u.MonitorRSS += rss
			u.MonitorPSS += pss
			u.Monitors++
		case "pause":
			u.PauseRSS += rss
			u.PausePSS += pss
			u.Pauses++
		default:
			u.OtherRSS += rss
			u.OtherPSS += pss
			u.Others++
		}
	}
	return u, nil
}

// memoryMetrics renders idle and loaded usage of n pods as metrics in MiB.
// Per-pod overhead is what the runtime adds per pod beyond the workload:
// daemon growth plus monitors/shims plus pause processes, divided by n.
func memoryMetrics(idle, loaded MemoryUsage, n int) []Metric {
	mib := func(k int64) float64 { return float64(k) / 1024 }
	g := fmt.Sprintf("pods=%d", n)
	ms := []Metric{
		{"memory", "idle", "daemon RSS", "MiB", mib(idle.DaemonRSS)},
		{"memory", "idle", "daemon PSS", "MiB", mib(idle.DaemonPSS)},
		{"memory", "idle", "tree RSS (daemon+monitors+pause)", "MiB", mib(idle.DaemonRSS + idle.MonitorRSS + idle.PauseRSS)},
		{"memory", g, "daemon RSS", "MiB", mib(loaded.DaemonRSS)},
		{"memory", g, "daemon PSS", "MiB", mib(loaded.DaemonPSS)},
		{"memory", g, "monitors RSS", "MiB", mib(loaded.MonitorRSS)},
		{"memory", g, "monitors PSS", "MiB", mib(loaded.MonitorPSS)},
		{"memory", g, "monitor processes", "", float64(loaded.Monitors)},
		{"memory", g, "pause RSS", "MiB", mib(loaded.PauseRSS)},
		{"memory", g, "pause PSS", "MiB", mib(loaded.PausePSS)},
		{"memory", g, "pause processes", "", float64(loaded.Pauses)},
		{"memory", g, "workload RSS (not overhead)", "MiB", mib(loaded.OtherRSS)},
	}
	if n > 0 {
		over := func(l, i MemoryUsage, rss bool) float64 {
			if rss {
				return mib((l.DaemonRSS-i.DaemonRSS)+(l.MonitorRSS-i.MonitorRSS)+(l.PauseRSS-i.PauseRSS)) / float64(n)
			}
			return mib((l.DaemonPSS-i.DaemonPSS)+(l.MonitorPSS-i.MonitorPSS)+(l.PausePSS-i.PausePSS)) / float64(n)
		}
		ms = append(ms,
			Metric{"memory", g, "per-pod overhead RSS", "MiB", over(loaded, idle, true)},
			Metric{"memory", g, "per-pod overhead PSS", "MiB", over(loaded, idle, false)})
	}
	return ms
}

// treeSelector finds the runtime's daemon (--daemon-pid or
// --daemon-name) and describes its tree.
func (b *Bench) treeSelector() (treeSelector, error) {
	o := b.opts
	pid := o.DaemonPID
	if pid == 0 {
		if o.DaemonName == "" {
			return treeSelector{}, fmt.Errorf("give --daemon-pid or --daemon-name")
		}
		procs, err := readProcs("/proc")
		if err != nil {
			return treeSelector{}, err
		}
		if pid, err = findDaemon(procs, o.DaemonName); err != nil {
			return treeSelector{}, err
		}
	}
	return treeSelector{daemonPID: pid, monitorNames: o.MonitorNames, monitorMatch: o.MonitorMatch, pauseName: o.PauseName}, nil
}

func (b *Bench) memory(ctx context.Context) error {
	o := b.opts
	sel, err := b.treeSelector()
	if err != nil {
		return err
	}
	idle, err := measureTree("/proc", sel)
	if err != nil {
		return err
	}
	if idle.Monitors > 0 || idle.Pauses > 0 {
		b.progressf("memory: warning: %d monitors and %d pause processes exist before the scenario; idle is not empty", idle.Monitors, idle.Pauses)
	}
	type pod struct{ id, ctr string }
	var pods []pod
	defer func() {
		for _, p := range pods {
			_ = b.teardownPod(ctx, p.id, []string{p.ctr})
		}
	}()
	tk := b.ticker("memory setup", o.MemoryPods)
	for i := 0; i < o.MemoryPods; i++ {
		id, cfg, err := b.runPod(ctx, b.tr.Name("mem", i))
		if err != nil {
			return err
		}
		cid, err := b.createContainer(ctx, id, cfg, "c")
		pods = append(pods, pod{id, cid})
		if err != nil {
			return err
		}
		if err := b.startContainer(ctx, cid); err != nil {
			return err
		}
		tk.inc()
	}
	// Let lazily started goroutines and page faults settle.
	select {
	case <-time.After(o.SettleMemory.Duration):
	case <-ctx.Done():
		return ctx.Err()
	}
	loaded, err := measureTree("/proc", sel)
	if err != nil {
		return err
	}
	b.add(memoryMetrics(idle, loaded, o.MemoryPods)...)
	return nil
}
