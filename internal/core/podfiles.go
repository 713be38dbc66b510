package core

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// resolvConf renders /etc/resolv.conf from the pod's DNS config; with no
// DNS config the host's file is used, as kubelet expects.
func resolvConf(dns *runtime.DNSConfig) ([]byte, error) {
	if dns == nil || (len(dns.Servers) == 0 && len(dns.Searches) == 0 && len(dns.Options) == 0) {
		b, err := os.ReadFile("/etc/resolv.conf")
		if os.IsNotExist(err) {
			return nil, nil
		}
		return b, err
	}
	var b strings.Builder
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	return []byte(b.String()), nil
}

func podHostname(cfg *runtime.PodSandboxConfig) (string, error) {
	if hostNetwork(cfg) {
		return os.Hostname()
	}
	if cfg.Hostname != "" {
		return cfg.Hostname, nil
	}
	return cfg.GetMetadata().GetName(), nil
}

// writePodFiles writes resolv.conf, hostname and a first hosts file into dir.
func writePodFiles(dir string, cfg *runtime.PodSandboxConfig) error {
	rc, err := resolvConf(cfg.DnsConfig)
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), rc, 0o644); err != nil {
		return err
	}
	hn, err := podHostname(cfg)
	if err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hostname"), []byte(hn+"\n"), 0o644); err != nil {
		return err
	}
	return writeHosts(dir, cfg, "")
}

// writeHosts writes the pod's /etc/hosts: the host's for host-network pods,
// else localhost entries plus the pod's IP and hostname.
func writeHosts(dir string, cfg *runtime.PodSandboxConfig, ip string) error {
	path := filepath.Join(dir, "hosts")
	if hostNetwork(cfg) {
		b, err := os.ReadFile("/etc/hosts")
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		return os.WriteFile(path, b, 0o644)
	}
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if ip != "" {
		hn, err := podHostname(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, hn)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func writeSpec(bundle string, spec *specs.Spec) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encode runtime spec: %w", err)
	}
	tmp := filepath.Join(bundle, "config.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(bundle, "config.json"))
}

func readSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("decode %s/config.json: %w", bundle, err)
	}
	return &spec, nil
}
