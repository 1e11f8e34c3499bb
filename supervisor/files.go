package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/atomicfile"
)

// Paths are the scope the supervisor works in and where it writes files:
// config.SystemPaths or config.UserPaths.
type Paths = config.Paths

// DefaultPaths are the paths of a normal install, the system scope.
func DefaultPaths() Paths {
	return config.SystemPaths()
}

// writeFileAtomic replaces path with data so that a reader, or a crash,
// sees the old content or the new, never a part. It reports whether the
// content changed.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return false, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := atomicfile.Write(path, data, mode, atomicfile.Options{}); err != nil {
		return false, err
	}
	return true, nil
}

// removeFile removes path; a file that is already gone is not an error.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
