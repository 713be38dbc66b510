// Package network gives pods their network: namespaces pinned by bind
// mount, and CNI ADD/DEL through libcni with the standard plugins.
package network

import (
	"context"

	"github.com/crid-dev/crid/internal/config"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod identifies a pod to the CNI plugins.
type Pod struct {
	ID, Name, Namespace, UID string
	NetNSPath                string
	PortMappings             []*runtime.PortMapping
	CgroupParent             string
}

// Result is what the network gave the pod.
type Result struct {
	IP            string   // primary IP
	AdditionalIPs []string // e.g. the IPv6 of a dual-stack pod
}

// Manager owns the CNI configuration and network namespaces.
type Manager struct {
	// implementation owned by the network package
}

// New loads the CNI config from cfg.ConfDir (watching it for changes); netns
// pins live under stateDir/netns.
func New(cfg config.Network, stateDir string) (*Manager, error) { panic("not implemented") }

// Close stops watching the config dir.
func (m *Manager) Close() error { panic("not implemented") }

// Ready returns nil when a CNI network config is loaded, else the reason.
func (m *Manager) Ready() error { panic("not implemented") }

// CreateNetNS creates a network namespace for sandbox id and pins it by bind mount.
func (m *Manager) CreateNetNS(id string) (string, error) { panic("not implemented") }

// RemoveNetNS unpins and removes a namespace; a missing one is not an error.
func (m *Manager) RemoveNetNS(path string) error { panic("not implemented") }

// Setup runs CNI ADD for the pod.
func (m *Manager) Setup(ctx context.Context, pod Pod) (*Result, error) { panic("not implemented") }

// Teardown runs CNI DEL for the pod, retried; idempotent, and tolerant of a
// namespace that is already gone.
func (m *Manager) Teardown(ctx context.Context, pod Pod) error { panic("not implemented") }

// UpdatePodCIDR writes the default network config from the configured template.
func (m *Manager) UpdatePodCIDR(ctx context.Context, cidr string) error { panic("not implemented") }

// WithNetNS runs fn on an OS thread inside the namespace at path.
func WithNetNS(path string, fn func() error) error { panic("not implemented") }
