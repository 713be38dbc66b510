package images

import v1 "github.com/google/go-containerregistry/pkg/v1"

// nnpSource is the program of the e2e nonewprivs image: installed setuid
// root, it reports the effective uid it got, which is 0 unless the
// container runs with no_new_privs.
const nnpSource = `#include <stdio.h>
#include <unistd.h>

int main(void) {
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
`

// nnpLayer holds /usr/local/bin/nnp, setuid root.
func (b *builder) nnpLayer() (v1.Layer, error) {
	return b.layer("nonewprivs", func() (*tree, error) {
		bin, err := compileC([]byte(nnpSource))
		if err != nil {
			return nil, err
		}
		t := newTree()
		t.file("/usr/local/bin/nnp", 0o4755, bin)
		return t, nil
	})
}

func (b *builder) nnpImage() (v1.Image, error) {
	return b.image(imageSpec{
		id:      "nonewprivs",
		layers:  []func() (v1.Layer, error){b.busyboxLayer, b.nnpLayer},
		history: []string{busyboxHistory, "/usr/local/bin/nnp (setuid root, prints its effective uid)"},
		cmd:     []string{"/usr/local/bin/nnp"},
		workdir: "/",
		env:     []string{defaultPath},
	})
}
