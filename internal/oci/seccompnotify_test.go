package oci

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// testTable is a small syscall table: the rewrite's logic does not depend
// on the architecture's.
var testTable = []Syscall{
	{"read", 0}, {"write", 1}, {"open", 2}, {"close", 3}, {"mount", 4},
	{"unshare", 5}, {"clone", 6}, {"kexec_load", 7}, {"ptrace", 8}, {"newest", 9},
}

func errno(e uint) *uint { return &e }

func TestRewriteForNotifier(t *testing.T) {
	allow := func(names ...string) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: names, Action: specs.ActAllow}
	}
	notify := func(names ...string) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: names, Action: specs.ActNotify}
	}
	cloneArgs := []specs.LinuxSeccompArg{{Index: 0, Value: 1, Op: specs.OpMaskedEqual}}
	tests := []struct {
		name      string
		in        specs.LinuxSeccomp
		wantRules []specs.LinuxSyscall
		want      []NotifiedSyscall // nil: no plan, profile unchanged
	}{{
		// RuntimeDefault's shape: an allow list, errno by default. Every
		// syscall up to the highest named one (clone, 6) that no rule
		// names notifies; write never does; above 6 runc's stub answers.
		name:      "default errno",
		in:        specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{allow("read", "close", "clone")}},
		wantRules: []specs.LinuxSyscall{allow("read", "close", "clone"), notify("mount", "open", "unshare")},
		want:      []NotifiedSyscall{{"open", 2, 1}, {"mount", 4, 1}, {"unshare", 5, 1}},
	}, {
		name: "default errno with its own errno",
		in: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: errno(13),
			Syscalls: []specs.LinuxSyscall{allow("read", "write", "open", "close", "unshare")}},
		wantRules: []specs.LinuxSyscall{allow("read", "write", "open", "close", "unshare"), notify("mount")},
		want:      []NotifiedSyscall{{"mount", 4, 13}},
	}, {
		// A blocklist: allow by default, explicit errno rules notify with
		// their errno; other names of the rule stay (unknown ones too).
		name: "explicit errno rules",
		in: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mount", "not_a_syscall"}, Action: specs.ActErrno},
			{Names: []string{"unshare"}, Action: specs.ActErrno, ErrnoRet: errno(13)},
		}},
		wantRules: []specs.LinuxSyscall{{Names: []string{"not_a_syscall"}, Action: specs.ActErrno}, notify("mount", "unshare")},
		want:      []NotifiedSyscall{{"mount", 4, 1}, {"unshare", 5, 13}},
	}, {
		// ENOSYS pretends the syscall does not exist (RuntimeDefault's
		// clone3, tried by glibc at every thread): no violation.
		name: "ENOSYS is not notified",
		in: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			allow("read", "write", "open", "close", "mount"),
			{Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: errno(38)},
		}},
		wantRules: []specs.LinuxSyscall{
			allow("read", "write", "open", "close", "mount"),
			{Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: errno(38)},
			notify("unshare"),
		},
		want: []NotifiedSyscall{{"unshare", 5, 1}},
	}, {
		name: "default ENOSYS",
		in:   specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: errno(38), Syscalls: []specs.LinuxSyscall{allow("read", "clone")}},
	}, {
		// A conditional rule keeps the default action for its syscall
		// (clone with other flags), and conditional errno rules stay.
		name: "conditional rules keep their syscalls",
		in: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			allow("read", "close"),
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: cloneArgs},
			{Names: []string{"mount"}, Action: specs.ActErrno, Args: cloneArgs},
		}},
		wantRules: []specs.LinuxSyscall{
			allow("read", "close"),
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: cloneArgs},
			{Names: []string{"mount"}, Action: specs.ActErrno, Args: cloneArgs},
			notify("open", "unshare"),
		},
		want: []NotifiedSyscall{{"open", 2, 1}, {"unshare", 5, 1}},
	}, {
		name: "kill, trace and two errnos stay",
		in: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"kexec_load"}, Action: specs.ActKillProcess},
			{Names: []string{"ptrace"}, Action: specs.ActTrace},
			{Names: []string{"mount"}, Action: specs.ActErrno},
			{Names: []string{"mount"}, Action: specs.ActErrno, ErrnoRet: errno(38)},
			{Names: []string{"write", "unshare"}, Action: specs.ActErrno},
		}},
		wantRules: []specs.LinuxSyscall{
			{Names: []string{"kexec_load"}, Action: specs.ActKillProcess},
			{Names: []string{"ptrace"}, Action: specs.ActTrace},
			{Names: []string{"mount"}, Action: specs.ActErrno},
			{Names: []string{"mount"}, Action: specs.ActErrno, ErrnoRet: errno(38)},
			{Names: []string{"write"}, Action: specs.ActErrno},
			notify("unshare"),
		},
		want: []NotifiedSyscall{{"unshare", 5, 1}},
	}, {
		name: "nothing blocked",
		in:   specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"kexec_load"}, Action: specs.ActKill}}},
	}, {
		// No rule names a known syscall: runc's stub answers ENOSYS to
		// all of them, not the default errno.
		name: "default errno, nothing named",
		in:   specs.LinuxSeccomp{DefaultAction: specs.ActErrno},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.in
			p.Syscalls = append([]specs.LinuxSyscall(nil), tt.in.Syscalls...)
			plan, err := rewriteForNotifier(&p, "/run/x/seccomp.sock", testTable, 42)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if plan != nil || p.ListenerPath != "" || !reflect.DeepEqual(p.Syscalls, tt.in.Syscalls) {
					t.Fatalf("plan %+v, profile %+v: want no plan and the profile unchanged", plan, p)
				}
				return
			}
			if plan == nil {
				t.Fatal("no plan")
			}
			if !reflect.DeepEqual(plan.Syscalls, tt.want) {
				t.Errorf("notified %v, want %v", plan.Syscalls, tt.want)
			}
			if plan.AuditArch != 42 || plan.DefaultErrno != errnoOr(tt.in.DefaultErrnoRet) {
				t.Errorf("plan arch %d, default errno %d", plan.AuditArch, plan.DefaultErrno)
			}
			if !reflect.DeepEqual(p.Syscalls, tt.wantRules) {
				t.Errorf("rules\n%+v\nwant\n%+v", p.Syscalls, tt.wantRules)
			}
			if p.ListenerPath != "/run/x/seccomp.sock" || p.DefaultAction != tt.in.DefaultAction {
				t.Errorf("listener %q, default %s", p.ListenerPath, p.DefaultAction)
			}
		})
	}
}

func TestRewriteForNotifierRefuses(t *testing.T) {
	for name, p := range map[string]specs.LinuxSeccomp{
		"own listener":      {DefaultAction: specs.ActErrno, ListenerPath: "/run/agent.sock"},
		"notify by default": {DefaultAction: specs.ActNotify},
	} {
		if _, err := rewriteForNotifier(&p, "/x", testTable, 1); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := rewriteForNotifier(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno}, "/x", nil, 0); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("no table: %v, want FailedPrecondition", err)
	}
}

// TestRewriteRuntimeDefault rewrites the real RuntimeDefault profile with
// the native table: mount and unshare (allowed only with CAP_SYS_ADMIN)
// notify with EPERM, read and write do not, and the highest syscall the
// profile names stays the highest notified one's bound.
func TestRewriteRuntimeDefault(t *testing.T) {
	if len(nativeSyscalls) == 0 {
		t.Skip("no syscall table for this architecture")
	}
	s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	p, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := RewriteForNotifier(p, "/run/x/seccomp.sock")
	if err != nil || plan == nil {
		t.Fatalf("plan %v, err %v", plan, err)
	}
	got := map[string]uint32{}
	for _, s := range plan.Syscalls {
		got[s.Name] = s.Errno
	}
	for _, name := range []string{"mount", "unshare", "kexec_load"} {
		if got[name] != 1 {
			t.Errorf("%s: errno %d, want EPERM notified (all: %v)", name, got[name], got)
		}
	}
	for _, name := range []string{"read", "write", "clone", "clone3", "personality", "open_tree", "fsopen"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s notified", name)
		}
	}
	last := p.Syscalls[len(p.Syscalls)-1]
	if last.Action != specs.ActNotify || len(last.Names) != len(plan.Syscalls) || p.DefaultAction != specs.ActErrno {
		t.Errorf("last rule %s of %d names, default %s", last.Action, len(last.Names), p.DefaultAction)
	}
	if !strings.HasPrefix(p.ListenerPath, "/run/x/") {
		t.Errorf("listener %q", p.ListenerPath)
	}
}
