package core

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/image"
	"github.com/crid-dev/crid/internal/oci"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageVolume is an image a container mounts as a volume (KEP-4639),
// persisted in the container record so the image stays in use and its ID
// is reported in the status after a restart.
type imageVolume struct {
	// Index of the mount in ContainerConfig.mounts.
	Index   int    `json:"index"`
	ImageID string `json:"imageId"`
}

// imageVolumesDir holds a container's image volume mounts, one directory
// per mount index. It sits in the bundle (state dir) because the mounts,
// like the bundle, do not survive a reboot; the path is derived from the
// id alone so that removal after a crid restart finds every mount.
func (s *Service) imageVolumesDir(id string) string {
	return filepath.Join(s.containerBundle(id), "imagevolumes")
}

func (s *Service) imageVolumeDir(id string, index int) string {
	return filepath.Join(s.imageVolumesDir(id), strconv.Itoa(index))
}

// resolveImageVolumes checks the image mounts of cfg and finds their
// images, which must already be stored (kubelet pulls them first).
func (s *Service) resolveImageVolumes(cfg *runtime.ContainerConfig) ([]imageVolume, map[int]*image.Image, error) {
	var vols []imageVolume
	imgs := map[int]*image.Image{}
	for i, m := range cfg.GetMounts() {
		if m.GetImage() == nil {
			continue
		}
		ref := m.GetImage().GetImage()
		switch {
		case ref == "":
			return nil, nil, fmt.Errorf("image volume at %s: image is required: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
		case !m.GetReadonly():
			// Image volumes are read-only by definition; a writable one
			// would silently not be.
			return nil, nil, fmt.Errorf("image volume at %s: mount must be read-only: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
		case m.GetHostPath() != "":
			return nil, nil, fmt.Errorf("image volume at %s: has a host_path too: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
		}
		img, err := s.images.Resolve(ref)
		if err != nil {
			return nil, nil, fmt.Errorf("image volume at %s: image %q: %w", m.GetContainerPath(), ref, err)
		}
		vols = append(vols, imageVolume{Index: i, ImageID: img.ID})
		imgs[i] = img
	}
	return vols, imgs, nil
}

// mountImageVolumes mounts every image volume of container id read-only
// and returns, by mount index, the host path to bind: the mount with the
// mount's image_sub_path applied. Each mount is undone on failure.
func (s *Service) mountImageVolumes(ctx context.Context, id string, cfg *runtime.ContainerConfig, imgs map[int]*image.Image, u *undo) (map[int]string, error) {
	if len(imgs) == 0 {
		return nil, nil
	}
	out := make(map[int]string, len(imgs))
	mounts := cfg.GetMounts()
	for i := range mounts {
		img, ok := imgs[i]
		if !ok {
			continue
		}
		target := s.imageVolumeDir(id, i)
		if err := s.images.MountImageVolume(ctx, img, target); err != nil {
			return nil, fmt.Errorf("image volume at %s: %w", mounts[i].GetContainerPath(), err)
		}
		u.add(func(ctx context.Context) error { return s.images.UnmountImageVolume(ctx, target) })
		src, err := oci.ImageSubPath(target, mounts[i].GetImageSubPath())
		if err != nil {
			return nil, fmt.Errorf("image volume at %s of image %q: %w", mounts[i].GetContainerPath(), mounts[i].GetImage().GetImage(), err)
		}
		out[i] = src
	}
	return out, nil
}

// releaseImageVolumes unmounts every image volume of container id. It
// goes by the directories present, not the record, so that it also cleans
// up after a creation that crashed half-way.
func (s *Service) releaseImageVolumes(ctx context.Context, id string) error {
	dir := s.imageVolumesDir(id)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image volumes of container %s: %w", id, err)
	}
	for _, e := range entries {
		if err := s.images.UnmountImageVolume(ctx, filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("image volumes of container %s: %w", id, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image volumes of container %s: %w", id, err)
	}
	return nil
}

// usesImage reports whether the container's rootfs or one of its image
// volumes is the image.
func (r *containerRecord) usesImage(imageID string) bool {
	if r.ImageID == imageID {
		return true
	}
	for _, v := range r.ImageVolumes {
		if v.ImageID == imageID {
			return true
		}
	}
	return false
}

// statusMounts is the config's mounts with each image volume's image ID
// in image.image_ref (KEP-5365), the digest kubelet reports for it.
func statusMounts(ms []*runtime.Mount, vols []imageVolume) []*runtime.Mount {
	if len(vols) == 0 {
		return ms
	}
	out := make([]*runtime.Mount, len(ms))
	copy(out, ms)
	for _, v := range vols {
		if v.Index < 0 || v.Index >= len(out) || out[v.Index].GetImage() == nil {
			continue
		}
		m := proto.Clone(out[v.Index]).(*runtime.Mount)
		m.Image.ImageRef = v.ImageID
		out[v.Index] = m
	}
	return out
}
