package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/image"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListImages lists stored images, optionally only the one a filter names.
func (s *ImageServer) ListImages(ctx context.Context, req *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	var imgs []*image.Image
	if ref := req.GetFilter().GetImage().GetImage(); ref != "" {
		img, err := s.images.Resolve(ref)
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
		if img != nil {
			imgs = append(imgs, img)
		}
	} else {
		imgs = s.images.List()
	}
	resp := &runtime.ListImagesResponse{Images: make([]*runtime.Image, 0, len(imgs))}
	for _, img := range imgs {
		resp.Images = append(resp.Images, s.toCRIImage(img))
	}
	return resp, nil
}

// ImageStatus reports one image; an unknown image is an empty response.
func (s *ImageServer) ImageStatus(ctx context.Context, req *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("image status: image reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	img, err := s.images.Resolve(ref)
	if errdefs.IsNotFound(err) {
		return &runtime.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtime.ImageStatusResponse{Image: s.toCRIImage(img)}
	if req.GetVerbose() {
		info, err := json.Marshal(img)
		if err != nil {
			return nil, fmt.Errorf("image status %s: %w", img.ID, err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// PullImage pulls an image and returns its ID as the image ref.
func (s *ImageServer) PullImage(ctx context.Context, req *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("pull image: image reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	var auth *image.Auth
	if a := req.GetAuth(); a != nil {
		auth = &image.Auth{
			Username:      a.GetUsername(),
			Password:      a.GetPassword(),
			Auth:          a.GetAuth(),
			ServerAddress: a.GetServerAddress(),
			IdentityToken: a.GetIdentityToken(),
			RegistryToken: a.GetRegistryToken(),
		}
	}
	img, err := s.images.Pull(ctx, ref, auth)
	if err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: img.ID}, nil
}

// RemoveImage removes an image with all its tags unless a container uses it.
// Removing a missing image succeeds.
func (s *ImageServer) RemoveImage(ctx context.Context, req *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("remove image: image reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.images.Remove(ctx, ref, s.core.ImageInUse); err != nil {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}

// ImageFsInfo reports what the image store (layers and blobs) uses and,
// apart, what the containers' writable layers use.
func (s *ImageServer) ImageFsInfo(ctx context.Context, req *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	img, err := s.images.FsInfo(ctx)
	if err != nil {
		return nil, err
	}
	ctr, err := s.containerFs.get(func() (image.FsUsage, error) { return s.core.ContainerFsInfo(ctx) })
	if err != nil {
		return nil, err
	}
	return &runtime.ImageFsInfoResponse{
		ImageFilesystems:     []*runtime.FilesystemUsage{fsUsage(img)},
		ContainerFilesystems: []*runtime.FilesystemUsage{fsUsage(ctr)},
	}, nil
}

func fsUsage(u image.FsUsage) *runtime.FilesystemUsage {
	return &runtime.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtime.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtime.UInt64Value{Value: u.InodesUsed},
	}
}

// fsCacheMaxAge bounds how often ImageFsInfo walks the writable layers:
// kubelet asks every ~10s, and a walk of many large layers is not free.
const fsCacheMaxAge = 10 * time.Second

// fsCache keeps the last usage measured for fsCacheMaxAge.
type fsCache struct {
	mu   sync.Mutex
	last image.FsUsage
	at   time.Time
}

func (c *fsCache) get(measure func() (image.FsUsage, error)) (image.FsUsage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < fsCacheMaxAge {
		return c.last, nil
	}
	u, err := measure()
	if err != nil {
		return image.FsUsage{}, err
	}
	c.last, c.at = u, time.Now()
	return u, nil
}

// toCRIImage converts a stored image. The image's USER sets uid when it is
// numeric ("1000" or "1000:1000") and username otherwise.
func (s *ImageServer) toCRIImage(img *image.Image) *runtime.Image {
	out := &runtime.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Spec:        &runtime.ImageSpec{Image: img.ID},
		Pinned:      s.images.Pinned(img),
	}
	user, _, _ := strings.Cut(img.Config.User, ":")
	if user != "" {
		if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
			out.Uid = &runtime.Int64Value{Value: uid}
		} else {
			out.Username = user
		}
	}
	return out
}
