package server

import (
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A full disk is ResourceExhausted wherever it surfaces: a wrapped
// ENOSPC, EDQUOT, or the OCI runtime's text.
func TestFullDiskIsResourceExhausted(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("create container: %w", &fs.PathError{Op: "mkdir", Path: "/var/lib/crid/containers/x", Err: syscall.ENOSPC}),
		fmt.Errorf("write spec: %w", syscall.EDQUOT),
		fmt.Errorf("runc create: exit status 1: write /sys/fs/x: no space left on device"),
	} {
		if got := status.Code(toGRPC(err)); got != codes.ResourceExhausted {
			t.Errorf("toGRPC(%v) = %v, want ResourceExhausted", err, got)
		}
	}
}
