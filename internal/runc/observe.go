package runc

import "context"

// Observer is told of each runtime invocation: op is the runtime's
// subcommand ("run", "kill", ...; "start" also for a start through the exec
// FIFO), args the arguments after the global flags, never a secret (a
// process spec goes through a file or stdin). It returns the context the
// invocation runs under and a func to call with its result. crid's core
// sets one that traces each call; the package itself imports no tracing,
// so crid-monitor, which links it, stays small.
type Observer func(ctx context.Context, op string, args []string) (context.Context, func(error))

// observe starts observing an invocation; without an Observer it costs
// nothing.
func (r *Runtime) observe(ctx context.Context, op string, args []string) (context.Context, func(error)) {
	if r.Observe == nil {
		return ctx, func(error) {}
	}
	return r.Observe(ctx, op, args)
}
