package image

import "fmt"

// DirUsage reports the bytes and inodes allocated under dir (hard links
// counted once), as FsUsage with dir as its mount point: crid keeps each
// kind of data in its own dir of one filesystem.
func DirUsage(dir string) (FsUsage, error) {
	b, n, err := diskUsage(dir)
	if err != nil {
		return FsUsage{}, fmt.Errorf("usage of %s: %w", dir, err)
	}
	return FsUsage{Mountpoint: dir, UsedBytes: b, InodesUsed: n}, nil
}
