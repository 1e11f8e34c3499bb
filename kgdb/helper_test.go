package kgdb

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestEnsureDirOnlyBelowRootOwnedDirs: the fork makes the database's
// directory only below a directory only root can write.
func TestEnsureDirOnlyBelowRootOwnedDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "kg")
	if err := (Access{User: "nobody"}).ensureDir(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); st.Uid != 65534 || info.Mode().Perm() != 0o750 {
		t.Errorf("made %v owned by %d", info.Mode(), st.Uid)
	}
	// A parent another user can write: that user could swap the directory
	// for a link between mkdir and chown.
	open := t.TempDir()
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := (Access{User: "nobody"}).ensureDir(filepath.Join(open, "kg"), 65534, 65534); err == nil {
		t.Fatal("created a queue directory below a world-writable directory")
	}
}
