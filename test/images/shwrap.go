package images

import v1 "github.com/google/go-containerregistry/pkg/v1"

// shWrapSource is /bin/sh of the node e2e busybox and agnhost images. The
// suite expects the shell of the upstream images, busybox 1.37's ash: its
// error messages (the read-only root file system spec compares "/bin/sh:
// can't create /file: Read-only file system") and its passing on of
// environment variables whose names are not shell names (envFrom gives a
// container "data-1"; the specs read it back with `sh -c env`). Debian's
// busybox 1.35 ash has the messages but drops those variables; bash keeps
// them but words its errors differently. So sh runs busybox ash, unless
// the environment holds a name ash would drop: then bash, in POSIX mode.
const shWrapSource = `#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* A shell variable name: [A-Za-z_][A-Za-z0-9_]*, followed by '='. */
static int shell_name(const char *kv) {
	const char *p = kv;
	if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_'))
		return 0;
	for (p++; *p && *p != '='; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return 0;
	return *p == '=';
}

int main(int argc, char **argv) {
	const char *shell = "/bin/busybox";
	(void)argc;
	for (char **e = environ; *e; e++) {
		if (!shell_name(*e)) {
			shell = "/bin/bash";
			break;
		}
	}
	/* argv[0] stays "sh": busybox runs its ash applet, bash its POSIX mode. */
	execv(shell, argv);
	perror("sh");
	return 127;
}
`

// shWrapLayer holds the sh dispatcher at /bin/sh (static) and bash.
func (b *builder) shWrapLayer() (v1.Layer, error) {
	if _, err := b.busyboxLayer(); err != nil {
		return nil, err
	}
	base := b.builtTree("busybox")
	return b.layer("sh-wrap", func() (*tree, error) {
		bin, err := compileC([]byte(shWrapSource))
		if err != nil {
			return nil, err
		}
		t := newTree()
		if err := addBinary(t, "/bin/bash", hostBash, base.has); err != nil {
			return nil, err
		}
		t.file("/bin/sh", 0o755, bin)
		return t, nil
	})
}
