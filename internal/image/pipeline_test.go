package image

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
)

// The base layer is unpacked while the layer above is still downloading,
// and a pull that fails then (cancelled, or the top layer's download cut)
// leaves neither the image nor the base snapshot it made.
func TestPullUnpacksWhileDownloading(t *testing.T) {
	for _, fail := range []string{"cancel", "cut"} {
		t.Run(fail, func(t *testing.T) {
			reg := newTestRegistry(t)
			top := testLayer(t, entry{name: "etc/motd", content: strings.Repeat("hello", 1<<12)})
			img := testImage(t, "", baseLayer(t), top)
			reg.push(t, "registry.k8s.io/pipe:1", img)
			d, _ := top.Digest()
			reg.stall[d.String()] = true
			s, root, _ := newTestService(t, mirrorConfig(reg))
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			base := digest.Digest(cf.RootFS.DiffIDs[0].String()) // its chain ID

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := s.Pull(ctx, "registry.k8s.io/pipe:1", nil)
				errc <- err
			}()
			deadline := time.Now().Add(20 * time.Second)
			for !exists(s.snapshotFs(base)) {
				if time.Now().After(deadline) {
					t.Fatal("the base layer was not unpacked while the top layer downloaded")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := s.Resolve("registry.k8s.io/pipe:1"); !errdefs.IsNotFound(err) {
				t.Fatalf("image listed before its last layer is in: %v", err)
			}
			switch fail {
			case "cancel":
				cancel()
			case "cut":
				reg.srv.CloseClientConnections()
			}
			err = <-errc
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if fail == "cancel" && !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled pull: %v", err)
			}
			if fail == "cut" && !strings.Contains(err.Error(), "fetch layer "+d.String()) {
				t.Errorf("pull with the top layer's download cut: %v, want that download's error", err)
			}
			if _, err := s.Resolve("registry.k8s.io/pipe:1"); !errdefs.IsNotFound(err) {
				t.Errorf("failed image recorded: %v", err)
			}
			// A failed pull has stopped its downloads and freed what it
			// made before it returns; a cancelled Pull returns at once, and
			// the pull it ran frees what it made right after.
			if left := leftFiles(root); fail == "cut" && len(left) > 0 {
				t.Fatalf("left behind when the pull returned: %v", left)
			}
			for left := leftFiles(root); len(left) > 0; left = leftFiles(root) {
				if time.Now().After(deadline) {
					t.Fatalf("left behind: %v", left)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestReadAhead(t *testing.T) {
	data := make([]byte, 1<<20+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, chunk := range []int{1, 100, 4096, 1 << 17} {
		ra := newReadAhead(iotest.HalfReader(strings.NewReader(string(data))), chunk, 3)
		got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(ra, 5000)))
		if err != nil || string(got) != string(data[:5000]) {
			t.Fatalf("chunk %d: first 5000 bytes: %v", chunk, err)
		}
		rest, err := io.ReadAll(ra)
		if err != nil || string(rest) != string(data[5000:]) {
			t.Fatalf("chunk %d: rest: %d bytes, %v", chunk, len(rest), err)
		}
		ra.Close()
	}

	// The source's own error arrives after its bytes, unchanged.
	ra := newReadAhead(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(io.ErrUnexpectedEOF)), 16, 2)
	got, err := io.ReadAll(ra)
	if string(got) != "abc" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated source: %q, %v", got, err)
	}
	ra.Close()

	// Close returns while the source still has bytes, and twice.
	ra = newReadAhead(strings.NewReader(string(data)), 64, 2)
	if _, err := ra.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	ra.Close()
	ra.Close()
}

// leftFiles lists the snapshots and content files under root.
func leftFiles(root string) []string {
	var left []string
	entries, _ := os.ReadDir(filepath.Join(root, "snapshots"))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			left = append(left, "snapshots/"+e.Name())
		}
	}
	filepath.WalkDir(filepath.Join(root, "content"), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	return left
}
