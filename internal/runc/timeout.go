package runc

import (
	"context"
	"fmt"
)

// Bounded gives one runtime command (what: its subcommand) the runtime's
// Timeout, so that a runtime that hangs (a stuck hook, a wedged cgroup or
// storage driver) is killed rather than holding the RPC, or the create
// kubelet's retry waits for, until crid's own outer bounds. The context's
// cause names the limit: an error built from context.Cause says why the
// command was killed, and is a DeadlineExceeded.
func (r *Runtime) Bounded(ctx context.Context, what string) (context.Context, context.CancelFunc) {
	if r.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, r.Timeout, fmt.Errorf("%s %s did not finish within %s (runtime.command_timeout) and was killed: %w",
		r.Name, what, r.Timeout, context.DeadlineExceeded))
}
