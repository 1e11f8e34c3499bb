// Package atomicfile owns the one way kato-manager replaces a file: so that
// a reader, or a crash at any moment, finds the old content or the new,
// never a part of either.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Options tune Write; the zero value is the usual case.
type Options struct {
	// TempPrefix starts the name of the temporary file written beside the
	// target; empty means "." + the target's name + ".tmp". A caller that
	// cleans up after a crashed writer globs for it.
	TempPrefix string
	// BeforeRename, when set, runs with the temporary file's path once it
	// is written and synced, just before the rename: the window in which a
	// crash must leave the old file. Tests use it.
	BeforeRename func(tmpPath string)
}

// Write replaces path with data, with the permission bits mode: it writes a
// temporary file in the same directory, syncs it, renames it over path and
// syncs the directory, so that the rename survives a crash. The directory
// must exist.
func Write(path string, data []byte, mode os.FileMode, opts Options) (err error) {
	dir := filepath.Dir(path)
	prefix := opts.TempPrefix
	if prefix == "" {
		prefix = "." + filepath.Base(path) + ".tmp"
	}
	tmp, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if opts.BeforeRename != nil {
		opts.BeforeRename(tmp.Name())
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
