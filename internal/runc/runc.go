// Package runc drives an OCI runtime binary (runc, crun) through its CLI.
package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Runtime is one OCI runtime handler.
type Runtime struct {
	Name string // handler name, e.g. "runc"
	Path string // binary
	Root string // --root state dir

	// SystemdCgroup passes --systemd-cgroup: the spec's cgroupsPath is the
	// systemd driver's slice:prefix:name, which runc's cgroupfs driver
	// would take for a literal directory name.
	SystemdCgroup bool

	// ExecHelper, if set, is a binary that runs ExecHelperMain when given
	// ExecHelperCommand (crid-monitor does). Exec without a terminal goes
	// through it so that background children holding the output cannot
	// hold up the exec; without it Exec runs runc exec in the foreground.
	ExecHelper string

	// Observe, if set, is told of every runtime invocation (observe.go).
	Observe Observer

	// Timeout bounds each runtime command but exec (Bounded, timeout.go);
	// 0: only the caller's context does.
	Timeout time.Duration

	// featMu guards feat, the cached `features` answer.
	featMu  sync.Mutex
	feat    *features.Features
	featErr error

	// verMu guards ver, the cached `--version` answer (version.go).
	verMu sync.Mutex
	ver   *VersionInfo
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
	// Dir is the runtime's working directory ("" = crid's). A relative
	// seccomp listenerPath in the container's spec resolves against it
	// (runc dials it from exec as it finds it).
	Dir string
}

// Error is a failed runtime command with the runtime's own error text.
type Error struct {
	Args    []string
	Message string // the runtime's error message(s), "" if it printed none
	Err     error  // usually *exec.ExitError
}

func (e *Error) Error() string {
	cmd := strings.Join(e.Args, " ")
	if e.Message != "" {
		return fmt.Sprintf("%s: %s", cmd, e.Message)
	}
	return fmt.Sprintf("%s: %v", cmd, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// globalArgs are the flags given before every subcommand. JSON logs make
// the runtime's error text unambiguous to extract.
func (r *Runtime) globalArgs() []string {
	args := []string{"--log-format", "json"}
	if r.Root != "" {
		args = append(args, "--root", r.Root)
	}
	if r.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	return args
}

// run executes a runtime subcommand, returning its stdout.
func (r *Runtime) run(ctx context.Context, stdin io.Reader, args ...string) (_ []byte, err error) {
	ctx, done := r.observe(ctx, args[0], args[1:])
	defer func() { done(err) }()
	ctx, cancel := r.Bounded(ctx, args[0])
	defer cancel()
	full := append(r.globalArgs(), args...)
	cmd := exec.CommandContext(ctx, r.Path, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = stdin
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A runtime command never leaves children behind on purpose, but do not
	// hang forever should a hook keep our pipes open.
	cmd.WaitDelay = 5 * time.Second
	if err := runGrouped(ctx, cmd); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", r.Path, strings.Join(args, " "), context.Cause(ctx))
		}
		return nil, &Error{Args: append([]string{r.Path}, args...), Message: ErrorMessage(stderr.Bytes()), Err: err}
	}
	return stdout.Bytes(), nil
}

// ErrorMessage extracts the error text from a runtime's stderr or JSON log:
// the msg of every error/fatal JSON record, or, when there is none, the
// non-JSON text itself (runc prints a fatal error plainly as well).
func ErrorMessage(out []byte) string {
	var msgs, plain []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &rec) == nil && rec.Level != "" {
			if rec.Level == "error" || rec.Level == "fatal" {
				msgs = append(msgs, rec.Msg)
			}
			continue
		}
		plain = append(plain, line)
	}
	if len(msgs) == 0 {
		msgs = plain
	}
	// runc logs a fatal error and prints it again; say it once.
	uniq := msgs[:0]
	seen := map[string]bool{}
	for _, m := range msgs {
		if !seen[m] {
			seen[m] = true
			uniq = append(uniq, m)
		}
	}
	return strings.Join(uniq, "; ")
}

func messageOf(err error) string {
	var re *Error
	if errors.As(err, &re) {
		return strings.ToLower(re.Message)
	}
	return ""
}

// isNotExist: runc says "container does not exist"; crun fails to open the
// container's state file.
func isNotExist(err error) bool {
	m := messageOf(err)
	return strings.Contains(m, "does not exist") || strings.Contains(m, "no such file or directory")
}

func isNotRunning(err error) bool {
	m := messageOf(err)
	return strings.Contains(m, "not running") || strings.Contains(m, "process already finished") ||
		strings.Contains(m, "no such process")
}

// Start runs the user process of a created container.
func (r *Runtime) Start(ctx context.Context, id string) error {
	if _, err := r.run(ctx, nil, "start", id); err != nil {
		if isNotExist(err) {
			return fmt.Errorf("start container %s: %w: %w", id, errdefs.ErrNotFound, err)
		}
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// Kill sends sig to the container's init (all processes with all=true).
// A container that is gone is not an error.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	args = append(args, id, strconv.Itoa(int(sig)))
	if _, err := r.run(ctx, nil, args...); err != nil {
		if isNotExist(err) || isNotRunning(err) {
			return nil
		}
		return fmt.Errorf("kill container %s: %w", id, err)
	}
	return nil
}

// Delete removes the runtime's record of the container; force kills it first.
// A container that does not exist is not an error.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	args = append(args, id)
	if _, err := r.run(ctx, nil, args...); err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// DeleteExited deletes a container whose init has exited. It asks for a
// plain delete first: runc 1.2+ spends ~100 ms in `delete --force` even on
// a stopped container (it signals and waits), where a plain delete of
// one takes ~10 ms, and every StopContainer waits for this delete. A
// container the runtime does not consider stopped (its state raced the
// exit) is deleted with --force.
func (r *Runtime) DeleteExited(ctx context.Context, id string) error {
	if err := r.Delete(ctx, id, false); err == nil {
		return nil
	}
	return r.Delete(ctx, id, true)
}

// State queries the container; errdefs.ErrNotFound if the runtime does not know it.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) {
	out, err := r.run(ctx, nil, "state", id)
	if err != nil {
		if isNotExist(err) {
			return nil, fmt.Errorf("state of container %s: %w: %w", id, errdefs.ErrNotFound, err)
		}
		return nil, fmt.Errorf("state of container %s: %w", id, err)
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("state of container %s: decode %q: %w", id, out, err)
	}
	return &st, nil
}

// Update applies resources to a running container.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	if _, err := r.run(ctx, bytes.NewReader(b), "update", "--resources", "-", id); err != nil {
		if isNotExist(err) {
			return fmt.Errorf("update container %s: %w: %w", id, errdefs.ErrNotFound, err)
		}
		return fmt.Errorf("update container %s: %w", id, err)
	}
	return nil
}

// Features returns `runtime features` (cached after the first call).
func (r *Runtime) Features(ctx context.Context) (*features.Features, error) {
	r.featMu.Lock()
	defer r.featMu.Unlock()
	if r.feat != nil || r.featErr != nil {
		return r.feat, r.featErr
	}
	// A runtime without `features` (crun 1.8) fails the same way every
	// time: the failure is cached too, or every Status poll and every
	// container spec would spawn the runtime again to learn it.
	out, err := r.run(ctx, nil, "features")
	if err != nil {
		if ctx.Err() == nil {
			r.featErr = fmt.Errorf("runtime features: %w", err)
		}
		return nil, fmt.Errorf("runtime features: %w", err)
	}
	var f features.Features
	if err := json.Unmarshal(out, &f); err != nil {
		r.featErr = fmt.Errorf("runtime features: decode: %w", err)
		return nil, r.featErr
	}
	r.feat = &f
	return r.feat, nil
}

// ReadPidFile returns the pid in a pid file, 0 if it is missing or bad.
func ReadPidFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}
