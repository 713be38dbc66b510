package server

import (
	"errors"
	"slices"
	"testing"
)

func TestSendBatches(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []int // batch sizes
	}{
		{0, nil},
		{1, []int{1}},
		{streamBatch, []int{streamBatch}},
		{streamBatch + 1, []int{streamBatch, 1}},
		{2*streamBatch + 7, []int{streamBatch, streamBatch, 7}},
	} {
		items := make([]int, tc.n)
		for i := range items {
			items[i] = i
		}
		var sizes, got []int
		if err := sendBatches(items, func(b []int) error {
			sizes = append(sizes, len(b))
			got = append(got, b...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sizes, tc.want) {
			t.Errorf("%d items: batches %v, want %v", tc.n, sizes, tc.want)
		}
		// Every item exactly once, in order.
		if !slices.Equal(got, items) {
			t.Errorf("%d items: sent %d items out of order or duplicated", tc.n, len(got))
		}
	}
	boom := errors.New("client gone")
	calls := 0
	err := sendBatches(make([]int, 3*streamBatch), func([]int) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("send error: got %v after %d sends, want it returned after the first", err, calls)
	}
}
