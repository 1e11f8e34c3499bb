package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
)

// InstanceView is one row of `kato-manager list`: the registry entry and
// what systemd and /proc say of it now.
type InstanceView struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Unit        string `json:"unit"`
	ActiveState string `json:"active_state"`
	SubState    string `json:"sub_state"`
	PID         int32  `json:"pid"`
	APIPort     int    `json:"api_port"`
	ZMQPort     int    `json:"zmq_port"`
	// Processor names the processor of kato.toml the instance runs
	// (config.DefaultProcessor for [processor]); Generation is its
	// generation, "" when kato.toml no longer has it.
	Processor     string            `json:"processor"`
	Generation    string            `json:"generation"`
	Network       string            `json:"network"`
	Group         string            `json:"group"`
	Parameters    config.Parameters `json:"parameters"`
	Since         time.Time         `json:"since,omitzero"`
	UptimeSeconds int64             `json:"uptime_seconds"`
	MemoryBytes   uint64            `json:"memory_bytes"`
	Registered    bool              `json:"registered"`
	// Front is the instance's place in a group's front, when a front has
	// a member of its id.
	Front *Membership `json:"front,omitempty"`
}

// State is the short state shown in tables: "running", "stopped",
// "failed", "activating/auto-restart" and the like.
func (v InstanceView) State() string {
	switch {
	case v.ActiveState == "active" && v.SubState == "running":
		return "running"
	case v.ActiveState == "inactive" || v.ActiveState == "":
		return "stopped"
	case v.SubState == "" || v.SubState == v.ActiveState:
		return v.ActiveState
	default:
		return v.ActiveState + "/" + v.SubState
	}
}

// List returns every registered instance with its live state, from one
// ListUnitsByPatterns call and one pass over /proc.
func (m *Manager) List(ctx context.Context) ([]InstanceView, error) {
	snap, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return snap.views, nil
}

// Listing is the instances and the fronts, read in one listing.
type Listing struct {
	Instances []InstanceView `json:"instances"`
	Fronts    []FrontView    `json:"fronts"`
}

// ListAll returns what List does and the fronts, from the same listing of
// units; each running front's stats socket is read once.
func (m *Manager) ListAll(ctx context.Context) (*Listing, error) {
	snap, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return &Listing{Instances: snap.views, Fronts: snap.fronts}, nil
}

// snapshot is what List reads, kept for Status to reuse rather than read
// the registry and scan /proc a second time.
type snapshot struct {
	reg    *config.Registry
	views  []InstanceView
	procs  map[string]UnitProcesses
	byUnit map[string]UnitState
	fronts []FrontView
}

func (m *Manager) snapshot(ctx context.Context) (*snapshot, error) {
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	states, err := m.Systemd.ListUnits(ctx, units.InstancePattern, units.FrontPattern)
	if err != nil {
		return nil, err
	}
	states, frontUnits := splitFronts(states)
	fronts := m.readFronts(ctx, frontUnits)
	byUnit := make(map[string]UnitState, len(states))
	for _, s := range states {
		byUnit[s.Name] = s
	}
	// Only units that may have processes are looked for: a unit that is
	// not loaded or is inactive has none, and with no such unit /proc is
	// not read at all.
	names := make([]string, 0, len(reg.Instances))
	for _, inst := range reg.Instances {
		if s, ok := byUnit[inst.Unit]; ok && s.ActiveState != "inactive" {
			names = append(names, inst.Unit)
		}
	}
	procs, err := m.Processes.ByUnit(ctx, names)
	if err != nil {
		return nil, err
	}
	views := m.instanceViews(reg, byUnit, procs, m.now())
	in := memberships(fronts)
	for i := range views {
		views[i].Front = in[views[i].ID]
	}
	return &snapshot{reg: reg, views: views, procs: procs, byUnit: byUnit, fronts: fronts}, nil
}

// instanceViews joins the registry with the units' states and processes.
func (m *Manager) instanceViews(reg *config.Registry, byUnit map[string]UnitState, procs map[string]UnitProcesses, now time.Time) []InstanceView {
	views := make([]InstanceView, 0, len(reg.Instances))
	for _, inst := range reg.Sorted() {
		v := InstanceView{ID: inst.ID, Name: inst.Name, Unit: inst.Unit, APIPort: inst.APIPort, ZMQPort: inst.ZMQPort, Registered: true,
			Processor: inst.ProcessorShown(), Network: inst.Network, Group: inst.Group, Parameters: inst.Parameters}
		if p, err := m.Config.ProcessorNamed(inst.Processor); err == nil {
			v.Generation = p.Generation
		}
		if s, ok := byUnit[inst.Unit]; ok {
			v.ActiveState, v.SubState = s.ActiveState, s.SubState
		} else {
			v.ActiveState, v.SubState = "inactive", "dead"
		}
		if p, ok := procs[inst.Unit]; ok && v.ActiveState == "active" {
			v.PID, v.MemoryBytes, v.Since = p.MainPID, p.RSS, p.Started
			if !p.Started.IsZero() {
				v.UptimeSeconds = int64(now.Sub(p.Started).Seconds())
			}
		}
		views = append(views, v)
	}
	return views
}

// ServiceState is a shared service unit's state.
type ServiceState struct {
	Unit        string `json:"unit"`
	LoadState   string `json:"load_state"`
	ActiveState string `json:"active_state"`
	SubState    string `json:"sub_state"`
}

// InstanceStatus is an instance's health as `kato-manager status` shows it.
type InstanceStatus struct {
	InstanceView
	Restarts uint32 `json:"restarts"`
	// LivenessRestarts are the restarts the liveness check made.
	LivenessRestarts uint64 `json:"liveness_restarts"`
	Result           string `json:"result"`
	// APIListening says the processor listens on its port: the API port,
	// or 8000 inside its namespace on a private network.
	APIListening bool `json:"api_listening"`
	// Answering says the processor's health request answered 200.
	Answering bool `json:"answering"`
	// Health is what the health request got: "200", "HTTP 500" or the error.
	Health string `json:"health"`
	// APIHolder is the pid listening on the API port when it is not one of
	// the instance's own processes.
	APIHolder int32 `json:"api_holder,omitempty"`
	// StaleSettings is set when the instance's process was started with
	// other settings than its files say now.
	StaleSettings bool `json:"stale_settings"`
	// StartLimitHit is set when systemd gave up restarting the instance.
	StartLimitHit bool `json:"start_limit_hit"`
	// Enabled is whether the instance comes back at boot.
	Enabled bool   `json:"enabled"`
	Problem string `json:"problem,omitempty"`
}

// Drift is where the registry and systemd disagree.
type Drift struct {
	// MissingUnits are registered instances whose unit files are gone.
	MissingUnits []string `json:"missing_units"`
	// OrphanUnits are instance units and files with no registry entry.
	OrphanUnits []string `json:"orphan_units"`
	// NotRunning are registered instances whose unit is not running.
	NotRunning []string `json:"not_running"`
	// StaleSettings are registered instances whose process was started
	// with other settings than their entry and kato.toml say now (an
	// apply stopped before its restarts, or kato.toml changed since).
	StaleSettings []string `json:"stale_settings"`
}

// Empty reports whether registry and systemd agree.
func (d Drift) Empty() bool {
	return len(d.MissingUnits) == 0 && len(d.OrphanUnits) == 0 && len(d.NotRunning) == 0 && len(d.StaleSettings) == 0
}

// Status is the whole picture `kato-manager status` prints.
type Status struct {
	SystemdReachable bool             `json:"systemd_reachable"`
	SystemdVersion   string           `json:"systemd_version,omitempty"`
	SystemdError     string           `json:"systemd_error,omitempty"`
	Services         []ServiceState   `json:"services"`
	Instances        []InstanceStatus `json:"instances"`
	// Fronts are the groups' fronts, each with its problem if it has one.
	Fronts []FrontView `json:"fronts"`
	Drift  Drift       `json:"drift"`
	// Warnings are what does not stop anything now but will bite later,
	// such as an instance that will not come back at boot.
	Warnings []string `json:"warnings"`
}

// Healthy reports whether every instance runs and listens, every shared
// service is up and there is no drift.
func (s *Status) Healthy() bool {
	if !s.SystemdReachable || !s.Drift.Empty() {
		return false
	}
	for _, svc := range s.Services {
		if svc.ActiveState != "active" {
			return false
		}
	}
	for _, i := range s.Instances {
		if i.Problem != "" {
			return false
		}
	}
	for _, f := range s.Fronts {
		if f.Problem != "" {
			return false
		}
	}
	return true
}

// Status inspects systemd, the shared services and every instance,
// including whether each API port is really held by the instance's
// processor.
func (m *Manager) Status(ctx context.Context) (*Status, error) {
	st := &Status{Services: []ServiceState{}, Instances: []InstanceStatus{}, Fronts: []FrontView{}, Warnings: []string{}}
	version, err := m.Systemd.Version(ctx)
	if err != nil {
		st.SystemdError = err.Error()
		return st, nil
	}
	st.SystemdReachable, st.SystemdVersion = true, version
	for _, s := range m.Config.Services.Units {
		u, err := m.Systemd.Unit(ctx, s)
		if err != nil {
			return nil, err
		}
		st.Services = append(st.Services, ServiceState{Unit: s, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState})
	}
	snap, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	st.Fronts = snap.fronts
	// Restarts, result and main process of every unit that is not
	// stopped: from m.Services where systemd signalled no change since,
	// else one request per unit, all sent at once (systemd has no listing
	// that carries them). A stopped unit has no process, and what its
	// last run counted is not asked for.
	list := make([]UnitState, 0, len(snap.byUnit))
	var live []UnitState
	for _, u := range snap.byUnit {
		list = append(list, u)
		if u.ActiveState != "inactive" {
			live = append(live, u)
		}
	}
	if m.Services != nil {
		// The cache keeps only the units it is given: give it all.
		live = list
	}
	if err := m.Services.fill(ctx, m.Systemd, live); err != nil {
		return nil, err
	}
	for _, u := range live {
		snap.byUnit[u.Name] = u
	}
	// The sockets of every instance's processes, each network
	// namespace's table read once.
	var pids []int32
	for _, v := range snap.views {
		pids = append(pids, ownPIDs(snap.procs[v.Unit], snap.byUnit[v.Unit])...)
	}
	own := map[int32]map[int]bool{}
	if len(pids) > 0 {
		if own, err = m.Ports.ListeningByEach(ctx, pids); err != nil {
			return nil, err
		}
	}
	// Who holds a port an instance's processes do not: asked of every
	// process's sockets, so only when a running instance lacks its port.
	var holders map[int]int32
	holderOf := func(port int) (int32, bool, error) {
		if holders == nil {
			h, err := m.Ports.Listening(ctx)
			if err != nil {
				return 0, false, err
			}
			holders = h
		}
		pid, ok := holders[port]
		return pid, ok, nil
	}
	wanted := wantedSet(m.Paths.UnitDir, units.InstanceTarget)
	files := m.readInstanceFiles()
	// The health requests go out together: each may take probeTimeout.
	health := make([]string, len(snap.views))
	var wg sync.WaitGroup
	for i, v := range snap.views {
		inst := snap.reg.Instances[v.ID]
		su, err := m.setup(*inst)
		if err != nil || v.ActiveState != "active" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, err := m.probe(ctx, su.readyPort, su.proc.ReadyPath(v.ID), probeTimeout)
			switch {
			case err != nil:
				health[i] = err.Error()
			case status == 200:
				health[i] = "200"
			default:
				health[i] = fmt.Sprintf("HTTP %d", status)
			}
		}()
	}
	wg.Wait()
	ids := make([]string, len(snap.views))
	for i, v := range snap.views {
		ids[i] = v.ID
	}
	running := m.checkRunning(snap.reg, ids, snap.byUnit, snap.procs)
	liveness, err := m.LivenessRestarts()
	if err != nil {
		st.Warnings = append(st.Warnings, "the liveness restarts cannot be read: "+err.Error())
	}
	for _, id := range running.Unrecorded {
		st.Warnings = append(st.Warnings, fmt.Sprintf("instance %s runs without a record of the settings it was started with (started by an earlier version, or its environment cannot be read): run `kato-manager restart %s` to record them", id, id))
	}
	// A failed unit's start limit needs its StartLimitBurst, and a unit
	// not linked into kato.target.wants its enablement as systemd sees it
	// (another target's link, a runtime one): only those units are asked
	// for their own properties, all at once.
	var ask []string
	asked := map[string]int{}
	for _, v := range snap.views {
		if snap.byUnit[v.Unit].ActiveState == "failed" || !wanted[v.Unit] {
			asked[v.Unit] = len(ask)
			ask = append(ask, v.Unit)
		}
	}
	full := make([]UnitState, len(ask))
	errs := make([]error, len(ask))
	var reads sync.WaitGroup
	for k, name := range ask {
		reads.Go(func() { full[k], errs[k] = m.Systemd.Unit(ctx, name) })
	}
	reads.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, v := range snap.views {
		u, ok := snap.byUnit[v.Unit]
		if !ok {
			u = UnitState{Name: v.Unit, ActiveState: "inactive", SubState: "dead"}
		}
		u.UnitFileState = "enabled"
		if k, ok := asked[v.Unit]; ok {
			u.StartLimitBurst, u.UnitFileState = full[k].StartLimitBurst, full[k].UnitFileState
		}
		is := InstanceStatus{InstanceView: v, Restarts: u.NRestarts, LivenessRestarts: liveness[v.ID], Result: u.Result, Health: health[i], Answering: health[i] == "200",
			StartLimitHit: u.StartLimitHit(), Enabled: enabledAtBoot(u.UnitFileState)}
		is.ActiveState, is.SubState = u.ActiveState, u.SubState
		port := v.APIPort
		mine := ownPIDs(snap.procs[v.Unit], u)
		if v.Network == config.NetworkPrivate {
			// The host port is systemd's socket; the processor listens
			// inside its own namespace.
			port = config.PrivateRESTPort
			is.APIListening = u.MainPID != 0 && own[int32(u.MainPID)][port]
		} else {
			for _, pid := range mine {
				is.APIListening = is.APIListening || own[pid][port]
			}
			if !is.APIListening && u.Active() {
				holder, held, err := holderOf(port)
				if err != nil {
					return nil, err
				}
				if held && holder != 0 && !slices.Contains(mine, holder) {
					is.APIHolder = holder
				}
			}
		}
		missing := !files.has(v.ID)
		switch {
		case missing:
			is.Problem = "unit files missing (run `kato-manager gc`)"
		case is.StartLimitHit:
			is.Problem = fmt.Sprintf("systemd gave up restarting it (start limit hit); see `kato-manager logs %s`, fix the cause, then `kato-manager restart %s`", v.ID, v.ID)
		case u.ActiveState != "active":
			is.Problem = "not running"
		case slices.Contains(running.Stale, v.ID):
			is.StaleSettings = true
			is.Problem = fmt.Sprintf("runs with other settings than its registry entry and kato.toml give it now (run `kato-manager restart %s`, or apply its fleet file)", v.ID)
		case v.Generation == "":
			is.Problem = fmt.Sprintf("processor %s is not in kato.toml", v.Processor)
		case is.APIHolder != 0:
			is.Problem = fmt.Sprintf("API port %d held by pid %d, not by the instance", v.APIPort, is.APIHolder)
		case !is.APIListening:
			is.Problem = fmt.Sprintf("not listening on port %d", port)
		case !is.Answering:
			is.Problem = fmt.Sprintf("listening but not answering its health request (%s)", is.Health)
		}
		if u.Active() && !is.Enabled {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s runs but is not enabled: it will not come back at boot (run `systemctl enable %s`)", v.Unit, v.Unit))
		}
		st.Instances = append(st.Instances, is)
		if missing {
			st.Drift.MissingUnits = append(st.Drift.MissingUnits, v.ID)
		} else if slices.Contains(running.NotRunning, v.ID) {
			st.Drift.NotRunning = append(st.Drift.NotRunning, v.ID)
		}
		if slices.Contains(running.Stale, v.ID) {
			st.Drift.StaleSettings = append(st.Drift.StaleSettings, v.ID)
		}
	}
	st.Drift.OrphanUnits = m.orphansWith(snap.reg, list, files)
	if err := m.targetWarnings(ctx, st, len(snap.views) > 0); err != nil {
		return nil, err
	}
	return st, nil
}

// enabledAtBoot reports whether a unit file state brings the unit up at
// boot: enabled, or enabled-runtime until the next boot.
func enabledAtBoot(state string) bool {
	return state == "enabled" || state == "enabled-runtime" || state == "alias"
}

// targetWarnings warns when kato.target or kg-workers.target is not enabled
// while it has members: they would not come back at boot.
func (m *Manager) targetWarnings(ctx context.Context, st *Status, instances bool) error {
	workers, err := m.Systemd.ListUnits(ctx, units.WorkerPattern)
	if err != nil {
		return err
	}
	hasWorkers := false
	for _, w := range workers {
		hasWorkers = hasWorkers || w.Active()
	}
	for _, t := range []struct {
		target  string
		members bool
		what    string
	}{
		{units.InstanceTarget, instances, "instances"},
		{units.WorkerTarget, hasWorkers, "KG workers"},
	} {
		if !t.members {
			continue
		}
		u, err := m.Systemd.Unit(ctx, t.target)
		if err != nil {
			return err
		}
		if !enabledAtBoot(u.UnitFileState) {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s is %s, not enabled: the %s will not come back at boot (run `systemctl enable %s`)", t.target, orUnknown(u.UnitFileState), t.what, t.target))
		}
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// ownPIDs are the processes of a unit: those found in its cgroup and
// the main process systemd names.
func ownPIDs(p UnitProcesses, u UnitState) []int32 {
	pids := slices.Clone(p.PIDs)
	if u.MainPID != 0 && !slices.Contains(pids, int32(u.MainPID)) {
		pids = append(pids, int32(u.MainPID))
	}
	return pids
}

// wantedSet is the set of units linked into target's .wants directory
// under unitDir, read with one directory read for all.
func wantedSet(unitDir, target string) map[string]bool {
	out := map[string]bool{}
	if unitDir == "" {
		return out
	}
	for _, u := range wantedBy(unitDir, target) {
		out[u] = true
	}
	return out
}
