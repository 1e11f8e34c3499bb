package sdharness

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Each machine gets a cgroup of its own, below the cgroup of the process that
// boots it, and a cgroup namespace rooted there. systemd inside then sees
// that cgroup as the root of its tree: two machines never share
// system.slice, and nothing is created in the host's cgroups outside the
// machine's own.

// machineCgroup is a freshly created cgroup directory, open so that unshare
// can be cloned straight into it.
type machineCgroup struct {
	path string
	dir  *os.File
}

// createCgroup creates the cgroup name below the cgroup of this process in
// the cgroup2 hierarchy.
func createCgroup(name string) (*machineCgroup, error) {
	mountPoint, mountRoot, err := cgroup2Mount("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	own, err := ownCgroup("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	rel, ok := strings.CutPrefix(own, mountRoot)
	if !ok || mountRoot != "/" && rel != "" && !strings.HasPrefix(rel, "/") {
		return nil, fmt.Errorf("cgroup %s of this process is outside the cgroup2 mount rooted at %s", own, mountRoot)
	}
	path := filepath.Join(mountPoint, rel, name)
	if err := os.Mkdir(path, 0o755); err != nil {
		return nil, fmt.Errorf("create machine cgroup: %w", err)
	}
	dir, err := os.Open(path)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("open machine cgroup: %w", err)
	}
	return &machineCgroup{path: path, dir: dir}, nil
}

// cgroup2Mount returns the mount point and root of the first cgroup2 file
// system listed in the mountinfo file at path.
func cgroup2Mount(path string) (mountPoint, root string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Fields: id parent dev root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		for i, field := range fields {
			if field == "-" && i+1 < len(fields) && i >= 5 {
				if fields[i+1] == "cgroup2" {
					return unescapeMountinfo(fields[4]), unescapeMountinfo(fields[3]), nil
				}
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("find cgroup2 mount: read %s: %w", path, err)
	}
	return "", "", fmt.Errorf("find cgroup2 mount: no cgroup2 file system in %s", path)
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) mountinfo
// uses in paths.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ownCgroup returns the cgroup2 path of this process from the cgroup file at
// path.
func ownCgroup(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("find own cgroup: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if cg, ok := strings.CutPrefix(line, "0::"); ok {
			return cg, nil
		}
	}
	return "", fmt.Errorf("find own cgroup: no cgroup2 entry in %s", path)
}

// killCgroup kills every process in the cgroup tree at path. Kernels before
// 5.14 lack cgroup.kill; there killing PID 1 has to suffice.
func killCgroup(path string) error {
	err := os.WriteFile(filepath.Join(path, "cgroup.kill"), []byte("1"), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kill machine cgroup %s: %w", path, err)
	}
	return nil
}

// removeCgroup waits until the cgroup tree at path is empty of processes and
// removes its directories, deepest first.
func removeCgroup(path string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := removeCgroupTree(path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove machine cgroup: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeCgroupTree makes one attempt at removing the cgroup tree at path.
func removeCgroupTree(path string) error {
	var dirs []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
