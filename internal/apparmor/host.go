package apparmor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

const (
	enabledParam = "/sys/module/apparmor/parameters/enabled"
	securityfs   = "/sys/kernel/security/apparmor"
	abiFile      = "/etc/apparmor.d/abi/3.0"
)

// Enabled reports whether the kernel enforces AppArmor: the module is on
// and its securityfs is there (runc checks the same before it applies a
// profile). Where it does not, crid leaves processes without a profile and
// ignores the ones requests name.
func Enabled() bool {
	if _, err := os.Stat(securityfs); err != nil {
		return false
	}
	b, err := os.ReadFile(enabledParam)
	return err == nil && bytes.HasPrefix(b, []byte("Y"))
}

// Loaded reports whether the kernel has a profile named name.
func Loaded(name string) (bool, error) {
	b, err := os.ReadFile(securityfs + "/profiles")
	if err != nil {
		return false, fmt.Errorf("list loaded AppArmor profiles: %w", err)
	}
	return listed(b, name), nil
}

// listed reports whether the kernel's profile list (lines "NAME (MODE)")
// names name.
func listed(list []byte, name string) bool {
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), name+" (") {
			return true
		}
	}
	return false
}

// plainLabel is a label the profile can name as a signal peer as it is.
var plainLabel = regexp.MustCompile(`^[A-Za-z0-9_./:+-]+$`)

// HostParams are the default profile's parameters on this host: the ABI
// rule where the parser knows it, and crid's own label among the signal
// peers when crid runs confined (its monitors and runc inherit it).
func HostParams() Params {
	p := Params{Name: DefaultProfile, SignalPeers: DefaultSignalPeers()}
	if _, err := os.Stat(abiFile); err == nil {
		p.ABI = true
	}
	if b, err := os.ReadFile("/proc/self/attr/current"); err == nil {
		if own := ownLabel(string(b)); own != "" && !slices.Contains(p.SignalPeers, own) {
			p.SignalPeers = append(p.SignalPeers, own)
		}
	}
	return p
}

// ownLabel extracts the label from /proc/self/attr/current ("NAME (MODE)"
// or "unconfined"); "" when it cannot be named in a rule, such as a
// stacked label.
func ownLabel(current string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(strings.TrimRight(current, "\x00")), " ")
	if !plainLabel.MatchString(name) || strings.Contains(name, "//") {
		return ""
	}
	return name
}
