package runc

import (
	"fmt"
	"slices"
)

// Advisory is a published vulnerability of an OCI runtime that lets a
// container (a malicious image, or a process in it) escape to or write to
// the host, with the first release of each release line that fixes it.
type Advisory struct {
	Runtime string   `json:"runtime"` // the runtime's own name, as its --version prints it
	CVEs    []string `json:"cves"`
	// Introduced is the first affected version; "" when all earlier ones are.
	Introduced string `json:"introduced,omitempty"`
	// Fixed is the first fixed release of each major.minor line that got a
	// fix. A version of one of those lines is affected below its line's fix;
	// a version of a line older than some fixed line, with no fix of its
	// own, is affected; a line newer than all of them branched after the fix.
	Fixed []string `json:"fixedIn"`
	// Feature limits the advisory to builds listing "+Feature" in their
	// --version output (crun's optional krun support).
	Feature string `json:"feature,omitempty"`
	Summary string `json:"summary"`
}

// advisories is the table crid checks its handlers' runtimes against at
// start. Sources: runc's CHANGELOG.md and security advisories, crun's NEWS.
// Left out on purpose: issues that only matter for checkpoint/restore,
// which crid never does (runc CVE-2026-119101, crun CVE-2026-115520), and
// ones that are no escape (runc CVE-2022-29162 and crun CVE-2022-27650,
// inheritable capabilities; crun CVE-2026-30892, `exec -u` user parsing).
func advisories() []Advisory {
	return []Advisory{
		{Runtime: "runc", CVEs: []string{"CVE-2019-5736"}, Fixed: []string{"1.0.0-rc7"},
			Summary: "a container process overwrites the host's runc binary through /proc/self/exe"},
		{Runtime: "runc", CVEs: []string{"CVE-2019-19921"}, Fixed: []string{"1.0.0-rc10"},
			Summary: "a volume symlink race redirects runc's /proc mounts, defeating AppArmor and writing host procfs"},
		{Runtime: "runc", CVEs: []string{"CVE-2021-30465"}, Fixed: []string{"1.0.0-rc95"},
			Summary: "a symlink-exchange race makes a bind mount land outside the container rootfs"},
		{Runtime: "runc", CVEs: []string{"CVE-2023-27561"}, Introduced: "1.0.0-rc95", Fixed: []string{"1.1.5"},
			Summary: "CVE-2019-19921 again: a volume symlink race redirects runc's /proc mounts"},
		{Runtime: "runc", CVEs: []string{"CVE-2024-21626"}, Introduced: "1.0.0-rc93", Fixed: []string{"1.1.12"},
			Summary: "a leaked host directory fd gives the container process a working directory on the host"},
		{Runtime: "runc", CVEs: []string{"CVE-2024-45310"}, Fixed: []string{"1.1.14", "1.2.0-rc.3"},
			Summary: "a race with a shared volume creates empty files or directories anywhere on the host"},
		{Runtime: "runc", CVEs: []string{"CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"},
			Fixed:   []string{"1.2.8", "1.3.3", "1.4.0-rc.3"},
			Summary: "image-controlled /dev/null, /dev/console and procfs mount races let a container write host procfs and escape"},
		{Runtime: "runc", CVEs: []string{"CVE-2026-41579"}, Fixed: []string{"1.3.6", "1.4.3", "1.5.0-rc.3"},
			Summary: "an image's /dev symlink gives limited write access to the host filesystem"},

		{Runtime: "crun", CVEs: []string{"CVE-2019-18837"}, Fixed: []string{"0.10.5"},
			Summary: "an image's symlinks make crun mount outside the container rootfs"},
		{Runtime: "crun", CVEs: []string{"CVE-2025-24965"}, Feature: "LIBKRUN", Fixed: []string{"1.20"},
			Summary: "krun handler: an image makes crun create .krun_config.json outside the rootfs"},
		{Runtime: "crun", CVEs: []string{"CVE-2026-47766"}, Fixed: []string{"1.28"},
			Summary: "an image's /dev symlinks redirect crun's device setup outside the rootfs"},
	}
}

// KnownEscapes returns the advisories that affect the runtime vi
// describes; none for runtimes crid has no table for. An error means the
// version could not be read, so crid cannot tell. The version is the
// upstream one: a distribution package may carry a backported fix that
// this cannot see.
func KnownEscapes(vi VersionInfo) ([]Advisory, error) {
	table := advisories()
	if !slices.ContainsFunc(table, func(a Advisory) bool { return a.Runtime == vi.Runtime }) {
		return nil, nil
	}
	v, err := ParseVersion(vi.Version)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", vi.Runtime, err)
	}
	feats := vi.Features()
	var hit []Advisory
	for _, a := range table {
		if a.Runtime != vi.Runtime || (a.Feature != "" && !slices.Contains(feats, a.Feature)) {
			continue
		}
		affected, err := a.affects(v)
		if err != nil {
			return nil, err
		}
		if affected {
			hit = append(hit, a)
		}
	}
	return hit, nil
}

// affects applies the Introduced and Fixed rules to v.
func (a Advisory) affects(v Version) (bool, error) {
	if a.Introduced != "" {
		intro, err := ParseVersion(a.Introduced)
		if err != nil {
			return false, fmt.Errorf("advisory %v: %w", a.CVEs, err)
		}
		if v.Compare(intro) < 0 {
			return false, nil
		}
	}
	olderThanAFix := false
	for _, s := range a.Fixed {
		fix, err := ParseVersion(s)
		if err != nil {
			return false, fmt.Errorf("advisory %v: %w", a.CVEs, err)
		}
		switch v.compareLine(fix) {
		case 0:
			return v.Compare(fix) < 0, nil
		case -1:
			olderThanAFix = true
		}
	}
	return olderThanAFix, nil
}
