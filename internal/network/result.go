package network

import (
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// portMapEntry is one element of the portMappings capability argument
// (CNI CONVENTIONS.md).
type portMapEntry struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// portMappings converts CRI port mappings to the portMappings capability.
// Mappings without a host port only document the container port (kubelet
// sends them for every declared port) and would make portmap fail.
func portMappings(pms []*runtime.PortMapping) []portMapEntry {
	var out []portMapEntry
	for _, pm := range pms {
		if pm == nil || pm.HostPort <= 0 || pm.ContainerPort <= 0 {
			continue
		}
		proto := strings.ToLower(pm.Protocol.String()) // TCP, UDP, SCTP
		out = append(out, portMapEntry{
			HostPort:      pm.HostPort,
			ContainerPort: pm.ContainerPort,
			Protocol:      proto,
			HostIP:        pm.HostIp,
		})
	}
	return out
}

// podIPs picks the pod's addresses from a CNI result: the first IPv4 of the
// pod interface is the primary IP (kubelet's PodIP), the first address of
// the other family follows it; without interface information all addresses
// count.
func podIPs(r types.Result, ifName string) (*Result, error) {
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("convert CNI result: %w", err)
	}
	var ips []string
	var v4 []int
	for _, ipc := range res.IPs {
		if ipc == nil || ipc.Address.IP == nil {
			continue
		}
		if ipc.Interface != nil {
			i := *ipc.Interface
			if i >= 0 && i < len(res.Interfaces) {
				iface := res.Interfaces[i]
				// Host-side veths and bridges carry no sandbox.
				if iface.Name != ifName || iface.Sandbox == "" {
					continue
				}
			}
		}
		if ipc.Address.IP.To4() != nil {
			v4 = append(v4, len(ips))
		}
		ips = append(ips, ipc.Address.IP.String())
	}
	if len(ips) == 0 {
		return nil, errors.New("CNI result has no IP address for the pod interface")
	}
	primary := 0
	if len(v4) > 0 {
		primary = v4[0]
	}
	out := &Result{IP: ips[primary]}
	for i, ip := range ips {
		if i != primary {
			out.AdditionalIPs = append(out.AdditionalIPs, ip)
		}
	}
	return out, nil
}
