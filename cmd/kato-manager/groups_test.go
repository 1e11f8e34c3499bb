package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiffShowsGroups: diff of a file whose groups are not stored yet says
// so and exits 1, as apply would change something.
func TestDiffShowsGroups(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(file, []byte("groups:\n  api: {front: 9300, balance: leastconn}\ninstances: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "diff", "-f", file)
	if code != 1 || !strings.Contains(stdout, "+ group api: front 9300, balance leastconn") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
