package main

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestListenUnixMode: the CRI socket is 0660 from its creation whatever the
// umask (the daemon inherits the one of whoever starts it), serves, and
// is gone once the listener closes.
func TestListenUnixMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crid.sock")
	old := syscall.Umask(0)
	lis, err := listenUnix(path)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		lis.Close()
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 || st.Mode().Type() != os.ModeSocket {
		t.Errorf("socket mode %v, want srw-rw----", st.Mode())
	}
	go func() {
		if c, err := lis.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
	lis.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file after close: %v", err)
	}
	// A stale socket left by a crash is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if ul, ok := stale.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	stale.Close()
	lis, err = listenUnix(path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	lis.Close()
}
