package core

import (
	"context"
	"sync"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventHub fans container lifecycle events out to GetContainerEvents
// subscribers. A slow subscriber loses events rather than blocking the
// lifecycle (kubelet relists periodically anyway).
type eventHub struct {
	mu   sync.Mutex
	subs map[chan *runtime.ContainerEventResponse]struct{}
}

func newEventHub() *eventHub {
	return &eventHub{subs: map[chan *runtime.ContainerEventResponse]struct{}{}}
}

func (h *eventHub) subscribe() (chan *runtime.ContainerEventResponse, func()) {
	ch := make(chan *runtime.ContainerEventResponse, 256)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

func (h *eventHub) publish(c *container, t runtime.ContainerEventType) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return
	}
	ev := &runtime.ContainerEventResponse{
		ContainerId: c.snapshot().ID, ContainerEventType: t, CreatedAt: time.Now().UnixNano(),
	}
	for ch := range h.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// ContainerEvents streams lifecycle events to send until ctx ends.
func (s *Service) ContainerEvents(ctx context.Context, send func(*runtime.ContainerEventResponse) error) error {
	ch, cancel := s.events.subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-ch:
			if sb, err := s.getSandbox(s.sandboxOfContainer(ev.ContainerId)); err == nil {
				if st, err := s.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: sb.rec.ID}); err == nil {
					ev.PodSandboxStatus = st.Status
				}
				for _, c := range s.containersOf(sb.rec.ID) {
					ev.ContainersStatuses = append(ev.ContainersStatuses, s.containerStatus(c))
				}
			}
			if err := send(ev); err != nil {
				return err
			}
		}
	}
}

func (s *Service) sandboxOfContainer(id string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c, ok := s.containers[id]; ok {
		return c.rec.SandboxID
	}
	return ""
}
