package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PSILine is one line ("some" or "full") of a cgroup v2 pressure file.
type PSILine struct {
	Avg10, Avg60, Avg300 float64 // percent of wall time stalled
	TotalMicros          uint64  // cumulative stall time, as the kernel counts it
}

// PSI is a resource's pressure: "some" (at least one task stalled) and
// "full" (all non-idle tasks stalled at once).
type PSI struct {
	Some, Full PSILine
}

// readPSI reads <dir>/<resource>.pressure. A kernel without PSI (or booted
// with psi=0) has no such file, or refuses to read it with EOPNOTSUPP:
// both read as nil, since PSI is optional in the CRI's stats.
func readPSI(dir, resource string) (*PSI, error) {
	if dir == "" {
		return nil, nil
	}
	p := filepath.Join(dir, resource+".pressure")
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	psi, err := parsePSI(string(b))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", p, err)
	}
	return psi, nil
}

// parsePSI parses the kernel's pressure format:
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// A missing "full" line (cpu.pressure before Linux 5.13) leaves Full zero.
func parsePSI(s string) (*PSI, error) {
	var psi PSI
	seen := false
	for _, line := range strings.Split(s, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var dst *PSILine
		switch fields[0] {
		case "some":
			dst = &psi.Some
		case "full":
			dst = &psi.Full
		default:
			return nil, fmt.Errorf("unknown pressure line %q", fields[0])
		}
		if err := parsePSILine(fields[1:], dst); err != nil {
			return nil, fmt.Errorf("%s line: %w", fields[0], err)
		}
		seen = true
	}
	if !seen {
		return nil, errors.New("no pressure lines")
	}
	return &psi, nil
}

func parsePSILine(fields []string, dst *PSILine) error {
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("field %q is not key=value", f)
		}
		var err error
		switch k {
		case "avg10":
			dst.Avg10, err = strconv.ParseFloat(v, 64)
		case "avg60":
			dst.Avg60, err = strconv.ParseFloat(v, 64)
		case "avg300":
			dst.Avg300, err = strconv.ParseFloat(v, 64)
		case "total":
			dst.TotalMicros, err = strconv.ParseUint(v, 10, 64)
		default:
			// Newer kernels may add fields: ignore what we do not know.
		}
		if err != nil {
			return fmt.Errorf("field %s: %w", k, err)
		}
	}
	return nil
}

// Pressure is a cgroup's pressure stall information per resource.
type Pressure struct {
	CPU, Memory, IO *PSI
}

// ReadParentPressure reads the PSI of the cgroup that contains the one at
// cgroupsPath (as in the OCI spec): for a pod's sandbox that is the pod's
// own cgroup, which kubelet makes per pod, so its pressure covers every
// container of the pod (PSI cannot be summed from the children). Nil on
// cgroup v1, which has no PSI.
func ReadParentPressure(cgroupsPath string) (*Pressure, error) {
	if !Unified() {
		return nil, nil
	}
	p, err := resolve(cgroupsPath)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(filepath.Join(cgroupRoot, p))
	if dir == cgroupRoot {
		return nil, nil // the root's pressure is the node's, not a pod's
	}
	var out Pressure
	for res, dst := range map[string]**PSI{"cpu": &out.CPU, "memory": &out.Memory, "io": &out.IO} {
		if *dst, err = readPSI(dir, res); err != nil {
			return nil, err
		}
	}
	return &out, nil
}
