package oci

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// userRequest is the identity a container asks for, from the CRI security
// context and the image config.
type userRequest struct {
	image        string // image config USER: "uid", "uid:gid", "name", "name:group"
	uid          *int64 // run_as_user
	username     string // run_as_username
	gid          *int64 // run_as_group
	supplemental []int64
	strict       bool // SupplementalGroupsPolicy Strict: ignore the image's /etc/group
}

type passwdEntry struct {
	name     string
	uid, gid uint32
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// resolveUser turns req into the process user, reading <rootfs>/etc/passwd
// and /etc/group for names and the user's groups. Those files are read
// through os.Root so a symlink in the image cannot point crid at host files.
func resolveUser(rootfs string, req userRequest) (specs.User, error) {
	if err := checkRunAs(req.uid, req.gid, req.username, req.supplemental); err != nil {
		return specs.User{}, err
	}
	var userPart, groupPart string
	switch {
	case req.username != "":
		userPart = req.username
	case req.uid != nil:
		userPart = strconv.FormatInt(*req.uid, 10)
	default:
		userPart, groupPart, _ = strings.Cut(req.image, ":")
	}
	if userPart == "" {
		userPart = "0"
	}
	if req.gid != nil {
		groupPart = strconv.FormatInt(*req.gid, 10)
	}

	passwd, err := readPasswd(rootfs)
	if err != nil {
		return specs.User{}, err
	}
	var u specs.User
	var name string
	if n, ok := parseID(userPart); ok {
		u.UID = n
		// A uid unknown to the image is fine: it runs with gid 0, as with
		// docker and containerd.
		if i := slices.IndexFunc(passwd, func(e passwdEntry) bool { return e.uid == u.UID }); i >= 0 {
			name, u.GID = passwd[i].name, passwd[i].gid
		}
	} else {
		i := slices.IndexFunc(passwd, func(e passwdEntry) bool { return e.name == userPart })
		if i < 0 {
			return specs.User{}, fmt.Errorf("user %q not found in the image's /etc/passwd: %w", userPart, errdefs.ErrInvalidArgument)
		}
		name, u.UID, u.GID = userPart, passwd[i].uid, passwd[i].gid
	}

	var groups []groupEntry
	needGroups := (groupPart != "" && !isNumeric(groupPart)) || (!req.strict && name != "")
	if needGroups {
		if groups, err = readGroup(rootfs); err != nil {
			return specs.User{}, err
		}
	}
	if groupPart != "" {
		if n, ok := parseID(groupPart); ok {
			u.GID = n
		} else {
			i := slices.IndexFunc(groups, func(g groupEntry) bool { return g.name == groupPart })
			if i < 0 {
				return specs.User{}, fmt.Errorf("group %q not found in the image's /etc/group: %w", groupPart, errdefs.ErrInvalidArgument)
			}
			u.GID = groups[i].gid
		}
	}

	// The primary group is listed too, as containerd does, so `id -G` in
	// the container matches what Kubernetes reports.
	gids := []uint32{u.GID}
	if !req.strict && name != "" {
		for _, g := range groups {
			if slices.Contains(g.members, name) {
				gids = append(gids, g.gid)
			}
		}
	}
	for _, g := range req.supplemental {
		gids = append(gids, uint32(g))
	}
	slices.Sort(gids)
	u.AdditionalGids = slices.Compact(gids)
	return u, nil
}

// ValidateRunAs checks the identity fields of a CRI security context the
// way spec generation will, so a pod is refused before its network is set
// up. Errors wrap errdefs.ErrInvalidArgument.
func ValidateRunAs(sc interface {
	GetRunAsUser() *runtime.Int64Value
	GetRunAsGroup() *runtime.Int64Value
	GetSupplementalGroups() []int64
}) error {
	return checkRunAs(int64Ptr(sc.GetRunAsUser()), int64Ptr(sc.GetRunAsGroup()), "", sc.GetSupplementalGroups())
}

// checkRunAs checks requested ids: within 0..maxID, and a group only with
// a user.
func checkRunAs(uid, gid *int64, username string, supplemental []int64) error {
	if gid != nil && uid == nil && username == "" {
		return fmt.Errorf("run_as_group set without run_as_user or run_as_username: %w", errdefs.ErrInvalidArgument)
	}
	if uid != nil && username == "" && (*uid < 0 || *uid > maxID) {
		return fmt.Errorf("run_as_user %d out of range: %w", *uid, errdefs.ErrInvalidArgument)
	}
	if gid != nil && (*gid < 0 || *gid > maxID) {
		return fmt.Errorf("run_as_group %d out of range: %w", *gid, errdefs.ErrInvalidArgument)
	}
	for _, g := range supplemental {
		if g < 0 || g > maxID {
			return fmt.Errorf("supplemental group %d out of range: %w", g, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func isNumeric(s string) bool {
	_, ok := parseID(s)
	return ok
}

// maxID is the largest usable uid or gid: 4294967295, (uid_t)-1, means
// "leave unchanged" to setuid(2) and friends, so an image naming it would
// ask for root's identity to be kept (runc refuses it only at start).
const maxID = 1<<32 - 2

// parseID parses a numeric uid or gid of at most maxID.
func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxID {
		return 0, false
	}
	return uint32(n), true
}

// maxAccountFile bounds what crid reads of an image's /etc/passwd or
// /etc/group. The image is untrusted: without a bound a huge file (or one
// that never ends) grows crid's memory until the OOM killer picks it.
// Real account databases are kilobytes; 4 MiB holds ~50,000 entries.
const maxAccountFile = 4 << 20

// readRootfsFile reads name inside rootfs; a missing file (or rootfs) is
// (nil, nil): many minimal images have no /etc/passwd. The image decides
// what the path is, so it is resolved as the container would resolve it
// (symlinks, absolute ones too, stay inside rootfs: pathrs-lite, as runc
// does), looked at through an O_PATH handle, and opened only if it is a
// regular file of at most maxAccountFile bytes: a FIFO would block
// CreateContainer forever, a device (/dev/zero's 1:5) never ends.
func readRootfsFile(rootfs, name string) ([]byte, error) {
	if rootfs == "" {
		return nil, nil
	}
	h, err := pathrs.OpenInRoot(rootfs, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read /%s in the image: %w", name, err)
	}
	defer h.Close()
	st, err := h.Stat()
	if err != nil {
		return nil, fmt.Errorf("read /%s in the image: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("/%s in the image is a %s, not a regular file: %w", name, fileKind(st.Mode()), errdefs.ErrFailedPrecondition)
	}
	if st.Size() > maxAccountFile {
		return nil, fmt.Errorf("/%s in the image is larger than %d bytes: %w", name, maxAccountFile, errdefs.ErrFailedPrecondition)
	}
	f, err := pathrs.Reopen(h, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY)
	if err != nil {
		return nil, fmt.Errorf("read /%s in the image: %w", name, err)
	}
	defer f.Close()
	// Bounded again: the size checked above is the size at that moment.
	b, err := io.ReadAll(io.LimitReader(f, maxAccountFile+1))
	if err != nil {
		return nil, fmt.Errorf("read /%s in the image: %w", name, err)
	}
	if len(b) > maxAccountFile {
		return nil, fmt.Errorf("/%s in the image is larger than %d bytes: %w", name, maxAccountFile, errdefs.ErrFailedPrecondition)
	}
	return b, nil
}

// fileKind names a non-regular file type for an error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	default:
		return "special file"
	}
}

// colonRecords splits a colon-separated database (/etc/passwd,
// /etc/group) of the image into the fields of each non-comment line with
// at least min fields.
func colonRecords(b []byte, min int) [][]string {
	var out [][]string
	// Not a bufio.Scanner: it stops silently at a line over 64 KiB, and
	// the entries after it would be missed.
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Split(line, ":"); len(f) >= min {
			out = append(out, f)
		}
	}
	return out
}

// readPasswd reads the image's /etc/passwd; a missing file is no entries.
func readPasswd(rootfs string) ([]passwdEntry, error) {
	b, err := readRootfsFile(rootfs, "etc/passwd")
	if err != nil {
		return nil, err
	}
	return parsePasswd(b), nil
}

// parsePasswd parses /etc/passwd content, skipping malformed lines. Kept
// apart from reading so it can be fuzzed.
func parsePasswd(b []byte) []passwdEntry {
	var out []passwdEntry
	for _, f := range colonRecords(b, 4) {
		uid, ok1 := parseID(f[2])
		gid, ok2 := parseID(f[3])
		if !ok1 || !ok2 {
			continue
		}
		out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid})
	}
	return out
}

// readGroup reads the image's /etc/group; a missing file is no entries.
func readGroup(rootfs string) ([]groupEntry, error) {
	b, err := readRootfsFile(rootfs, "etc/group")
	if err != nil {
		return nil, err
	}
	return parseGroup(b), nil
}

// parseGroup parses /etc/group content, skipping malformed lines.
func parseGroup(b []byte) []groupEntry {
	var out []groupEntry
	for _, f := range colonRecords(b, 3) {
		gid, ok := parseID(f[2])
		if !ok {
			continue
		}
		g := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			for _, m := range strings.Split(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					g.members = append(g.members, m)
				}
			}
		}
		out = append(out, g)
	}
	return out
}
