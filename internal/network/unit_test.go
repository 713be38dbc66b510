package network

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/crid-dev/crid/internal/config"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPortMappings(t *testing.T) {
	tests := []struct {
		name string
		in   []*runtime.PortMapping
		want []portMapEntry
	}{
		{name: "none", in: nil, want: nil},
		{
			name: "container port only is dropped",
			in:   []*runtime.PortMapping{{ContainerPort: 80, Protocol: runtime.Protocol_TCP}},
			want: nil,
		},
		{
			name: "protocols lowercased, host ip kept",
			in: []*runtime.PortMapping{
				{HostPort: 8080, ContainerPort: 80, Protocol: runtime.Protocol_TCP},
				{HostPort: 5353, ContainerPort: 53, Protocol: runtime.Protocol_UDP, HostIp: "127.0.0.1"},
				{HostPort: 9999, ContainerPort: 9999, Protocol: runtime.Protocol_SCTP},
				nil,
			},
			want: []portMapEntry{
				{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
				{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
				{HostPort: 9999, ContainerPort: 9999, Protocol: "sctp"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := portMappings(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("portMappings = %+v, want %+v", got, tt.want)
			}
		})
	}
	// The capability arg must serialize with the CNI convention's keys.
	b, _ := json.Marshal(portMappings([]*runtime.PortMapping{{HostPort: 1, ContainerPort: 2, HostIp: "10.0.0.1"}}))
	if want := `[{"hostPort":1,"containerPort":2,"protocol":"tcp","hostIP":"10.0.0.1"}]`; string(b) != want {
		t.Fatalf("json = %s, want %s", b, want)
	}
}

func ipnet(s string) net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return *n
}

func TestPodIPs(t *testing.T) {
	idx := func(i int) *int { return &i }
	ifaces := []*types100.Interface{
		{Name: "cni0"},                          // host bridge
		{Name: "veth1234"},                      // host veth
		{Name: "eth0", Sandbox: "/run/netns/x"}, // pod interface
	}
	tests := []struct {
		name    string
		res     *types100.Result
		want    *Result
		wantErr bool
	}{
		{
			name: "ipv4 on eth0, host addresses ignored",
			res: &types100.Result{CNIVersion: "1.0.0", Interfaces: ifaces, IPs: []*types100.IPConfig{
				{Interface: idx(0), Address: ipnet("10.88.0.1/16")},
				{Interface: idx(2), Address: ipnet("10.88.0.5/16")},
			}},
			want: &Result{IP: "10.88.0.5"},
		},
		{
			name: "dual stack, v6 first: v4 is primary",
			res: &types100.Result{CNIVersion: "1.0.0", Interfaces: ifaces, IPs: []*types100.IPConfig{
				{Interface: idx(2), Address: ipnet("fd00::5/64")},
				{Interface: idx(2), Address: ipnet("10.88.0.5/16")},
			}},
			want: &Result{IP: "10.88.0.5", AdditionalIPs: []string{"fd00::5"}},
		},
		{
			name: "ipv6 only",
			res: &types100.Result{CNIVersion: "1.0.0", Interfaces: ifaces, IPs: []*types100.IPConfig{
				{Interface: idx(2), Address: ipnet("fd00::5/64")},
			}},
			want: &Result{IP: "fd00::5"},
		},
		{
			name: "no interface info",
			res: &types100.Result{CNIVersion: "1.0.0", IPs: []*types100.IPConfig{
				{Address: ipnet("192.168.1.7/24")},
			}},
			want: &Result{IP: "192.168.1.7"},
		},
		{
			name: "only host addresses",
			res: &types100.Result{CNIVersion: "1.0.0", Interfaces: ifaces, IPs: []*types100.IPConfig{
				{Interface: idx(0), Address: ipnet("10.88.0.1/16")},
			}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := podIPs(tt.res, "eth0")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("podIPs = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPodCIDRData(t *testing.T) {
	tests := []struct {
		in      string
		want    templateData
		wantErr bool
	}{
		{in: "10.244.1.0/24", want: templateData{PodCIDR: "10.244.1.0/24", PodCIDRRanges: []string{"10.244.1.0/24"}, Routes: []string{"0.0.0.0/0"}}},
		{in: "10.244.1.0/24, fd00:1::/64", want: templateData{PodCIDR: "10.244.1.0/24", PodCIDRRanges: []string{"10.244.1.0/24", "fd00:1::/64"}, Routes: []string{"0.0.0.0/0", "::/0"}}},
		{in: "bogus", wantErr: true},
		{in: " , ", wantErr: true},
	}
	for _, tt := range tests {
		got, err := podCIDRData(tt.in)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%q: err = %v, wantErr %v", tt.in, err, tt.wantErr)
		}
		if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
			t.Fatalf("%q: got %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestLoadConfFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, file, content string
		wantName            string
		wantTypes           []string
		wantErr             bool
	}{
		{name: "conflist", file: "a.conflist", content: string(defaultConflist), wantName: "crid", wantTypes: []string{"bridge", "portmap"}},
		{name: "single conf", file: "b.conf", content: `{"cniVersion":"0.4.0","name":"one","type":"ptp"}`, wantName: "one", wantTypes: []string{"ptp"}},
		{name: "list in .json", file: "c.json", content: `{"cniVersion":"1.0.0","name":"lj","plugins":[{"type":"bridge"}]}`, wantName: "lj", wantTypes: []string{"bridge"}},
		{name: "broken json", file: "d.conflist", content: `{"name":`, wantErr: true},
		{name: "no plugins", file: "e.conflist", content: `{"cniVersion":"1.0.0","name":"e","plugins":[]}`, wantErr: true},
		{name: "conf without type", file: "f.conf", content: `{"cniVersion":"1.0.0","name":"f"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := loadConfFile(write(tt.file, tt.content))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			var types []string
			for _, p := range l.Plugins {
				types = append(types, p.Network.Type)
			}
			if l.Name != tt.wantName || !reflect.DeepEqual(types, tt.wantTypes) {
				t.Fatalf("got %s %v, want %s %v", l.Name, types, tt.wantName, tt.wantTypes)
			}
		})
	}
}

func TestDefaultConflist(t *testing.T) {
	l, err := libcni.NetworkConfFromBytes(DefaultConflist())
	if err != nil {
		t.Fatal(err)
	}
	if l.Name != "crid" || l.CNIVersion != "1.0.0" || len(l.Plugins) != 2 {
		t.Fatalf("unexpected default conflist: %s %s %d plugins", l.Name, l.CNIVersion, len(l.Plugins))
	}
	if l.Plugins[1].Network.Type != "portmap" || !l.Plugins[1].Network.Capabilities["portMappings"] {
		t.Fatalf("portmap with portMappings capability expected, got %+v", l.Plugins[1].Network)
	}
	var bridge struct {
		Bridge    string `json:"bridge"`
		IsGateway bool   `json:"isGateway"`
		IPMasq    bool   `json:"ipMasq"`
		Hairpin   bool   `json:"hairpinMode"`
	}
	if err := json.Unmarshal(l.Plugins[0].Bytes, &bridge); err != nil {
		t.Fatal(err)
	}
	if bridge.Bridge != "crid0" || !bridge.IsGateway || !bridge.IPMasq || !bridge.Hairpin {
		t.Fatalf("bridge settings: %+v", bridge)
	}
}

func TestWriteDefaultConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d") // created on demand
	subnet, err := WriteDefaultConfig(dir)
	if err != nil || subnet == "" {
		t.Fatalf("first write: subnet=%q err=%v", subnet, err)
	}
	got, err := os.ReadFile(filepath.Join(dir, DefaultConfigName))
	if err != nil || string(got) != string(conflistWithSubnet(subnet)) {
		t.Fatalf("content mismatch (err %v)", err)
	}
	l, err := libcni.NetworkConfFromBytes(got)
	if err != nil || !strings.Contains(string(l.Plugins[0].Bytes), `"subnet":"`+subnet+`"`) && !strings.Contains(string(got), `"subnet": "`+subnet+`"`) {
		t.Fatalf("written config does not carry subnet %s (err %v):\n%s", subnet, err, got)
	}
	// Never overwrite, and never add a second config next to someone else's.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "05-mine.conf"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, other} {
		subnet, err := WriteDefaultConfig(d)
		if err != nil || subnet != "" {
			t.Fatalf("%s: subnet=%q err=%v, want nothing written", d, subnet, err)
		}
	}
	if _, err := os.Stat(filepath.Join(other, DefaultConfigName)); !os.IsNotExist(err) {
		t.Fatalf("default written next to an existing config: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftover temp files: %v", entries)
	}
}

// newTestManager builds a Manager whose netns dir is a bind mount that the
// test unmounts again.
func newTestManager(t *testing.T, confDir string, tmpl string) *Manager {
	t.Helper()
	state := t.TempDir()
	m, err := New(config.Network{ConfDir: confDir, BinDirs: []string{"/usr/lib/cni"}, ConfTemplate: tmpl}, state, WithCacheDir(filepath.Join(state, "cni-cache")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountAll(t, m.netnsDir) })
	return m
}

func TestReadyReload(t *testing.T) {
	requireRoot(t)
	confDir := t.TempDir()
	m := newTestManager(t, confDir, "")
	err := m.Ready()
	if err == nil || err.Error() != "no network config found in "+confDir {
		t.Fatalf("Ready() = %v, want the missing-config reason", err)
	}
	// A broken first file is skipped in favour of a valid later one.
	if err := os.WriteFile(filepath.Join(confDir, "00-broken.conflist"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), "00-broken.conflist") {
		t.Fatalf("Ready() with only a broken config = %v", err)
	}
	if err := writeFileAtomic(filepath.Join(confDir, "20-b.conflist"), []byte(`{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(); err != nil || m.NetworkName() != "b" {
		t.Fatalf("after writing a config: Ready()=%v name=%q", err, m.NetworkName())
	}
	// A lexically earlier config takes over.
	if err := writeFileAtomic(filepath.Join(confDir, "10-a.conf"), []byte(`{"cniVersion":"1.0.0","name":"a","type":"bridge"}`)); err != nil {
		t.Fatal(err)
	}
	if got := m.NetworkName(); got != "a" {
		t.Fatalf("network = %q, want a", got)
	}
	// Removing all valid configs makes the network not ready again.
	os.Remove(filepath.Join(confDir, "10-a.conf"))
	os.Remove(filepath.Join(confDir, "20-b.conflist"))
	if err := m.Ready(); err == nil {
		t.Fatal("Ready() = nil after removing configs")
	}
}

func TestUpdatePodCIDR(t *testing.T) {
	requireRoot(t)
	const tmpl = `{"cniVersion":"1.0.0","name":"tmpl","plugins":[{"type":"bridge","bridge":"cbr0","ipam":{"type":"host-local",
"ranges":[{{range $i, $r := .PodCIDRRanges}}{{if $i}},{{end}}[{"subnet":"{{$r}}"}]{{end}}],
"routes":[{{range $i, $r := .Routes}}{{if $i}},{{end}}{"dst":"{{$r}}"}{{end}}]}},{"type":"portmap","capabilities":{"portMappings":true}}]}`
	ctx := context.Background()

	t.Run("disabled without template", func(t *testing.T) {
		confDir := t.TempDir()
		m := newTestManager(t, confDir, "")
		if err := m.UpdatePodCIDR(ctx, "10.244.0.0/24"); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(confDir); len(entries) != 0 {
			t.Fatalf("wrote %v without a template", entries)
		}
	})

	for _, inline := range []bool{true, false} {
		name := "template file"
		if inline {
			name = "inline template"
		}
		t.Run(name, func(t *testing.T) {
			confDir := t.TempDir()
			src := tmpl
			if !inline {
				src = filepath.Join(t.TempDir(), "tmpl.json")
				if err := os.WriteFile(src, []byte(tmpl), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// The installer's default is there too; the template must win.
			if _, err := WriteDefaultConfig(confDir); err != nil {
				t.Fatal(err)
			}
			m := newTestManager(t, confDir, src)
			if m.NetworkName() != "crid" {
				t.Fatalf("network before = %q", m.NetworkName())
			}
			if err := m.UpdatePodCIDR(ctx, "10.244.3.0/24,fd00:3::/64"); err != nil {
				t.Fatal(err)
			}
			l, err := libcni.ConfListFromFile(filepath.Join(confDir, TemplateConfigName))
			if err != nil {
				t.Fatal(err)
			}
			var b struct {
				IPAM struct {
					Ranges [][]struct{ Subnet string } `json:"ranges"`
					Routes []struct{ Dst string }      `json:"routes"`
				} `json:"ipam"`
			}
			if err := json.Unmarshal(l.Plugins[0].Bytes, &b); err != nil {
				t.Fatal(err)
			}
			if len(b.IPAM.Ranges) != 2 || b.IPAM.Ranges[0][0].Subnet != "10.244.3.0/24" || b.IPAM.Ranges[1][0].Subnet != "fd00:3::/64" ||
				len(b.IPAM.Routes) != 2 || b.IPAM.Routes[0].Dst != "0.0.0.0/0" || b.IPAM.Routes[1].Dst != "::/0" {
				t.Fatalf("rendered ipam = %+v", b.IPAM)
			}
			if m.NetworkName() != "tmpl" {
				t.Fatalf("network after = %q, want tmpl", m.NetworkName())
			}
			if err := m.UpdatePodCIDR(ctx, "not-a-cidr"); err == nil {
				t.Fatal("invalid CIDR accepted")
			}
		})
	}

	t.Run("invalid render keeps old file", func(t *testing.T) {
		confDir := t.TempDir()
		m := newTestManager(t, confDir, `{"name": "x", "plugins": {{.PodCIDR}}}`)
		if err := m.UpdatePodCIDR(ctx, "10.1.0.0/16"); err == nil {
			t.Fatal("invalid rendered config accepted")
		}
		if entries, _ := os.ReadDir(confDir); len(entries) != 0 {
			t.Fatalf("wrote %v from an invalid template", entries)
		}
	})
}

func TestChooseSubnet(t *testing.T) {
	cidrs := func(ss ...string) []*net.IPNet {
		var out []*net.IPNet
		for _, s := range ss {
			_, n, err := net.ParseCIDR(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	tests := []struct {
		name  string
		inUse []*net.IPNet
		want  string
	}{
		{"quiet host", cidrs("192.168.1.0/24", "127.0.0.0/8"), "10.88.0.0/16"},
		{"podman or containerd on 10.88/16", cidrs("10.88.0.0/16"), "10.89.0.0/16"},
		{"a /24 inside 10.88", cidrs("10.88.7.0/24"), "10.89.0.0/16"},
		{"10/8 covers every candidate", cidrs("10.0.0.0/8"), ""},
		{"first two taken", cidrs("10.88.0.0/16", "10.89.3.4/32"), "10.90.0.0/16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chooseSubnet(subnetCandidates(), tt.inUse)
			if tt.want == "" {
				if !errors.Is(err, errNoFreeSubnet) {
					t.Fatalf("chooseSubnet = %q, %v; want errNoFreeSubnet", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("chooseSubnet = %q, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestParseRoutes(t *testing.T) {
	const table = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	010200C0	0003	0	0	0	00000000	0	0	0
cni-podman0	0000580A	00000000	0001	0	0	0	0000FFFF	0	0	0
crid0	0000590A	00000000	0001	0	0	0	0000FFFF	0	0	0
eth0	000200C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
`
	got, err := parseRoutes([]byte(table))
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, n := range got {
		s = append(s, n.String())
	}
	if strings.Join(s, " ") != "10.88.0.0/16 192.0.2.0/24" {
		t.Fatalf("routes %v, want 10.88.0.0/16 192.0.2.0/24 (no default route, nothing of crid0)", s)
	}
	if _, err := parseRoutes([]byte("h\neth0 zz 0 0 0 0 0 00FFFFFF\n")); err == nil {
		t.Fatal("a garbled route parsed")
	}
}
