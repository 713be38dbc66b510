package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// confExts are the file name extensions of CNI network configs, as libcni
// users (kubelet's dockershim, containerd, CRI-O) have always read them.
var confExts = []string{".conflist", ".conf", ".json"}

// dirState is a cheap fingerprint of the config dir: names, sizes and
// modification times of its config files. A change of any of them (a file
// added, removed, renamed or rewritten) triggers a reload.
type dirState struct {
	exists bool
	files  []fileState
}

type fileState struct {
	name  string
	size  int64
	mtime int64 // UnixNano; time.Time is not comparable with ==
}

func (a dirState) equal(b dirState) bool {
	return a.exists == b.exists && slices.Equal(a.files, b.files)
}

// statConfDir lists the config files of dir in lexical order.
func statConfDir(dir string) (dirState, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return dirState{}, nil
	}
	if err != nil {
		return dirState{}, fmt.Errorf("read network config dir: %w", err)
	}
	st := dirState{exists: true}
	for _, e := range entries { // ReadDir sorts by name
		if !slices.Contains(confExts, filepath.Ext(e.Name())) {
			continue
		}
		info, err := os.Stat(filepath.Join(dir, e.Name())) // follows symlinks
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		st.files = append(st.files, fileState{name: e.Name(), size: info.Size(), mtime: info.ModTime().UnixNano()})
	}
	return st, nil
}

// loadNetwork parses the first valid config of st in lexical order. Invalid
// files before it are reported through skipped so they can be logged.
func loadNetwork(dir string, st dirState) (list *libcni.NetworkConfigList, file string, skipped []error, err error) {
	if len(st.files) == 0 {
		return nil, "", nil, fmt.Errorf("no network config found in %s", dir)
	}
	for _, f := range st.files {
		path := filepath.Join(dir, f.name)
		l, err := loadConfFile(path)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("%s: %w", path, err))
			continue
		}
		return l, path, skipped, nil
	}
	return nil, "", skipped, fmt.Errorf("no valid network config in %s: %w", dir, errors.Join(skipped...))
}

// loadConfFile reads a .conflist, or a single-plugin .conf/.json which it
// wraps into a list. A .conf/.json holding a list is accepted too.
func loadConfFile(path string) (*libcni.NetworkConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	isList := strings.HasSuffix(path, ".conflist")
	if !isList {
		var probe struct {
			Plugins json.RawMessage `json:"plugins"`
		}
		if json.Unmarshal(data, &probe) == nil && len(probe.Plugins) > 0 {
			isList = true
		}
	}
	var list *libcni.NetworkConfigList
	if isList {
		list, err = libcni.NetworkConfFromBytes(data)
		if err != nil {
			return nil, err
		}
		// Plugins may also come from <dir>/<name>/*.conf (CNI 1.1).
		if !list.LoadOnlyInlinedPlugins {
			extra, err := libcni.NetworkPluginConfsFromFiles(filepath.Dir(path), list.Name)
			if err != nil {
				return nil, err
			}
			list.Plugins = append(list.Plugins, extra...)
		}
	} else {
		conf, err := libcni.NetworkPluginConfFromBytes(data)
		if err != nil {
			return nil, err
		}
		//lint:ignore SA1019 single-network .conf files are still common in /etc/cni/net.d; libcni has no replacement that wraps them
		list, err = libcni.ConfListFromConf(conf)
		if err != nil {
			return nil, err
		}
	}
	if list.Name == "" {
		return nil, errors.New("network config has no name")
	}
	if len(list.Plugins) == 0 {
		return nil, errors.New("network config has no plugins")
	}
	return list, nil
}

// loopbackList is the network crid always attaches to lo, so a pod's
// loopback works whatever the pod network is.
func loopbackList() (*libcni.NetworkConfigList, error) {
	return libcni.NetworkConfFromBytes([]byte(`{"cniVersion":"1.0.0","name":"cni-loopback","plugins":[{"type":"loopback"}]}`))
}

// validateConflist checks that data is a usable conflist (used before
// writing one).
func validateConflist(data []byte) error {
	if !json.Valid(data) {
		return errors.New("not valid JSON")
	}
	list, err := libcni.NetworkConfFromBytes(bytes.TrimSpace(data))
	if err != nil {
		return err
	}
	if list.Name == "" || len(list.Plugins) == 0 {
		return errors.New("conflist needs a name and at least one plugin")
	}
	return nil
}
