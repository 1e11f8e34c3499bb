package sdharness

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// WriteFile writes data to the file at path inside the machine, creating
// missing parent directories with mode 0755 and giving the file mode. The
// file lands in the machine's overlay and never on the host. Symbolic links
// on the way resolve as they would inside the machine.
func (m *Machine) WriteFile(path string, data []byte, mode os.FileMode) error {
	f, err := m.create(path, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s in machine: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s in machine: %w", path, err)
	}
	return nil
}

// CopyFile copies the host file hostSrc to innerDst inside the machine, as
// WriteFile would write it.
func (m *Machine) CopyFile(hostSrc, innerDst string, mode os.FileMode) error {
	src, err := os.Open(hostSrc)
	if err != nil {
		return fmt.Errorf("copy %s into machine: %w", hostSrc, err)
	}
	defer src.Close()
	dst, err := m.create(innerDst, mode)
	if err != nil {
		return fmt.Errorf("copy %s into machine: %w", hostSrc, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("copy %s into machine as %s: %w", hostSrc, innerDst, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("copy %s into machine as %s: %w", hostSrc, innerDst, err)
	}
	return nil
}

// create opens the file at the absolute path p inside the machine for
// writing, truncated, with mode.
//
// Every lookup goes through openat2 with RESOLVE_IN_ROOT below the machine's
// root: a plain path below /proc/PID/root would resolve an absolute symbolic
// link such as /var/run -> /run against the host's root and write to the
// host.
func (m *Machine) create(p string, mode os.FileMode) (*os.File, error) {
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	if !path.IsAbs(p) {
		return nil, fmt.Errorf("invalid machine path %q: must be absolute", p)
	}
	rel := strings.TrimPrefix(path.Clean(p), "/")
	if rel == "" {
		return nil, fmt.Errorf("invalid machine path %q: must name a file, not the root", p)
	}
	root, err := unix.Open(m.Root(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root of machine pid %d: %w", m.pid, err)
	}
	defer unix.Close(root)
	if err := mkdirAllIn(root, path.Dir(rel)); err != nil {
		return nil, fmt.Errorf("create parent directories of %s in machine: %w", p, err)
	}
	fd, err := unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC | unix.O_CLOEXEC,
		Mode:    uint64(mode.Perm()),
		Resolve: unix.RESOLVE_IN_ROOT,
	})
	if err != nil {
		return nil, fmt.Errorf("create %s in machine: %w", p, err)
	}
	// The umask and an existing file's mode would otherwise win.
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("chmod %s in machine: %w", p, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// mkdirAllIn creates the directory rel and its missing parents below the
// directory root, resolving every component inside root.
func mkdirAllIn(root int, rel string) error {
	if rel == "." {
		return nil
	}
	prefix := ""
	for _, name := range strings.Split(rel, "/") {
		parent := prefix
		if parent == "" {
			parent = "."
		}
		prefix = path.Join(prefix, name)
		fd, err := openDirIn(root, prefix)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("open %s: %w", prefix, err)
		}
		parentFD, err := openDirIn(root, parent)
		if err != nil {
			return fmt.Errorf("open %s: %w", parent, err)
		}
		err = unix.Mkdirat(parentFD, name, 0o755)
		unix.Close(parentFD)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("mkdir %s: %w", prefix, err)
		}
		// A dangling symbolic link makes mkdirat fail with EEXIST and
		// the directory still missing.
		fd, err = openDirIn(root, prefix)
		if err != nil {
			return fmt.Errorf("open %s: %w", prefix, err)
		}
		unix.Close(fd)
	}
	return nil
}

// openDirIn opens the directory rel below root for path operations,
// resolving it inside root.
func openDirIn(root int, rel string) (int, error) {
	return unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT,
	})
}
