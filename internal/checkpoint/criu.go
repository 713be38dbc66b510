// Package checkpoint writes Kubernetes' forensic container checkpoint
// archive (KEP-2008) from what `runc checkpoint` leaves: the layout that
// CRI-O and containerd write and checkpointctl reads (criu's images under
// checkpoint/, config.dump, spec.dump, status.dump, rootfs-diff.tar,
// deleted.files, dump.log, stats-dump), named by checkpointctl's metadata
// constants. It also probes whether criu works on the node at all.
package checkpoint

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v8"
	criuutils "github.com/checkpoint-restore/go-criu/v8/utils"
	"github.com/containerd/errdefs"
)

// probeTimeout bounds `criu check`, which takes seconds under emulation.
const probeTimeout = time.Minute

// Probe answers whether criu can checkpoint on this node. It asks once
// and keeps the answer: neither the kernel nor the criu package change
// under a running crid, and `criu check` costs ~1 s.
type Probe struct {
	path string
	once func() error
}

// NewProbe probes the criu binary at path ("" looks up "criu" in $PATH,
// as runc does when it runs criu).
func NewProbe(path string) *Probe {
	p := &Probe{path: path}
	p.once = sync.OnceValue(p.probe)
	return p
}

// Check is nil when criu works here, else an errdefs.ErrFailedPrecondition
// saying what failed, for an operator.
func (p *Probe) Check() error { return p.once() }

func (p *Probe) probe() error {
	path := p.path
	if path == "" {
		path = "criu"
	}
	bin, err := exec.LookPath(path)
	if err != nil {
		return fmt.Errorf("checkpointing needs criu (checkpoint/restore in userspace), and %s is not installed: %w: %w",
			path, err, errdefs.ErrFailedPrecondition)
	}
	c := criu.MakeCriu()
	c.SetCriuPath(bin)
	ver, err := c.GetCriuVersion()
	if err != nil {
		return fmt.Errorf("checkpointing needs criu, and %s does not answer for its version: %w: %w", bin, err, errdefs.ErrFailedPrecondition)
	}
	if ver < criuutils.PodCriuVersion {
		return fmt.Errorf("checkpointing needs criu %s or newer, and %s is %s: %w",
			criuVersion(criuutils.PodCriuVersion), bin, criuVersion(ver), errdefs.ErrFailedPrecondition)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "check")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("checkpointing needs criu, and `%s check` fails on this node (%v): %s: %w",
			bin, err, lastLines(out.String(), 3), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// criuVersion prints go-criu's encoding of a version (31700) as 3.17.
func criuVersion(v int) string {
	s := fmt.Sprintf("%d.%d", v/10000, v/100%100)
	if v%100 != 0 {
		s += fmt.Sprintf(".%d", v%100)
	}
	return s
}

// lastLines keeps the end of criu's output, where it says why it failed.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
