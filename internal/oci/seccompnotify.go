package oci

import (
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The io.crid.seccomp-notifier actions: what happens when a container
// makes a syscall its seccomp profile blocks.
const (
	// NotifierLog logs the syscall and fails it as the profile would.
	NotifierLog = "log"
	// NotifierStop does what NotifierLog does and then stops the
	// container, with the syscalls in its status.
	NotifierStop = "stop"
)

// notNotified are syscalls that keep their action:
//   - write: runc refuses SCMP_ACT_NOTIFY for it, which its init needs to
//     hand the notify fd to its parent once the filter is loaded (runc's
//     InitSeccomp);
//   - the new mount API: runc 1.5's init (pathrs-lite) tries them for a
//     private procfs after the filter is loaded (without no_new_privs the
//     filter comes before the credential changes and the fd cleanup) and
//     falls back when they fail. Notified, every `runc exec` would log
//     open_tree (seen on runc 1.5.3) and a "stop" notifier would stop the
//     container at its first exec. Workloads that use them still get the
//     profile's errno, unlogged.
var notNotified = []string{
	"write",
	"fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "open_tree_attr", "move_mount", "mount_setattr",
}

// Syscall is one entry of the native syscall table.
type Syscall struct {
	Name string
	Nr   uint32
}

// NotifiedSyscall is a syscall the rewritten profile notifies, with the
// errno the original profile failed it with: the notifier's answer.
type NotifiedSyscall struct {
	Name  string
	Nr    uint32
	Errno uint32
}

// NotifyPlan is what the listener needs to answer a rewritten profile's
// notifications as the original profile would have.
type NotifyPlan struct {
	AuditArch    uint32 // the native AUDIT_ARCH_*: Syscalls' numbers are of it
	DefaultErrno uint32 // the answer for a syscall not in Syscalls (other architectures)
	Syscalls     []NotifiedSyscall
}

// parseNotifier validates io.crid.seccomp-notifier.
func parseNotifier(v string) (string, error) {
	if v != NotifierLog && v != NotifierStop {
		return "", badAnnotation(AnnotationSeccompNotifier, v, `"log" or "stop"`)
	}
	return v, nil
}

// RewriteForNotifier changes profile p so that the syscalls it fails with
// an errno notify the listener at listenerPath instead, and returns what
// the listener answers each with. runc refuses SCMP_ACT_NOTIFY as the
// default action, so the syscalls the default action fails become explicit
// notify rules: every native syscall no rule names, up to the highest
// number the profile names (above it runc's stub answers ENOSYS, which the
// rewrite must not change). Left as they are: syscalls any conditional
// rule names (an unconditional notify rule beside it would change which
// rule wins), syscalls named by rules of other actions, kill/trap/trace
// actions, notNotified, and errno ENOSYS: it pretends a syscall does not
// exist so that callers fall back (RuntimeDefault's clone3, which glibc
// tries at every thread it creates), which is no profile violation, and
// notifying it would log, or with "stop" kill, most programs. A nil plan means there is nothing to notify
// (p allows everything it names and by default); p is unchanged then.
func RewriteForNotifier(p *specs.LinuxSeccomp, listenerPath string) (*NotifyPlan, error) {
	return rewriteForNotifier(p, listenerPath, nativeSyscalls, nativeAuditArch)
}

func rewriteForNotifier(p *specs.LinuxSeccomp, listenerPath string, table []Syscall, arch uint32) (*NotifyPlan, error) {
	if len(table) == 0 {
		return nil, fmt.Errorf("annotation %s: no syscall table for this architecture: %w", AnnotationSeccompNotifier, errdefs.ErrFailedPrecondition)
	}
	if p.DefaultAction == specs.ActNotify || p.ListenerPath != "" {
		return nil, fmt.Errorf("annotation %s: the seccomp profile has a listener of its own: %w", AnnotationSeccompNotifier, errdefs.ErrInvalidArgument)
	}
	nrs := make(map[string]uint32, len(table))
	for _, s := range table {
		nrs[s.Name] = s.Nr
	}
	errnos, keep := ruleErrnos(p.Syscalls)
	for _, n := range notNotified {
		keep[n] = true
	}
	notified := map[string]uint32{} // name -> errno
	for name, e := range errnos {
		if _, known := nrs[name]; known && !keep[name] {
			notified[name] = e
		}
	}
	if p.DefaultAction == specs.ActErrno {
		addDefaultBlocked(notified, p, table, nrs, keep, errnos)
	}
	if len(notified) == 0 {
		return nil, nil
	}
	plan := &NotifyPlan{AuditArch: arch, DefaultErrno: errnoOr(p.DefaultErrnoRet)}
	names := make([]string, 0, len(notified))
	for name, e := range notified {
		names = append(names, name)
		plan.Syscalls = append(plan.Syscalls, NotifiedSyscall{Name: name, Nr: nrs[name], Errno: e})
	}
	slices.Sort(names)
	slices.SortFunc(plan.Syscalls, func(a, b NotifiedSyscall) int { return int(a.Nr) - int(b.Nr) })
	p.Syscalls = append(withoutNames(p.Syscalls, notified), specs.LinuxSyscall{Names: names, Action: specs.ActNotify})
	p.ListenerPath = listenerPath
	return plan, nil
}

// ruleErrnos returns the errno of every syscall that only unconditional
// errno rules name (all with the same errno), and the names that must keep
// their rules: those of any other rule (conditional, another action, or
// ENOSYS).
func ruleErrnos(rules []specs.LinuxSyscall) (errnos map[string]uint32, keep map[string]bool) {
	errnos, keep = map[string]uint32{}, map[string]bool{}
	for _, r := range rules {
		plain := r.Action == specs.ActErrno && len(r.Args) == 0 && errnoOr(r.ErrnoRet) != uint32(unix.ENOSYS)
		for _, name := range r.Names {
			e, seen := errnos[name]
			switch {
			case !plain:
				keep[name] = true
			case seen && e != errnoOr(r.ErrnoRet):
				keep[name] = true // two answers: leave the profile's rules be
			default:
				errnos[name] = errnoOr(r.ErrnoRet)
			}
		}
	}
	return errnos, keep
}

// addDefaultBlocked adds to notified the native syscalls the default errno
// action fails: those no rule names, numbered up to the highest syscall
// the profile names (runc's ENOSYS stub answers the ones above).
func addDefaultBlocked(notified map[string]uint32, p *specs.LinuxSeccomp, table []Syscall, nrs map[string]uint32, keep map[string]bool, errnos map[string]uint32) {
	maxNr, named := uint32(0), false
	for _, r := range p.Syscalls {
		for _, name := range r.Names {
			if nr, ok := nrs[name]; ok {
				maxNr, named = max(maxNr, nr), true
			}
		}
	}
	e := errnoOr(p.DefaultErrnoRet)
	if !named || e == uint32(unix.ENOSYS) {
		return // runc's stub answers ENOSYS to every syscall; or ENOSYS is no violation
	}
	for _, s := range table {
		_, inRule := errnos[s.Name]
		if s.Nr <= maxNr && !inRule && !keep[s.Name] {
			notified[s.Name] = e
		}
	}
}

// withoutNames returns rules with the names in drop taken out, leaving out
// rules that name nothing else.
func withoutNames(rules []specs.LinuxSyscall, drop map[string]uint32) []specs.LinuxSyscall {
	out := make([]specs.LinuxSyscall, 0, len(rules)+1)
	for _, r := range rules {
		var names []string
		for _, n := range r.Names {
			if _, ok := drop[n]; !ok {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		r.Names = names
		out = append(out, r)
	}
	return out
}

// errnoOr is an errno action's errno: EPERM when the profile gives none,
// as runc defaults it.
func errnoOr(e *uint) uint32 {
	if e == nil {
		return uint32(unix.EPERM)
	}
	return uint32(*e)
}
