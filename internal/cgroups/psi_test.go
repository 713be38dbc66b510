package cgroups

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParsePSI(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     *PSI
		wantErr  bool
	}{
		{name: "both lines", in: "some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=789\n",
			want: &PSI{Some: PSILine{Avg10: 1.5, Avg60: 0.25, TotalMicros: 123456}, Full: PSILine{Avg10: 0.1, TotalMicros: 789}}},
		{name: "cpu before 5.13: no full line", in: "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n",
			want: &PSI{Some: PSILine{TotalMicros: 42}}},
		{name: "unknown field ignored", in: "some avg10=0.00 avg60=0.00 avg300=0.00 total=1 extra=9\n",
			want: &PSI{Some: PSILine{TotalMicros: 1}}},
		{name: "empty", in: "", wantErr: true},
		{name: "unknown line", in: "most avg10=0.00\n", wantErr: true},
		{name: "not key=value", in: "some avg10\n", wantErr: true},
		{name: "bad number", in: "some total=-1\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePSI(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsePSI(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != *tc.want {
				t.Errorf("parsePSI(%q) = %+v, want %+v", tc.in, *got, *tc.want)
			}
		})
	}
}

func TestReadPSIMissingFile(t *testing.T) {
	dir := t.TempDir()
	got, err := readPSI(dir, "io")
	if err != nil || got != nil {
		t.Fatalf("readPSI of a kernel without PSI = %v, %v; want nil, nil", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "io.pressure"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readPSI(dir, "io"); err == nil {
		t.Error("readPSI of a malformed file: no error")
	}
}
