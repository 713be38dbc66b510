package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The pull-size scenario: cold pulls of generated images (bigimage.go) of
// PullSizes MiB in PullLayers layers, once gzip and once zstd, from the
// test registry at Registry; beside each pull, in the same repetition, the
// floor of the same bytes fetched from the same registry by crid-bench
// itself (pullfloor.go); and the daemon's peak RSS during the pull.
//
// Cold means the image's blobs and unpacked layers are gone from the
// runtime's store: after RemoveImage the scenario waits until the
// StoreDirs are back to their size before the first pull (crid frees the
// layers in the background after RemoveImage).

// pullSizeImages lists the scenario's images in the order they are pulled.
func (o *Options) pullSizeImages() []bigImage {
	var out []bigImage
	for _, c := range o.PullCompressions {
		for _, l := range o.PullLayers {
			for _, s := range o.PullSizes {
				out = append(out, bigImage{SizeMiB: s, Layers: l, Compression: c})
			}
		}
	}
	return out
}

func (b *Bench) pullSize(ctx context.Context) error {
	o := b.opts
	if o.Registry == "" {
		return fmt.Errorf("no --registry given (the test registry to push the generated images to)")
	}
	imgs := o.pullSizeImages()
	for _, g := range imgs {
		start := time.Now()
		pushed, err := pushBigImage(ctx, o.Registry, g)
		if err != nil {
			return err
		}
		if pushed {
			b.progressf("pull-size: pushed %s in %s", g.ref(), time.Since(start).Round(time.Millisecond))
		}
	}
	sel, err := b.treeSelector()
	if err != nil {
		return err
	}
	for _, g := range imgs {
		if err := b.pullSizeOne(ctx, g, sel.daemonPID); err != nil {
			return err
		}
	}
	return nil
}

// pullSizeOne measures the cold pulls of g and, repetition by repetition,
// the floors.
func (b *Bench) pullSizeOne(ctx context.Context, g bigImage, daemon int) error {
	o := b.opts
	ref := g.ref()
	b.tr.AddImage(ref)
	if err := b.removeImageIfPresent(ctx, ref); err != nil {
		return err
	}
	base, err := b.settledStoreUsage(ctx)
	if err != nil {
		return err
	}
	var pulls, peaks, floorFetch, floorDecomp, floorWrite []float64
	for i := 0; i < o.PullRepeat; i++ {
		if err := b.removeImageIfPresent(ctx, ref); err != nil {
			return err
		}
		if err := b.waitStoreBelow(ctx, base, ref); err != nil {
			return err
		}
		if err := resetPeakRSS("/proc", daemon); err != nil {
			return err
		}
		d, err := b.timedPull(ctx, ref)
		if err != nil {
			return err
		}
		peak, err := peakRSSKiB("/proc", daemon)
		if err != nil {
			return err
		}
		fl, err := b.pullFloor(ctx, g)
		if err != nil {
			return err
		}
		pulls, peaks = append(pulls, Ms(d)), append(peaks, float64(peak)/1024)
		floorFetch, floorDecomp, floorWrite = append(floorFetch, Ms(fl.fetch)), append(floorDecomp, Ms(fl.decompress)), append(floorWrite, Ms(fl.write))
		b.progressf("pull-size: %s pull %s (peak RSS %.0f MiB); floor fetch %s, +decompress %s, +write %s",
			ref, d.Round(time.Millisecond), float64(peak)/1024, fl.fetch.Round(time.Millisecond), fl.decompress.Round(time.Millisecond), fl.write.Round(time.Millisecond))
	}
	b.add(pullSizeMetrics(g, len(o.PullLayers) > 1 && len(o.PullSizes) == 1, pulls, peaks, floorFetch, floorDecomp, floorWrite)...)
	return b.removeImageIfPresent(ctx, ref)
}

// pullSizeMetrics: medians over the repetitions, and the pull's ratio to
// each floor taken repetition by repetition (the pull and its floors ran
// back to back, under the same load) before the median. The groups are
// the sizes (size_mib=N), or the layer counts (layers=N) when byLayers.
func pullSizeMetrics(g bigImage, byLayers bool, pulls, peaks, fetch, decomp, write []float64) []Metric {
	group := fmt.Sprintf("size_mib=%d", g.SizeMiB)
	what := fmt.Sprintf("%s %d layers", g.Compression, g.Layers)
	if byLayers {
		group = fmt.Sprintf("layers=%d", g.Layers)
		what = fmt.Sprintf("%s %d MiB", g.Compression, g.SizeMiB)
	}
	ratio := func(floor []float64) float64 {
		rs := make([]float64, len(pulls))
		for i := range pulls {
			if floor[i] > 0 {
				rs[i] = pulls[i] / floor[i]
			}
		}
		return Median(rs)
	}
	return []Metric{
		{"pull-size", group, what + ": pull p50", "ms", Median(pulls)},
		{"pull-size", group, what + ": daemon peak RSS", "MiB", maxOf(peaks)},
		{"pull-size", group, what + ": floor fetch p50", "ms", Median(fetch)},
		{"pull-size", group, what + ": floor fetch+decompress p50", "ms", Median(decomp)},
		{"pull-size", group, what + ": floor fetch+decompress+write p50", "ms", Median(write)},
		{"pull-size", group, what + ": pull / floor fetch+decompress", "x", ratio(decomp)},
		{"pull-size", group, what + ": pull / floor fetch+decompress+write", "x", ratio(write)},
	}
}

func maxOf(vs []float64) float64 {
	m := 0.0
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}

// resetPeakRSS resets the peak resident set size (VmHWM) of pid to its
// current RSS (proc(5), clear_refs "5").
func resetPeakRSS(procRoot string, pid int) error {
	p := filepath.Join(procRoot, strconv.Itoa(pid), "clear_refs")
	if err := os.WriteFile(p, []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of %d: %w", pid, err)
	}
	return nil
}

// peakRSSKiB reads VmHWM, the peak resident set size since the last reset.
func peakRSSKiB(procRoot string, pid int) (int64, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("peak RSS of %d: %w", pid, err)
	}
	return statusKiB(string(data), "VmHWM:")
}

// statusKiB returns the "<key> N kB" field of a /proc/<pid>/status text.
func statusKiB(status, key string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status field %s %q: want N kB", key, v)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("status has no %s", key)
}

// diskUsage is the space the files under dirs take (allocated blocks),
// counting hard links once.
func diskUsage(dirs []string) (int64, error) {
	seen := map[[2]uint64]bool{}
	var total int64
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil // deleted meanwhile
				}
				return err
			}
			info, err := e.Info()
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				return nil
			}
			k := [2]uint64{st.Dev, st.Ino}
			if !seen[k] {
				seen[k] = true
				total += st.Blocks * 512
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("disk usage of %s: %w", d, err)
		}
	}
	return total, nil
}

// settledStoreUsage is the store's usage once it has stopped shrinking
// (a removal's background deletion finished): two equal readings a
// second apart, for at most two minutes. Without StoreDirs it is 0.
func (b *Bench) settledStoreUsage(ctx context.Context) (int64, error) {
	if len(b.opts.StoreDirs) == 0 {
		b.progressf("pull-size: warning: no --store-dir, pulls may not be cold")
		return 0, nil
	}
	prev := int64(-1)
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		u, err := diskUsage(b.opts.StoreDirs)
		if err != nil {
			return 0, err
		}
		if u == prev {
			return u, nil
		}
		prev = u
		if err := sleepCtx(ctx, time.Second); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("image store %s still changing after 2 minutes", strings.Join(b.opts.StoreDirs, ", "))
}

// storeSlack is how much more than before its first pull the store may
// hold for a pull to count as cold: metadata files that grow, never a
// layer of the generated images (a few MiB each at least).
const storeSlack = 2 << 20

// waitStoreBelow waits until the store is back within storeSlack of base.
func (b *Bench) waitStoreBelow(ctx context.Context, base int64, ref string) error {
	if len(b.opts.StoreDirs) == 0 {
		return nil
	}
	var u int64
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		var err error
		if u, err = diskUsage(b.opts.StoreDirs); err != nil {
			return err
		}
		if u <= base+storeSlack {
			return nil
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s removed, but the image store still holds %d MiB more than before its first pull after 2 minutes", ref, (u-base)>>20)
}
