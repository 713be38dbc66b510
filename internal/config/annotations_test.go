package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestAllowedAnnotationsKey(t *testing.T) {
	tests := []struct {
		toml    string
		wantErr string // substring; "" = no error
		want    []string
	}{
		{toml: "[runtime.handlers.runc]\npath = \"runc\"\n", want: nil},
		{toml: "[runtime.handlers.runc]\npath = \"runc\"\nallowed_annotations = [\"io.crid.*\", \"run.oci.keep_original_groups\", \"cdi.k8s.io/*\"]\n",
			want: []string{"io.crid.*", "run.oci.keep_original_groups", "cdi.k8s.io/*"}},
		{toml: "[runtime.handlers.runc]\npath = \"runc\"\nallowed_annotations = [\"io.crid.[umask\"]\n",
			wantErr: "key runtime.handlers.runc.allowed_annotations[0]: pattern \"io.crid.[umask\": syntax error in pattern"},
		{toml: "[runtime.handlers.runc]\npath = \"runc\"\nallowed_annotations = [\"io.crid.umask\", \"\"]\n",
			wantErr: "key runtime.handlers.runc.allowed_annotations[1]: empty pattern"},
		// A malformed tail is caught even when the pattern fails to match early.
		{toml: "[runtime.handlers.runc]\npath = \"runc\"\nallowed_annotations = [\"x\\\\\"]\n",
			wantErr: "allowed_annotations[0]"},
	}
	for _, tt := range tests {
		c := Default()
		err := Parse([]byte(tt.toml), c)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.toml, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.toml, err)
			continue
		}
		if got := c.Runtime.Handlers["runc"].AllowedAnnotations; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: allowed_annotations %q, want %q", tt.toml, got, tt.want)
		}
	}
}
