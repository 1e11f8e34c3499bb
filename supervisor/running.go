package supervisor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
)

// runCheck is how the units of registered instances compare with their
// registry entries: what apply converges on and status reports.
type runCheck struct {
	// NotRunning are instances whose unit is not running: stopped,
	// failed or waiting to be restarted by systemd.
	NotRunning []string
	// Stale are instances whose process was started with other settings
	// than their registry entry and kato.toml render now.
	Stale []string
	// Unrecorded are running instances whose process carries no record of
	// its settings (started by an earlier version) or whose environment
	// cannot be read: nothing is known of what they run.
	Unrecorded []string
}

// checkRunning compares the instances ids of reg with their units, given
// the units' states (from one listing; a unit absent is not loaded) and
// their processes (from one scan).
func (m *Manager) checkRunning(reg *config.Registry, ids []string, states map[string]UnitState, procs map[string]UnitProcesses) runCheck {
	var c runCheck
	for _, id := range ids {
		inst, ok := reg.Instances[id]
		if !ok {
			continue
		}
		s, loaded := states[inst.Unit]
		if !loaded || !runs(s) {
			c.NotRunning = append(c.NotRunning, id)
			continue
		}
		su, err := m.setup(*inst)
		if err != nil {
			continue // status reports the missing processor
		}
		r, err := su.render()
		if err != nil {
			continue
		}
		got, known := m.runningDigest(procs[inst.Unit].MainPID)
		switch {
		case !known:
			c.Unrecorded = append(c.Unrecorded, id)
		case got != r.digest:
			c.Stale = append(c.Stale, id)
		}
	}
	return c
}

// runs says whether a unit's processor runs or is starting, rather than
// stopped, failed or waiting for systemd to restart it.
func runs(u UnitState) bool {
	return u.Active() && u.SubState != "auto-restart"
}

// runningDigest reads units.SettingsVariable from the environment the
// process pid was started with (/proc/PID/environ, which root, or the
// user of a --user manager, may read): the digest of the settings
// kato-manager had rendered when systemd started it. A later
// daemon-reload changes what systemd shows of the unit, never this.
func (m *Manager) runningDigest(pid int32) (string, bool) {
	if pid <= 0 {
		return "", false
	}
	root := m.ProcRoot
	if root == "" {
		root = "/proc"
	}
	data, err := os.ReadFile(filepath.Join(root, strconv.Itoa(int(pid)), "environ"))
	if err != nil {
		return "", false
	}
	prefix := []byte(units.SettingsVariable + "=")
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			return string(v), true
		}
	}
	return "", false
}

// runningState lists the units of the instances ids and scans the
// processes of those that run, for checkRunning.
func (m *Manager) runningState(ctx context.Context, reg *config.Registry, ids []string) (map[string]UnitState, map[string]UnitProcesses, error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	names := make([]string, 0, len(ids))
	for _, id := range ids {
		if inst, ok := reg.Instances[id]; ok {
			names = append(names, inst.Unit)
		}
	}
	list, err := m.Systemd.ListUnits(ctx, names...)
	if err != nil {
		return nil, nil, err
	}
	states := make(map[string]UnitState, len(list))
	var running []string
	for _, u := range list {
		states[u.Name] = u
		if runs(u) {
			running = append(running, u.Name)
		}
	}
	if len(running) == 0 {
		return states, nil, nil
	}
	procs, err := m.Processes.ByUnit(ctx, running)
	if err != nil {
		return nil, nil, err
	}
	return states, procs, nil
}
