package oci

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
)

// CDIDevices returns the fully qualified CDI device names a container asks
// for: the CRI's cdi_devices first, then those of cdi.k8s.io/ annotations
// (the form kubelet's device plugin path used before the field existed),
// in a stable order and without duplicates (kubelet may send both forms).
func CDIDevices(cfg *runtime.ContainerConfig) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, d := range cfg.GetCDIDevices() {
		name := d.GetName()
		if _, _, _, err := parser.ParseQualifiedName(name); err != nil {
			return nil, fmt.Errorf("cdi_devices: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		add(name)
	}
	// Annotations are a map; sort the keys so the edits (env order, mount
	// order) do not change from one create to the next.
	var keys []string
	for k := range cfg.GetAnnotations() {
		if strings.HasPrefix(k, cdi.AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		_, names, err := cdi.ParseAnnotations(map[string]string{k: cfg.Annotations[k]})
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w: %w", k, err, errdefs.ErrInvalidArgument)
		}
		for _, n := range names {
			add(n)
		}
	}
	return out, nil
}

// ApplyCDI resolves the named CDI devices from the spec files in specDirs
// (earlier dirs lose to later ones, as the CDI spec says) and applies
// their container edits to spec: device nodes with their cgroup rules,
// mounts, env and hooks. Nothing is done when devices is empty. A device
// no spec file describes is an invalid request; a spec that cannot be
// applied on this host (its device node is missing) is a failed
// precondition.
//
// The spec dirs are read on each call rather than watched: CDI specs are
// written by device plugins and drivers at any time, and a cache with a
// watcher would be long-lived state for a rarely used path.
func ApplyCDI(spec *specs.Spec, devices []string, specDirs []string) error {
	if len(devices) == 0 {
		return nil
	}
	if len(specDirs) == 0 {
		return fmt.Errorf("CDI devices %s requested but no CDI spec dirs are configured: %w",
			strings.Join(devices, ", "), errdefs.ErrInvalidArgument)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(specDirs...), cdi.WithAutoRefresh(false))
	if err != nil {
		return fmt.Errorf("CDI cache: %w", err)
	}
	unresolved, err := cache.InjectDevices(spec, devices...)
	if err == nil {
		return nil
	}
	if len(unresolved) == 0 {
		return fmt.Errorf("inject CDI devices %s: %w: %w", strings.Join(devices, ", "), err, errdefs.ErrFailedPrecondition)
	}
	// Name the broken spec files too: a typo in a spec is the usual reason
	// a device that "is there" does not resolve.
	msg := fmt.Sprintf("unknown CDI device(s) %s (spec dirs %s)", strings.Join(unresolved, ", "), strings.Join(specDirs, ", "))
	if specErrs := cdiSpecErrors(cache); specErrs != "" {
		msg += "; spec errors: " + specErrs
	}
	return fmt.Errorf("%s: %w", msg, errdefs.ErrInvalidArgument)
}

// cdiSpecErrors lists the errors found while loading spec files, by path.
func cdiSpecErrors(cache *cdi.Cache) string {
	byPath := cache.GetErrors()
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var parts []string
	for _, p := range paths {
		for _, e := range byPath[p] {
			parts = append(parts, fmt.Sprintf("%s: %v", p, e))
		}
	}
	return strings.Join(parts, "; ")
}
