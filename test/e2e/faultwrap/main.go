// Command faultwrap stands in for a program crid runs (the OCI runtime of
// a handler, crid-monitor) in the fault tests and misbehaves at a named
// subcommand: it fails with an error message, hangs, or is slow, then
// runs the real program in its place (exec, same pid).
//
// It is installed under the name crid is configured with (e.g. .../runc)
// and reads its rules from the file beside it with ".faults" added:
//
//	exec /usr/local/sbin/runc    the real program
//	create hang 1                subcommand, action, optional count
//	delete error                 (every time: no count)
//	start sleep:3s 1
//	* error 1                    any invocation (crid-monitor has none)
//
// Actions: error (print the runtime's kind of error, also as a JSON record
// to --log if given, and exit 1), hang (block until killed), sleep:DUR
// (wait, then run the real program), hang-after (run the real program as
// a child with the same stdio and, once it exited, block until killed: a
// runtime that did its work, e.g. started an exec's process, and then
// never returns; the real program's children are the wrapper's
// grandchildren). A count limits a rule to its first N
// invocations, so that a retry meets the real program. Each invocation that
// met a rule leaves a line in <name>.hits (subcommand and pid), for tests
// to find the process they expect to be killed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// valueFlags are the global flags of runc and crid-monitor that take a
// value as the next argument.
var valueFlags = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true,
	"-state-dir": true, "--state-dir": true,
}

type rule struct {
	sub, action string
	count       int // 0: every time
}

func main() {
	self := os.Args[0]
	real, rules, err := readRules(self + ".faults")
	if err != nil {
		fail("faultwrap: %v", err)
	}
	if real == "" {
		fail("faultwrap: %s.faults names no real program (exec PATH)", self)
	}
	sub, logPath := subcommand(os.Args[1:])
	for i, r := range rules {
		if r.sub != "*" && r.sub != sub {
			continue
		}
		if r.count > 0 && !take(self, i, r.count) {
			continue
		}
		record(self, sub)
		act(r, sub, logPath, real)
		break
	}
	err = syscall.Exec(real, append([]string{real}, os.Args[1:]...), os.Environ())
	fail("faultwrap: exec %s: %v", real, err)
}

// act carries out a rule's action (real is the real program); it returns
// only for sleep.
func act(r rule, sub, logPath, real string) {
	switch {
	case r.action == "error":
		msg := "faultwrap: injected failure of " + sub
		if logPath != "" {
			// As runc logs its errors; the message is on stderr as well.
			b, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": time.Now().Format(time.RFC3339)})
			if err := appendFile(logPath, append(b, '\n')); err != nil {
				fail("%s (and writing %s: %v)", msg, logPath, err)
			}
		}
		fail("%s", msg)
	case r.action == "hang":
		hang()
	case r.action == "hang-after":
		cmd := exec.Command(real, os.Args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "faultwrap: %s (hanging all the same)\n", err)
		}
		hang()
	case strings.HasPrefix(r.action, "sleep:"):
		d, _ := time.ParseDuration(strings.TrimPrefix(r.action, "sleep:"))
		time.Sleep(d)
	}
}

func hang() {
	for {
		time.Sleep(time.Hour)
	}
}

func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// subcommand is the first argument that is neither a flag nor a flag's
// value ("main" when there is none), and the --log file if one is given.
func subcommand(args []string) (sub, logPath string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return a, logPath
		}
		if valueFlags[a] && i+1 < len(args) {
			if a == "--log" {
				logPath = args[i+1]
			}
			i++
		}
	}
	return "main", logPath
}

func readRules(path string) (string, []rule, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	var real string
	var rules []rule
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) == 0 || strings.HasPrefix(fs[0], "#"):
		case fs[0] == "exec" && len(fs) == 2:
			real = fs[1]
		case len(fs) == 2 || len(fs) == 3:
			r := rule{sub: fs[0], action: fs[1]}
			if !validAction(r.action) {
				return "", nil, fmt.Errorf("%s: action %q: want error, hang, hang-after or sleep:DUR", path, r.action)
			}
			if len(fs) == 3 {
				if r.count, err = strconv.Atoi(fs[2]); err != nil || r.count < 1 {
					return "", nil, fmt.Errorf("%s: count %q: want 1 or more", path, fs[2])
				}
			}
			rules = append(rules, r)
		default:
			return "", nil, fmt.Errorf("%s: line %q: want 'exec PATH' or 'SUBCOMMAND ACTION [COUNT]'", path, sc.Text())
		}
	}
	return real, rules, sc.Err()
}

func validAction(a string) bool {
	if a == "error" || a == "hang" || a == "hang-after" {
		return true
	}
	d, err := time.ParseDuration(strings.TrimPrefix(a, "sleep:"))
	return strings.HasPrefix(a, "sleep:") && err == nil && d > 0
}

// take counts an invocation against rule i and says whether the rule
// still applies (fewer than count taken before). The count lives in a
// file, under a lock: the runtime runs as many processes at once.
func take(self string, i, count int) bool {
	f, err := os.OpenFile(fmt.Sprintf("%s.count%d", self, i), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fail("faultwrap: %v", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		fail("faultwrap: lock: %v", err)
	}
	var n int
	if _, err := fmt.Fscan(f, &n); err != nil && err != io.EOF {
		fail("faultwrap: read count: %v", err)
	}
	if n >= count {
		return false
	}
	if err := f.Truncate(0); err != nil {
		fail("faultwrap: %v", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(n+1)), 0); err != nil {
		fail("faultwrap: %v", err)
	}
	return true
}

// record notes the invocation in <self>.hits.
func record(self, sub string) {
	f, err := os.OpenFile(self+".hits", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fail("faultwrap: %v", err)
	}
	_, err = fmt.Fprintf(f, "%s %d\n", sub, os.Getpid())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fail("faultwrap: record: %v", err)
	}
}
