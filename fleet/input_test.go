package fleet

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "fleet.toml")
	if err := os.WriteFile(file, []byte("[[instances]]\nid = \"a\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, stdinName, stdin string
		wantName, wantData, wantErr  string
	}{
		{name: "a file", file: file, wantName: file, wantData: "[[instances]]\nid = \"a\"\n"},
		{name: "stdin", file: "-", stdin: "instances: []\n", wantName: StdinName, wantData: "instances: []\n"},
		{name: "stdin with a name", file: "-", stdinName: "hosts.json", stdin: "{}", wantName: "hosts.json", wantData: "{}"},
		{name: "stdin too large", file: "-", stdin: strings.Repeat("x", MaxStdinBytes+1), wantErr: "read fleet file stdin.yaml: more than 16777216 bytes"},
		{name: "a missing file", file: filepath.Join(dir, "none.yaml"), wantErr: "read fleet file " + filepath.Join(dir, "none.yaml") + ": open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, data, err := ReadInput(tc.file, tc.stdinName, bytes.NewBufferString(tc.stdin))
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one beginning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || name != tc.wantName || string(data) != tc.wantData {
				t.Errorf("ReadInput = %q, %q, %v; want %q, %q", name, data, err, tc.wantName, tc.wantData)
			}
		})
	}
}
