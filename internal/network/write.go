package network

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/containerd/errdefs"
)

//go:embed default.conflist
var defaultConflist []byte

const (
	// DefaultConfigName is the file WriteDefaultConfig writes.
	DefaultConfigName = "10-crid.conflist"
	// TemplateConfigName is the file UpdatePodCIDR writes. It sorts before
	// DefaultConfigName ('-' < '.'), so a rendered template wins over the
	// installer's default.
	TemplateConfigName = "10-crid-net.conflist"
)

// DefaultConflist is the network config crid's installer writes when the
// config dir has none: bridge crid0 on 10.88.0.0/16 with NAT, plus portmap.
func DefaultConflist() []byte { return bytes.Clone(defaultConflist) }

// WriteDefaultConfig writes the default network config to
// confDir/10-crid.conflist when confDir holds no network config; it never
// replaces an existing one. Its subnet is the first of 10.88.0.0/16 ...
// 10.98.0.0/16 that no interface address or route of the host overlaps
// (another runtime's or podman's bridge often has 10.88/16). It returns
// the subnet written ("" when nothing was).
func WriteDefaultConfig(confDir string) (subnet string, err error) {
	st, err := statConfDir(confDir)
	if err != nil {
		return "", err
	}
	if len(st.files) > 0 {
		return "", nil
	}
	inUse, err := hostNetworks()
	if err != nil {
		return "", fmt.Errorf("write default network config: %w", err)
	}
	subnet, err = chooseSubnet(subnetCandidates(), inUse)
	if err != nil {
		return "", fmt.Errorf("write default network config: every subnet from 10.88.0.0/16 to 10.98.0.0/16 overlaps a network of this host; write a CNI config to %s by hand: %w", confDir, err)
	}
	if err := writeFileAtomic(filepath.Join(confDir, DefaultConfigName), conflistWithSubnet(subnet)); err != nil {
		return "", fmt.Errorf("write default network config: %w", err)
	}
	return subnet, nil
}

// templateData is what a conf_template sees.
type templateData struct {
	PodCIDR       string   // first range
	PodCIDRRanges []string // all ranges (dual stack: one per family)
	Routes        []string // default route of each family present
}

// UpdatePodCIDR writes the default network config from the configured template.
func (m *Manager) UpdatePodCIDR(ctx context.Context, cidr string) error {
	if m.cfg.ConfTemplate == "" || strings.TrimSpace(cidr) == "" {
		return nil
	}
	data, err := podCIDRData(cidr)
	if err != nil {
		return fmt.Errorf("update pod cidr: %w", err)
	}
	out, err := renderTemplate(m.cfg.ConfTemplate, data)
	if err != nil {
		return fmt.Errorf("update pod cidr: %w", err)
	}
	path := filepath.Join(m.cfg.ConfDir, TemplateConfigName)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, out) {
		return nil // kubelet repeats the same CIDR; don't churn the file
	}
	if err := writeFileAtomic(path, out); err != nil {
		return fmt.Errorf("update pod cidr: %w", err)
	}
	m.log.Info("wrote CNI config from template", "file", path, "pod_cidr", cidr)
	_, _ = m.current() // load it now rather than on the next call
	return nil
}

// podCIDRData parses kubelet's comma-separated pod CIDRs.
func podCIDRData(cidr string) (templateData, error) {
	var d templateData
	seen := map[string]bool{}
	for _, c := range strings.Split(cidr, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		ip, _, err := net.ParseCIDR(c)
		if err != nil {
			return d, fmt.Errorf("invalid pod CIDR %q: %w", c, errdefs.ErrInvalidArgument)
		}
		d.PodCIDRRanges = append(d.PodCIDRRanges, c)
		route := "0.0.0.0/0"
		if ip.To4() == nil {
			route = "::/0"
		}
		if !seen[route] {
			seen[route] = true
			d.Routes = append(d.Routes, route)
		}
	}
	if len(d.PodCIDRRanges) == 0 {
		return d, fmt.Errorf("empty pod CIDR: %w", errdefs.ErrInvalidArgument)
	}
	d.PodCIDR = d.PodCIDRRanges[0]
	return d, nil
}

// renderTemplate renders tmpl, which is either the template text itself
// (it contains "{") or the path of a file holding it, and checks that the
// result is a usable conflist so a bad template never replaces a good config.
func renderTemplate(tmpl string, data templateData) ([]byte, error) {
	text := tmpl
	if !strings.Contains(tmpl, "{") {
		b, err := os.ReadFile(tmpl)
		if err != nil {
			return nil, fmt.Errorf("read conf template: %w", err)
		}
		text = string(b)
	}
	t, err := template.New("conf_template").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse conf template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render conf template: %w", err)
	}
	if err := validateConflist(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("rendered conf template is not a valid conflist: %w", err)
	}
	return buf.Bytes(), nil
}

// writeFileAtomic replaces path through a temporary file in the same dir so
// a reader (crid's own reload, other tools) never sees a partial config. The
// temp name has no config extension, so it is never loaded.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
