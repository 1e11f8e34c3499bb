package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/kato-manager/kato-manager/units"
)

// packageUnitDir is where the deb and rpm packages put the unit files.
const packageUnitDir = "/usr/lib/systemd/system"

// EnsureUnits installs the unit files on first use: when systemd knows no
// kato@.service (from a package or an earlier install-units). The file where
// install-units or the packages put it answers without asking systemd,
// which looks through every unit directory to answer.
func (m *Manager) EnsureUnits(ctx context.Context) error {
	dirs := []string{m.Paths.VendorUnitDir}
	if !m.Paths.User {
		dirs = append(dirs, packageUnitDir)
	}
	for _, dir := range dirs {
		if st, err := os.Stat(filepath.Join(dir, units.InstanceTemplate)); err == nil && st.Mode().IsRegular() {
			return nil
		}
	}
	ok, err := m.Systemd.UnitFileExists(ctx, units.InstanceTemplate)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	_, err = m.InstallUnits(ctx)
	return err
}

// InstallUnits writes the scope's files (m.Paths.Templates) under the
// vendor directories, removes the copies earlier versions wrote into /etc,
// creates the kato user and directories, makes kato.toml readable by the
// kato group only, reloads systemd and enables kato.target and
// kg-workers.target, so that what is started comes back at boot, and
// enables and starts kato-queue.socket, root's way to the queue, and
// kato-liveness.timer, the liveness check. The user
// scope has no sysusers.d or tmpfiles.d entries and no FileOwner, so it
// does none of the root-only steps. It reports the files it wrote and
// removed.
func (m *Manager) InstallUnits(ctx context.Context) (*InstallResult, error) {
	res := &InstallResult{}
	templates, err := m.Paths.Templates()
	if err != nil {
		return res, err
	}
	var sysusers, tmpfiles string
	movedUnits := false
	for _, t := range templates {
		var dir, admin string
		switch t.Dir {
		case units.SystemdDir:
			dir, admin = m.Paths.VendorUnitDir, m.Paths.UnitDir
		case units.SysusersDir:
			dir, admin = m.Paths.SysusersDir, m.Paths.AdminSysusersDir
		case units.TmpfilesDir:
			dir, admin = m.Paths.TmpfilesDir, m.Paths.AdminTmpfilesDir
		default:
			return res, fmt.Errorf("template %s: unknown directory kind %q", t.Name, t.Dir)
		}
		path := filepath.Join(dir, t.Name)
		did, err := writeFileAtomic(path, t.Content, 0o644)
		if err != nil {
			return res, err
		}
		if did {
			res.Written = append(res.Written, path)
		}
		// A copy an earlier install-units wrote into /etc would shadow the
		// new file for good; one the administrator wrote stays.
		removed, err := removeVendorCopy(filepath.Join(admin, t.Name))
		if err != nil {
			return res, err
		}
		if removed != "" {
			res.Removed = append(res.Removed, removed)
			movedUnits = movedUnits || t.Dir == units.SystemdDir
		}
		switch t.Dir {
		case units.SysusersDir:
			sysusers = path
		case units.TmpfilesDir:
			tmpfiles = path
		}
	}
	run := m.RunTool
	if run == nil {
		run = execTool
	}
	if sysusers != "" {
		if err := run(ctx, "systemd-sysusers", sysusers); err != nil {
			return res, err
		}
	}
	if tmpfiles != "" {
		if err := run(ctx, "systemd-tmpfiles", "--create", tmpfiles); err != nil {
			return res, err
		}
	}
	if m.Config != nil && m.Config.Path != "" && m.Paths.FileOwner != "" {
		did, err := secureConfigFile(m.Config.Path, m.Paths.FileOwner)
		if err != nil {
			return res, err
		}
		if did {
			res.Secured = m.Config.Path
		}
	}
	if err := m.Systemd.Reload(ctx); err != nil {
		return res, err
	}
	enable := []string{units.InstanceTarget, units.WorkerTarget}
	if movedUnits {
		// The .wants links of enabled instances and workers point at the
		// removed copies: enabling them again points them at the new files.
		enable = append(enable, wantedBy(m.Paths.UnitDir, units.InstanceTarget, units.WorkerTarget)...)
	}
	if !m.Paths.User {
		// Root's queue commands and serve reach the queue through it;
		// the liveness timer restarts instances that stop answering.
		enable = append(enable, units.QueueSocket, units.LivenessTimer)
	}
	if err := m.Systemd.EnableUnits(ctx, enable); err != nil {
		return res, err
	}
	if !m.Paths.User {
		for _, u := range []string{units.QueueSocket, units.LivenessTimer} {
			if err := m.Systemd.StartUnit(ctx, u); err != nil {
				return res, fmt.Errorf("start %s: %w", u, err)
			}
		}
	}
	return res, nil
}

// InstallResult is what InstallUnits changed.
type InstallResult struct {
	Written []string // files written because they were missing or differed
	Removed []string // copies an earlier version left in /etc
	Secured string   // the configuration file, when it was made 0640 root:kato
}

// NewServiceTemplates reports whether the install wrote a new kato@.service
// or kg-worker@.service: what runs from the old one runs as it was started
// (its user, its sandbox) until it restarts.
func (r *InstallResult) NewServiceTemplates() bool {
	for _, f := range r.Written {
		if name := filepath.Base(f); name == units.InstanceTemplate || name == units.WorkerTemplate {
			return true
		}
	}
	return false
}

// RestartRunning restarts the instances and workers that run, as the
// packages do on an upgrade, so that they run on the unit files just
// installed: an instance started under an earlier kato@.service keeps that
// file's identity and sandbox until it restarts. A registered instance is
// restarted as Restart does, its files rendered again first (they may need
// to say more to the new units, such as the user of a long id); a worker or
// an unregistered instance is restarted as it is. Stopped ones stay
// stopped. It returns the units restarted; a failure to restart one does
// not keep the others from restarting.
func (m *Manager) RestartRunning(ctx context.Context) ([]string, error) {
	list, err := m.Systemd.ListUnits(ctx, units.InstancePattern, units.WorkerPattern)
	if err != nil {
		return nil, err
	}
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	var restarted []string
	var errs []error
	for _, u := range list {
		if u.ActiveState != "active" && u.ActiveState != "activating" && u.ActiveState != "reloading" {
			continue
		}
		if id, ok := units.InstanceID(u.Name); ok && reg.Instances[id] != nil {
			_, err = m.Restart(ctx, id, 0)
		} else {
			err = m.Systemd.RestartUnit(ctx, u.Name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restart %s: %w", u.Name, err))
			continue
		}
		restarted = append(restarted, u.Name)
	}
	return restarted, errors.Join(errs...)
}

// vendorHeader starts every file units.Templates holds.
const vendorHeader = "# Installed by kato-manager"

// removeVendorCopy removes path if it is a regular file kato-manager
// installed (it starts with vendorHeader), and returns its path if so.
func removeVendorCopy(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	head := make([]byte, len(vendorHeader))
	n, _ := io.ReadFull(f, head)
	info, statErr := f.Stat()
	f.Close()
	if statErr != nil || !info.Mode().IsRegular() || string(head[:n]) != vendorHeader {
		return "", nil
	}
	if err := removeFile(path); err != nil {
		return "", err
	}
	return path, nil
}

// wantedBy lists the units linked into the .wants directories of targets.
func wantedBy(unitDir string, targets ...string) []string {
	var out []string
	for _, t := range targets {
		entries, _ := os.ReadDir(filepath.Join(unitDir, t+".wants"))
		for _, e := range entries {
			out = append(out, e.Name())
		}
	}
	return out
}

// secureConfigFile makes the configuration file, which holds the MongoDB
// URL, 0640 root:group when it is still root:root, as `make install` leaves
// it before the group exists. A file whose group the administrator chose is
// left alone; a symbolic link is not followed.
func secureConfigFile(path, group string) (bool, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		return false, nil // no such group yet: nothing to give the file to
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return false, fmt.Errorf("group %s: gid %q is not a number", group, g.Gid)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			return false, nil
		}
		return false, fmt.Errorf("secure %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("secure %s: %w", path, err)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || !info.Mode().IsRegular() || st.Uid != 0 || st.Gid != 0 {
		return false, nil
	}
	if err := f.Chown(0, gid); err != nil {
		return false, fmt.Errorf("secure %s: %w", path, err)
	}
	if err := f.Chmod(0o640); err != nil {
		return false, fmt.Errorf("secure %s: %w", path, err)
	}
	return true, nil
}
