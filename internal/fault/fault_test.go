package fault

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    map[string]Action
		wantErr bool
	}{
		{spec: "", want: map[string]Action{}},
		{spec: "RunPodSandbox/netns=kill", want: map[string]Action{"RunPodSandbox/netns": {Kind: Kill}}},
		{spec: " A/b=error ; C/d=error:2;E/f=sleep:1.5s;G/h=hang;I/j=hang:1", want: map[string]Action{
			"A/b": {Kind: Error}, "C/d": {Kind: Error, Times: 2},
			"E/f": {Kind: Sleep, Delay: 1500 * time.Millisecond}, "G/h": {Kind: Hang}, "I/j": {Kind: Hang, Times: 1},
		}},
		{spec: "A/b=hang@4;C/d=error:1@3", want: map[string]Action{
			"A/b": {Kind: Hang, From: 4}, "C/d": {Kind: Error, Times: 1, From: 3},
		}},
		{spec: "A/b=hang@0", wantErr: true},
		{spec: "A/b=hang@x", wantErr: true},
		{spec: "A/b=explode@2", wantErr: true},
		{spec: "nostep=kill", wantErr: true},
		{spec: "A/=kill", wantErr: true},
		{spec: "A/b", wantErr: true},
		{spec: "A/b=explode", wantErr: true},
		{spec: "A/b=error:0", wantErr: true},
		{spec: "A/b=error:x", wantErr: true},
		{spec: "A/b=sleep", wantErr: true},
		{spec: "A/b=sleep:-1s", wantErr: true},
		{spec: "A/b=kill:3", wantErr: true},
		{spec: "A/b=hang:0", wantErr: true},
		{spec: "A b/c=kill", wantErr: true},
	} {
		in, err := Parse(tc.spec, quiet)
		if tc.wantErr {
			if err == nil {
				t.Errorf("Parse(%q) succeeded", tc.spec)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.spec, err)
			continue
		}
		if len(in.rules) != len(tc.want) {
			t.Errorf("Parse(%q) = %d rules, want %d", tc.spec, len(in.rules), len(tc.want))
		}
		for p, a := range tc.want {
			if r := in.rules[p]; r == nil || r.Action != a {
				t.Errorf("Parse(%q)[%s] = %+v, want %+v", tc.spec, p, r, a)
			}
		}
	}
}

func TestAt(t *testing.T) {
	var none *Injector
	if err := none.At(context.Background(), "A/b"); err != nil {
		t.Fatalf("nil injector: %v", err)
	}
	in, err := Parse("A/once=error:1;A/always=error;A/slow=sleep:50ms;A/hang=hang;A/hang1=hang:1", quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := in.At(ctx, "A/other"); err != nil {
		t.Errorf("a point without a rule: %v", err)
	}
	err = in.At(ctx, "A/once")
	if !errors.Is(err, ErrInjected) || !errdefs.IsUnavailable(err) {
		t.Errorf("first arrival at error:1 = %v, want an injected Unavailable error", err)
	}
	if err := in.At(ctx, "A/once"); err != nil {
		t.Errorf("second arrival at error:1 = %v, want nil (a retry succeeds)", err)
	}
	for i := 0; i < 3; i++ {
		if err := in.At(ctx, "A/always"); !errors.Is(err, ErrInjected) {
			t.Errorf("arrival %d at error = %v", i, err)
		}
	}
	start := time.Now()
	if err := in.At(ctx, "A/slow"); err != nil || time.Since(start) < 50*time.Millisecond {
		t.Errorf("sleep:50ms returned %v after %v", err, time.Since(start))
	}
	hctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := in.At(hctx, "A/hang"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang = %v, want the caller's deadline", err)
	}
	hctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := in.At(hctx, "A/hang1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("first arrival at hang:1 = %v, want the caller's deadline", err)
	}
	if err := in.At(ctx, "A/hang1"); err != nil {
		t.Errorf("second arrival at hang:1 = %v, want nil (a retry goes through)", err)
	}
	later, err := Parse("A/third=error:1@3", quiet)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		err := later.At(ctx, "A/third")
		if got, want := err != nil, i == 3; got != want {
			t.Errorf("arrival %d at error:1@3 = %v, want a fault only at the third", i, err)
		}
	}
}
