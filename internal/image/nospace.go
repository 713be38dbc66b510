package image

import (
	"context"
	"fmt"

	"github.com/crid-dev/crid/internal/diskfull"
)

// A pull that runs out of room (ENOSPC or EDQUOT while writing a blob, a
// snapshot or the record) has already freed, before storeImage returned,
// everything nothing references: its own partial files and any garbage of
// removed images or earlier failures (freeAfterFailure). It is then tried
// once more, because the room it needs may now be there: garbage the
// background collector had not reached yet, or a concurrent pull that
// failed and freed its files. A second failure for lack of room is final
// and answered with ResourceExhausted naming the filesystem; the image is
// not recorded, so it is never listed, and nothing of it is left.

// pullRetryingFull is pull, retried once after a failure for lack of room.
func (s *Service) pullRetryingFull(ctx context.Context, r reference, auth *Auth) (*Image, error) {
	img, err := s.pull(ctx, r, auth)
	if err == nil || !diskfull.Is(err) || ctx.Err() != nil {
		return img, err
	}
	s.log.Warn("pull ran out of space; freed what nothing references, retrying once", "ref", r.String(), "error", err)
	img, err = s.pull(ctx, r, auth)
	if err != nil && diskfull.Is(err) {
		return nil, s.noSpace(fmt.Errorf("pull %s, retried after freeing unreferenced images: %w", r, err))
	}
	return img, err
}

// noSpace is err as a ResourceExhausted error naming the filesystem of the
// image store (or of the path err names).
func (s *Service) noSpace(err error) error {
	return diskfull.Wrap(err, s.snapshotDir)
}
