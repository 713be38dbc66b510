package network

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// defaultBridge and defaultSubnet are what default.conflist says.
const (
	defaultBridge = "crid0"
	defaultSubnet = "10.88.0.0/16"
)

// subnetCandidates are tried in order for the default network. 10.88/16
// comes first (podman's and containerd's example default too, so it is
// often taken); 10.99/16 is left to crid's end-to-end tests.
func subnetCandidates() []string {
	out := make([]string, 0, 11)
	for i := 88; i <= 98; i++ {
		out = append(out, fmt.Sprintf("10.%d.0.0/16", i))
	}
	return out
}

// errNoFreeSubnet: every candidate overlaps a network of the host.
var errNoFreeSubnet = errors.New("no free subnet")

// chooseSubnet returns the first candidate that overlaps none of inUse.
// Two bridges routing one subnet break both (host ports stop answering).
func chooseSubnet(candidates []string, inUse []*net.IPNet) (string, error) {
	for _, c := range candidates {
		_, cn, err := net.ParseCIDR(c)
		if err != nil {
			return "", fmt.Errorf("candidate %q: %w", c, err)
		}
		free := true
		for _, u := range inUse {
			if overlaps(cn, u) {
				free = false
				break
			}
		}
		if free {
			return c, nil
		}
	}
	return "", errNoFreeSubnet
}

func overlaps(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }

// hostNetworks lists the IPv4 networks the host already reaches: the
// prefixes of its interfaces' addresses and of its routes, except default
// routes (they overlap everything) and anything on crid's own bridge (a
// re-run of the installer must keep the subnet it chose).
func hostNetworks() ([]*net.IPNet, error) {
	var out []*net.IPNet
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		if ifc.Name == defaultBridge {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				out = append(out, &net.IPNet{IP: n.IP.Mask(n.Mask), Mask: n.Mask})
			}
		}
	}
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	routes, err := parseRoutes(b)
	if err != nil {
		return nil, err
	}
	return append(out, routes...), nil
}

// parseRoutes reads /proc/net/route: interface, destination and mask in
// host-order hex. Default routes and routes on crid's bridge are skipped.
func parseRoutes(b []byte) ([]*net.IPNet, error) {
	var out []*net.IPNet
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		if f[0] == defaultBridge {
			continue
		}
		dst, err1 := hexIPv4(f[1])
		mask, err2 := hexIPv4(f[7])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("parse route %q: bad address", sc.Text())
		}
		m := net.IPMask(mask)
		if ones, _ := m.Size(); ones == 0 {
			continue
		}
		out = append(out, &net.IPNet{IP: net.IP(dst).Mask(m), Mask: m})
	}
	return out, sc.Err()
}

// hexIPv4 decodes an address of /proc/net/route (little-endian hex).
func hexIPv4(s string) ([]byte, error) {
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != 4 {
		return nil, fmt.Errorf("bad address %q", s)
	}
	ip := make([]byte, 4)
	binary.BigEndian.PutUint32(ip, binary.LittleEndian.Uint32(raw))
	return ip, nil
}

// conflistWithSubnet is the default config on subnet instead of 10.88/16.
func conflistWithSubnet(subnet string) []byte {
	return bytes.Replace(defaultConflist, []byte(`"`+defaultSubnet+`"`), []byte(`"`+subnet+`"`), 1)
}
