package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWholeFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.toml")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var seen string
	opts := Options{BeforeRename: func(tmp string) {
		// In the crash window the target still holds the old content.
		if b, _ := os.ReadFile(path); string(b) != "old" {
			t.Errorf("before the rename the file holds %q", b)
		}
		seen = tmp
	}}
	if err := Write(path, []byte("new"), 0o600, opts); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("file holds %q, want new", b)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
	if filepath.Dir(seen) != dir || filepath.Base(seen)[:len(".f.toml.tmp")] != ".f.toml.tmp" {
		t.Errorf("temporary file %q is not a .f.toml.tmp* beside the target", seen)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o644, Options{}); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed write left %d entries", len(entries))
	}
}
