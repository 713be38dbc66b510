// Package runc drives an OCI runtime binary (runc, crun) through its CLI.
package runc

import (
	"context"
	"io"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Runtime is one OCI runtime handler.
type Runtime struct {
	Name string // handler name, e.g. "runc"
	Path string // binary
	Root string // --root state dir
}

// State is what `runtime state` reports.
type State struct {
	Status string `json:"status"` // created, running, stopped, paused
	Pid    int    `json:"pid"`
}

// Size is a terminal size.
type Size struct{ Width, Height uint16 }

// ExecIO is the stdio of an exec'd process.
type ExecIO struct {
	Stdin          io.Reader // nil: /dev/null
	Stdout, Stderr io.Writer // with Terminal, Stderr is unused
	Terminal       bool
	Resize         <-chan Size
}

// Start runs the user process of a created container.
func (r *Runtime) Start(ctx context.Context, id string) error { panic("not implemented") }

// Kill sends sig to the container's init (all processes with all=true).
// A container that is gone is not an error.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	panic("not implemented")
}

// Delete removes the runtime's record of the container; force kills it first.
// A container that does not exist is not an error.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error { panic("not implemented") }

// State queries the container; errdefs.ErrNotFound if the runtime does not know it.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) { panic("not implemented") }

// Exec runs proc in the container and waits for it, returning its exit code.
// After the process exits, output still held open by a background child is
// drained for at most drain. ctx cancellation kills the process.
func (r *Runtime) Exec(ctx context.Context, id string, proc *specs.Process, eio ExecIO, drain time.Duration) (int, error) {
	panic("not implemented")
}

// Update applies resources to a running container.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	panic("not implemented")
}

// Features returns `runtime features` (cached after the first call).
func (r *Runtime) Features(ctx context.Context) (*features.Features, error) { panic("not implemented") }

// Version returns the runtime's version line.
func (r *Runtime) Version(ctx context.Context) (string, error) { panic("not implemented") }
