package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Paths are where the supervisor writes files on the host. The vendor
// files (unit templates, sysusers.d and tmpfiles.d entries) of a source
// install go under /usr/local/lib, where systemd looks after /etc: /etc
// stays the administrator's, for overrides. The package puts the same
// files under /usr/lib.
type Paths struct {
	UnitDir       string // per-instance drop-ins and .wants links: /etc/systemd/system
	EnvDir        string // per-instance environment files: /etc/kato/instances
	VendorUnitDir string // unit files install-units writes: /usr/local/lib/systemd/system
	SysusersDir   string // /usr/local/lib/sysusers.d
	TmpfilesDir   string // /usr/local/lib/tmpfiles.d
	// AdminSysusersDir and AdminTmpfilesDir are the administrator's
	// directories, where earlier versions wrote the vendor files;
	// install-units removes the files it wrote there.
	AdminSysusersDir string // /etc/sysusers.d
	AdminTmpfilesDir string // /etc/tmpfiles.d
}

// DefaultPaths are the paths of a normal install. EnvDir must match the
// EnvironmentFile= of kato@.service.
func DefaultPaths() Paths {
	return Paths{
		UnitDir:          "/etc/systemd/system",
		EnvDir:           "/etc/kato/instances",
		VendorUnitDir:    "/usr/local/lib/systemd/system",
		SysusersDir:      "/usr/local/lib/sysusers.d",
		TmpfilesDir:      "/usr/local/lib/tmpfiles.d",
		AdminSysusersDir: "/etc/sysusers.d",
		AdminTmpfilesDir: "/etc/tmpfiles.d",
	}
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
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
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
