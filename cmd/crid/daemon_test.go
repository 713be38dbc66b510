package main

import "testing"

func TestShouldRelease(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name                string
		free, objects, live uint64
		want                bool
	}{
		{"idle, nothing to give back", 512 << 10, 6 * mib, 5 * mib, false},
		{"freed heap not yet returned", 8 * mib, 6 * mib, 6 * mib, true},
		{"garbage since the last GC", 0, 20 * mib, 6 * mib, true},
		{"slack exactly", releaseSlack, 6*mib + releaseSlack, 6 * mib, false},
		{"live above objects (just collected)", 0, 5 * mib, 6 * mib, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := shouldRelease(tc.free, tc.objects, tc.live); got != tc.want {
				t.Errorf("shouldRelease(%d, %d, %d) = %v, want %v", tc.free, tc.objects, tc.live, got, tc.want)
			}
		})
	}
}
