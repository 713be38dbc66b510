package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
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

// ImageFsInfo reports the usage of the filesystem holding images; container
// writable layers live on the same one.
func (s *ImageServer) ImageFsInfo(ctx context.Context, req *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	u, err := s.images.FsInfo(ctx)
	if err != nil {
		return nil, err
	}
	usage := func() *runtime.FilesystemUsage {
		return &runtime.FilesystemUsage{
			Timestamp:  time.Now().UnixNano(),
			FsId:       &runtime.FilesystemIdentifier{Mountpoint: u.Mountpoint},
			UsedBytes:  &runtime.UInt64Value{Value: u.UsedBytes},
			InodesUsed: &runtime.UInt64Value{Value: u.InodesUsed},
		}
	}
	return &runtime.ImageFsInfoResponse{
		ImageFilesystems:     []*runtime.FilesystemUsage{usage()},
		ContainerFilesystems: []*runtime.FilesystemUsage{usage()},
	}, nil
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
