package apparmor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// ParserName is the program that compiles and loads profiles.
const ParserName = "apparmor_parser"

// Loader loads crid's default profile into the kernel when a container
// needs it. It keeps the text it loaded in a file under crid's state dir
// (tmpfs: gone at a reboot, as the kernel's profiles are), so a restarted
// crid reuses a profile an earlier one loaded with the same text and
// replaces one whose text differs (an upgraded crid).
//
// When to load: crid tries once at start (so that a problem shows in the
// start log and the first container does not wait for the parser) and
// checks again before every container that uses the profile, as
// containerd loads its profile lazily: anything may unload it meanwhile
// (aa-teardown, an admin), and apparmor_parser may be installed after crid
// started. A failure at start is not fatal: privileged containers and
// those with an explicit Unconfined or Localhost profile do not need the
// profile, and kubelet reports the error on every pod that does.
// containerd and CRI-O take a missing parser for AppArmor being off and
// run those containers unconfined; crid refuses them instead.
type Loader struct {
	dir string // <state>/apparmor
	log *slog.Logger

	mu sync.Mutex
	// text is the profile this crid renders: the host's parameters do not
	// change while it runs, so it is rendered once, not before every
	// container that needs the profile.
	text string
	// current is the text this Loader loaded or found loaded.
	current string

	// What the loader looks at and runs; tests replace them.
	params func() Params
	loaded func(name string) (bool, error)
	parser func() (string, error)
	run    func(ctx context.Context, parser string, args ...string) ([]byte, error)
}

// NewLoader returns a loader keeping its file in stateDir/apparmor.
func NewLoader(stateDir string, log *slog.Logger) *Loader {
	return &Loader{
		dir:    filepath.Join(stateDir, "apparmor"),
		log:    log,
		params: HostParams,
		loaded: Loaded,
		parser: findParser,
		run: func(ctx context.Context, parser string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, parser, args...).CombinedOutput()
		},
	}
}

// Path is the file holding the text of the loaded default profile.
func (l *Loader) Path() string { return filepath.Join(l.dir, DefaultProfile) }

// findParser looks for apparmor_parser on $PATH and in the sbin dirs a
// service's $PATH may lack.
func findParser() (string, error) {
	if p, err := exec.LookPath(ParserName); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, ParserName)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in $PATH, /usr/sbin or /sbin", ParserName)
}

// EnsureDefault makes sure the kernel has DefaultProfile with the text
// this crid renders, loading or replacing it if not. Errors say what to
// do; a missing parser is errdefs.ErrFailedPrecondition.
func (l *Loader) EnsureDefault(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.text == "" {
		text, err := Render(l.params())
		if err != nil {
			return err
		}
		l.text = text
	}
	text := l.text
	loaded, err := l.loaded(DefaultProfile)
	if err != nil {
		return fmt.Errorf("AppArmor profile %s: %w", DefaultProfile, err)
	}
	if loaded && text == l.current {
		return nil
	}
	reason := "not loaded"
	if loaded {
		old, err := os.ReadFile(l.Path())
		switch {
		case err == nil && string(old) == text:
			l.current = text
			l.log.Info("AppArmor profile already loaded with this text", "profile", DefaultProfile, "sha256", TextHash(text))
			return nil
		case err == nil:
			reason = "text changed, was sha256 " + TextHash(string(old))
		case errors.Is(err, fs.ErrNotExist):
			reason = "loaded without a record of its text"
		default:
			return fmt.Errorf("AppArmor profile %s: read the loaded text: %w", DefaultProfile, err)
		}
	}
	if err := l.load(ctx, text); err != nil {
		return err
	}
	l.current = text
	l.log.Info("loaded AppArmor profile", "profile", DefaultProfile, "reason", reason, "sha256", TextHash(text), "file", l.Path())
	return nil
}

// load compiles and loads text (replacing a loaded profile of its name)
// from a file next to the record, which becomes the record only once the
// kernel has it: a failed load never leaves a record claiming its text.
func (l *Loader) load(ctx context.Context, text string) error {
	parser, err := l.parser()
	if err != nil {
		return fmt.Errorf("AppArmor is enabled on this node and the container's AppArmor profile is %s (RuntimeDefault, or none given), "+
			"but crid cannot load it: %v; install it (Debian and Ubuntu: the apparmor package) or give the container an explicit AppArmor profile: %w",
			DefaultProfile, err, errdefs.ErrFailedPrecondition)
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return fmt.Errorf("AppArmor profile %s: %w", DefaultProfile, err)
	}
	f, err := os.CreateTemp(l.dir, DefaultProfile+".*.tmp")
	if err != nil {
		return fmt.Errorf("AppArmor profile %s: %w", DefaultProfile, err)
	}
	tmp := f.Name()
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// -K: no cache (the text lives here, not in /etc/apparmor.d);
		// -r: replace a loaded profile of the name, or add it.
		var out []byte
		if out, err = l.run(ctx, parser, "-Kr", tmp); err != nil {
			err = fmt.Errorf("%s -Kr: %w: %s", parser, err, strings.TrimSpace(string(out)))
		}
	}
	if err == nil {
		err = os.Rename(tmp, l.Path())
	}
	if err != nil {
		if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			l.log.Warn("remove temporary AppArmor profile", "file", tmp, "error", rerr)
		}
		return fmt.Errorf("load AppArmor profile %s: %w", DefaultProfile, err)
	}
	return nil
}
