package config

import (
	"errors"
	"fmt"
	"path"
)

// validAnnotationPattern fails when p is not a path.Match pattern, the
// syntax of runtime.handlers.<name>.allowed_annotations (oci.AnnotationAllowed
// matches with it).
func validAnnotationPattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	// path.Match checks the whole pattern's syntax even when it does not match.
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", p, err)
	}
	return nil
}
