package config

import (
	"encoding"
	"reflect"
	"slices"
	"strings"
)

// LiveKeys are the keys a running crid applies when it reloads its config
// (SIGHUP): where images are pulled from and how pulls are paced. They
// are read at the start of each pull, so swapping them touches no running
// container, connection or pull. Every other key takes a restart: paths,
// sockets, handlers and the network are wired into state at start, and
// the sandbox and pinned images into records kubelet has already seen.
func LiveKeys() []string {
	return []string{
		"images.registries",
		"images.max_concurrent_downloads",
		"images.pull_progress_timeout",
	}
}

// WithLive returns a copy of running with the LiveKeys of next: what the
// daemon runs with after a reload that applied next.
func WithLive(running, next *Config) *Config {
	out := *running
	out.Images.Registries = next.Images.Registries
	out.Images.MaxConcurrentDownloads = next.Images.MaxConcurrentDownloads
	out.Images.PullProgressTimeout = next.Images.PullProgressTimeout
	return &out
}

// ChangedKeys names the keys whose values differ between a and b, split
// into those LiveKeys applies and those that need a restart, each sorted.
// Tables are walked down to their keys; arrays and maps (registries,
// handlers) count as one key each.
func ChangedKeys(a, b *Config) (live, restart []string) {
	var changed []string
	diffKeys("", reflect.ValueOf(*a), reflect.ValueOf(*b), &changed)
	liveKeys := LiveKeys()
	for _, k := range changed {
		if slices.Contains(liveKeys, k) {
			live = append(live, k)
		} else {
			restart = append(restart, k)
		}
	}
	slices.Sort(live)
	slices.Sort(restart)
	return live, restart
}

// diffKeys appends to out the TOML names of the fields of structs a and b
// that differ, recursing into nested tables (structs that are not written
// as a single value, unlike Duration).
func diffKeys(prefix string, a, b reflect.Value, out *[]string) {
	t := a.Type()
	textMarshaler := reflect.TypeFor[encoding.TextMarshaler]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		fa, fb := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct && !f.Type.Implements(textMarshaler) {
			diffKeys(key+".", fa, fb, out)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			*out = append(*out, key)
		}
	}
}
