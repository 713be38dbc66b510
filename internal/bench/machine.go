package bench

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine names the host a run was made on.
type Machine struct {
	NCPU     int    `json:"ncpu"`
	Kernel   string `json:"kernel"`
	MemTotal string `json:"mem_total"`
	CPUModel string `json:"cpu_model"`
}

// String is a one-line description.
func (m Machine) String() string {
	return strconv.Itoa(m.NCPU) + " CPUs (" + m.CPUModel + "), kernel " + m.Kernel + ", " + m.MemTotal + " memory"
}

// DescribeMachine reads the host's CPU count, kernel and memory.
func DescribeMachine() Machine {
	m := Machine{NCPU: runtime.NumCPU()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					m.MemTotal = strconv.FormatFloat(float64(kb)/1024/1024, 'f', 1, 64) + " GiB"
				}
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	return m
}
