package image

import (
	"slices"
	"time"

	"github.com/crid-dev/crid/internal/config"
)

// liveSettings are the image settings crid changes without a restart (on
// SIGHUP): where registries are reached, and how pulls are paced. A pull
// reads them once, when it starts, and keeps that copy to its end: a
// reload never changes the mirrors under a pull half way through its
// endpoints, and a pull already running is not cut off by a new timeout
// (the download limit is read when its layers are fetched).
// They are never modified once stored; a reload stores a new value.
type liveSettings struct {
	registries      []config.Registry
	maxDownloads    int
	progressTimeout time.Duration
}

// newLiveSettings copies what it keeps of cfg, so that the caller's config
// (and its slices) can change without touching running pulls.
func newLiveSettings(cfg config.Images) *liveSettings {
	regs := make([]config.Registry, len(cfg.Registries))
	for i, r := range cfg.Registries {
		regs[i] = r
		regs[i].Mirrors = slices.Clone(r.Mirrors)
		if r.Fallback != nil {
			fb := *r.Fallback
			regs[i].Fallback = &fb
		}
	}
	return &liveSettings{
		registries:      regs,
		maxDownloads:    max(cfg.MaxConcurrentDownloads, 1),
		progressTimeout: cfg.PullProgressTimeout.Duration,
	}
}

// settings is the current live configuration.
func (s *Service) settings() *liveSettings { return s.live.Load() }

// Reload applies images.registries, images.max_concurrent_downloads and
// images.pull_progress_timeout of cfg, which the caller has validated, to
// pulls that start from now on (config.LiveKeys names them). Running
// pulls keep the endpoints and timeout they started with; nothing else is
// interrupted. Other images keys take a restart.
func (s *Service) Reload(cfg config.Images) {
	s.live.Store(newLiveSettings(cfg))
}
