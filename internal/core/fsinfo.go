package core

import (
	"context"
	"path/filepath"

	"github.com/crid-dev/crid/internal/image"
)

// ContainerFsInfo reports what the containers' writable layers use
// (<root>/containers: upper and work dirs), which ImageFsInfo's
// ContainerFilesystems is about; the image store is reported apart. It
// walks the dirs on every call: callers cache (see server.ImageFsInfo).
func (s *Service) ContainerFsInfo(ctx context.Context) (image.FsUsage, error) {
	return image.DirUsage(filepath.Join(s.cfg.Root, "containers"))
}
