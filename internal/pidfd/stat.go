package pidfd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// statFields returns the fields of /proc/<pid>/stat from field 3 (state)
// on. The command name (field 2) may hold spaces and parentheses, so they
// start after its last ')'.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// statField is field n (counted from 1, as proc(5) does) of
// /proc/<pid>/stat; n is 3 or more.
func statField(pid, n int) (string, error) {
	f, err := statFields(pid)
	if err != nil {
		return "", err
	}
	if len(f) <= n-3 {
		return "", fmt.Errorf("parse /proc/%d/stat: %d fields, no field %d", pid, len(f)+2, n)
	}
	return f[n-3], nil
}

// State is the process's state letter (field 3 of /proc/<pid>/stat): 'R',
// 'S', ..., 'Z' for a zombie, dead but not reaped yet.
func State(pid int) (byte, error) {
	s, err := statField(pid, 3)
	if err != nil {
		return 0, err
	}
	return s[0], nil
}

// ParentPID is the process's parent (field 4 of /proc/<pid>/stat).
func ParentPID(pid int) (int, error) {
	s, err := statField(pid, 4)
	if err != nil {
		return 0, err
	}
	ppid, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat parent: %w", pid, err)
	}
	return ppid, nil
}

// StartTime is field 22 of /proc/<pid>/stat (start time in clock ticks
// since boot): with the pid it names one process, never a later one that
// reused the pid. runc and crun record it for a container's init too.
func StartTime(pid int) (uint64, error) {
	s, err := statField(pid, 22)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat start time: %w", pid, err)
	}
	return v, nil
}
