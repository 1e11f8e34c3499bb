package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/units"
)

// DefaultParallel is how many instances a batch starts at once when
// neither kato.toml nor the command line says: all of them (up to
// config.MaxParallel), as one `systemctl start` of their units does. A
// processor's start is mostly waiting (for systemd to set up its sandbox,
// for its code to load, for its health request): with a bound of 32, the
// 33rd of a fleet of processors that take a second to answer waited a
// second for the first to be ready, and apply of 50 took 1.02 to 1.25 times
// one `systemctl start` of the same units (make bench). A smaller bound
// brings a fleet up in waves, for processors that each load the machine
// while they start.
func DefaultParallel() int {
	return config.MaxParallel
}

// BatchOptions are the options of the commands that start many instances
// at once: apply, and start and restart of a group.
type BatchOptions struct {
	// Parallel bounds how many instances are starting (their systemd job
	// queued, their health request not yet answered) at once; zero means
	// config's batch.parallel, or DefaultParallel.
	Parallel int
	// Timeout bounds each instance's wait for readiness; zero means its
	// processor's ready_timeout.
	Timeout time.Duration
	// Progress, when set, is called as each instance moves on; calls come
	// from several goroutines, one at a time.
	Progress func(Progress)
	// Surge is, for apply, how many extra members of a group whose front
	// runs start before its changed members are rolled, as RollOptions'
	// Surge; zero rolls them one at a time, SurgeOfGroup as the group says.
	Surge int
}

// Progress is one instance of a batch moving on.
type Progress struct {
	ID      string
	Action  fleet.Action
	Phase   Phase
	Err     error
	Elapsed time.Duration // since the batch began
	// Total is how many instances the batch handles.
	Total int
}

// Phase is where an instance of a batch is.
type Phase string

// The phases of an instance in a batch.
const (
	PhaseStarting   Phase = "starting"
	PhaseReady      Phase = "ready"
	PhaseFailed     Phase = "failed"
	PhaseRolledBack Phase = "rolled back"
	PhaseRemoved    Phase = "removed"
)

// ApplyOptions are apply's options.
type ApplyOptions struct {
	BatchOptions
	// Prune removes the registered instances the file does not name.
	Prune bool
	// Groups, when SetGroups, replace the groups of the registry (a fleet
	// file's groups:), which win over kato.toml's of the same name.
	Groups    map[string]config.Group
	SetGroups bool
	// AfterRegistry, when set, is called once the registry holds the new
	// settings and before any unit is started or restarted; tests use it to
	// stop an apply there.
	AfterRegistry func(ctx context.Context)
}

// ApplyResult is what Apply did: its plan, the instances whose step was
// done, and those whose step failed and was rolled back.
type ApplyResult struct {
	// GroupsChanged says the file's groups were stored.
	GroupsChanged bool
	Plan          fleet.Plan
	Done          []string
	Failed        []BatchFailure
}

// BatchFailure is one instance of a batch that failed.
type BatchFailure struct {
	ID     string
	Action fleet.Action
	Err    error
	// Journal holds the unit's last log lines.
	Journal []string
	// RollbackErr is set when undoing the instance's step failed too.
	RollbackErr error
}

// ErrBatchFailed is returned, wrapped, when some instances of a batch
// failed and the others were done.
var ErrBatchFailed = errors.New("some instances failed")

// PlanFleet returns what Apply would do with the fleet file at path (its
// instances resolved into want), changing nothing: the file against the
// registry, and the units that do not run what the registry says.
func (m *Manager) PlanFleet(ctx context.Context, path string, want []fleet.Desired, prune bool) (fleet.Plan, error) {
	reg, err := m.Registry.Load()
	if err != nil {
		return fleet.Plan{}, err
	}
	m.dropUnusedZMQPorts(reg)
	plan, err := fleet.PlanFleet(path, want, reg, prune)
	if err != nil {
		return fleet.Plan{}, err
	}
	return plan, m.planRestarts(ctx, reg, &plan)
}

// batchItem is one instance a batch starts or restarts.
type batchItem struct {
	inst    config.Instance
	action  fleet.Action
	restart bool // restart the unit rather than start it
	// old is the registry entry before a Change, to roll back to.
	old *config.Instance
	// wasActive says whether the unit ran before the batch.
	wasActive bool
	// notReached says a rolling restart stopped before this member.
	notReached bool
	err        error
}

// failure is the item's error as a BatchFailure, with the unit's last log
// lines when it has them.
func (it *batchItem) failure() BatchFailure {
	f := BatchFailure{ID: it.inst.ID, Action: it.action, Err: it.err}
	var se *StartError
	if errors.As(it.err, &se) {
		f.Err, f.Journal = se.Err, se.Journal
	}
	return f
}

// Apply makes the registered fleet what the fleet file at path says (its
// instances resolved into want): it creates the instances that are missing,
// re-renders and restarts those whose settings differ, leaves the others
// alone and, with Prune, removes the registered instances the file does not
// name. Everything the plan needs (ports, processors) is checked before
// anything changes. New and changed instances start together, at most
// Parallel at once; one that does not become ready is rolled back (a new
// one removed, a changed one put back to its old settings) and the others'
// results stand: the error then wraps ErrBatchFailed.
func (m *Manager) Apply(ctx context.Context, path string, want []fleet.Desired, opts ApplyOptions) (*ApplyResult, error) {
	reg, release, err := m.lockedRegistry(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	m.dropUnusedZMQPorts(reg)
	plan, err := fleet.PlanFleet(path, want, reg, opts.Prune)
	if err != nil {
		return nil, err
	}
	if err := m.planRestarts(ctx, reg, &plan); err != nil {
		return nil, err
	}
	// A front the scope cannot run is refused before anything changes.
	groups := reg
	if opts.SetGroups {
		groups = &config.Registry{Instances: reg.Instances, Groups: opts.Groups}
	}
	for _, d := range want {
		if err := m.checkGroupFront(groups, d.Group); err != nil {
			return nil, err
		}
	}
	if err := m.checkApplySurge(groups, reg, plan, opts.Surge); err != nil {
		return nil, err
	}
	res := &ApplyResult{Plan: plan}
	if opts.SetGroups && !maps.Equal(reg.Groups, opts.Groups) && !(len(reg.Groups) == 0 && len(opts.Groups) == 0) {
		if err := m.Registry.Update(func(r *config.Registry) error {
			r.Groups = maps.Clone(opts.Groups)
			return nil
		}); err != nil {
			return nil, err
		}
		res.GroupsChanged = true
		if !plan.Pending() {
			return res, m.syncFronts(ctx, nil)
		}
	}
	if !plan.Pending() {
		return res, nil
	}
	if err := m.EnsureUnits(ctx); err != nil {
		return nil, err
	}
	// Every new instance gets its ports, and every change is made, in one
	// registry update, before any unit is touched: a port in use or a
	// processor that cannot run there fails the whole apply. The update is
	// tried first on a copy, with the ports of the instances to remove
	// counted free, so that nothing is removed either when it would fail.
	now := m.now().UTC().Truncate(time.Second)
	allocate := func(r *config.Registry, free map[int]bool) ([]*batchItem, error) {
		var items []*batchItem
		var errs []error
		for _, s := range plan.Steps {
			switch s.Action {
			case fleet.Create:
				d := s.Want
				req := StartRequest{ID: d.ID, Name: d.Name, APIPort: d.APIPort, ZMQPort: d.ZMQPort, Parameters: d.Parameters,
					Processor: d.Processor, Network: d.Network, Group: d.Group}
				inst, msgs, err := m.allocateInstance(ctx, r, req, free)
				// A port the file gives is the instance's or an error; one
				// it leaves out is the next free one, without a notice.
				if err == nil && (d.APIPort != 0 && inst.APIPort != d.APIPort || d.ZMQPort != 0 && inst.ZMQPort != d.ZMQPort) {
					err = errors.New(strings.Join(msgs, "; "))
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("instance %s: %w", d.ID, err))
					continue
				}
				r.Instances[inst.ID] = &inst
				items = append(items, &batchItem{inst: inst, action: fleet.Create})
			case fleet.Change:
				e := r.Instances[s.ID]
				old := *e
				old.Parameters = e.Parameters.Clone()
				d := s.Want
				e.Name, e.APIPort, e.ZMQPort, e.Processor, e.Network, e.Group = d.Name, d.APIPort, d.ZMQPort, d.Processor, d.Network, d.Group
				e.Weight = d.Weight
				e.Parameters = d.Parameters.Clone()
				e.Updated = now
				if err := m.checkChange(ctx, r, &old, e, free); err != nil {
					errs = append(errs, fmt.Errorf("instance %s: %w", s.ID, err))
					continue
				}
				if onlyWeight(s.Changes) {
					// The front's share changes on its reload; the
					// processor runs on untouched.
					continue
				}
				items = append(items, &batchItem{inst: *e, action: fleet.Change, restart: true, old: &old})
			case fleet.Restart:
				// Nothing to register: its files are rendered again and
				// its unit restarted, or started, with them.
				items = append(items, &batchItem{inst: *r.Instances[s.ID], action: fleet.Restart, restart: true})
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return items, r.Validate()
	}
	dry := &config.Registry{Instances: make(map[string]*config.Instance, len(reg.Instances))}
	for id, in := range reg.Instances {
		c := *in
		c.Parameters = in.Parameters.Clone()
		dry.Instances[id] = &c
	}
	free := map[int]bool{}
	var removals []string
	for _, s := range plan.Steps {
		if s.Action == fleet.Remove {
			removals = append(removals, s.ID)
			free[s.Have.APIPort], free[s.Have.ZMQPort] = true, true
			delete(dry.Instances, s.ID)
		}
	}
	var creates []string
	for _, s := range plan.Steps {
		if s.Action == fleet.Create {
			creates = append(creates, s.ID)
		}
	}
	if err := m.refuseUnregistered(ctx, creates); err != nil {
		return nil, err
	}
	if _, err := allocate(dry, free); err != nil {
		return nil, err
	}
	begin := time.Now()
	progress := m.progressFunc(opts.Progress, begin, len(plan.Steps)-plan.Count(fleet.Keep))
	// Instances leaving a front finish their requests there first.
	if err := m.drainMembers(ctx, removals); err != nil {
		return res, err
	}
	for id, err := range m.removeMany(ctx, removals, m.parallel(opts.Parallel)) {
		if err != nil {
			res.Failed = append(res.Failed, BatchFailure{ID: id, Action: fleet.Remove, Err: err})
			progress(id, fleet.Remove, PhaseFailed, err)
			continue
		}
		res.Done = append(res.Done, id)
		progress(id, fleet.Remove, PhaseRemoved, nil)
	}
	var items []*batchItem
	err = m.Registry.Update(func(r *config.Registry) error {
		m.dropUnusedZMQPorts(r)
		var err error
		items, err = allocate(r, nil)
		return err
	})
	if err != nil {
		return res, err
	}
	if opts.AfterRegistry != nil {
		opts.AfterRegistry(ctx)
	}
	if ctx.Err() != nil {
		// Stopped (SIGTERM, SIGHUP, Ctrl-C) between the registry and the
		// units: nothing runs half-started, and the next apply finds
		// every unit that does not run what the registry says.
		return res, fmt.Errorf("interrupted after the registry was written and before any instance was started or restarted; run apply again to finish: %w", ctx.Err())
	}
	// Members of a group whose front runs restart one at a time through
	// it, the others serving; the rest of the batch at once.
	rolled, items := m.splitRolled(ctx, items)
	m.runBatch(ctx, items, opts.BatchOptions, progress)
	surgeErr := m.rollItems(ctx, rolled, opts.BatchOptions, progress)
	items = append(items, rolled...)
	for _, it := range items {
		if it.err == nil {
			res.Done = append(res.Done, it.inst.ID)
			continue
		}
		f := it.failure()
		if it.notReached {
			f.RollbackErr = m.unrollItem(context.WithoutCancel(ctx), it)
		} else {
			f.RollbackErr = m.rollbackItem(context.WithoutCancel(ctx), it)
		}
		progress(it.inst.ID, it.action, PhaseRolledBack, f.RollbackErr)
		res.Failed = append(res.Failed, f)
	}
	if err := m.syncGroups(ctx); err != nil {
		return res, err
	}
	if err := m.syncFronts(ctx, nil); err != nil {
		return res, errors.Join(err, surgeErr)
	}
	if len(res.Failed) > 0 {
		return res, errors.Join(fmt.Errorf("%d of %d instances failed: %w", len(res.Failed), len(res.Failed)+len(res.Done), ErrBatchFailed), surgeErr)
	}
	return res, surgeErr
}

// checkApplySurge refuses, before anything changes, an apply with a surge
// that would roll members of a fronted group without a template or
// processor to make extra members from (checkSurgeSource). groups holds
// the groups the apply leaves, reg the instances before it.
func (m *Manager) checkApplySurge(groups, reg *config.Registry, plan fleet.Plan, surge int) error {
	if surge == 0 {
		return nil
	}
	for _, s := range plan.Steps {
		var group string
		switch {
		case s.Action == fleet.Change && !onlyWeight(s.Changes):
			group = s.Want.Group
		case s.Action == fleet.Restart && reg.Instances[s.ID] != nil:
			group = reg.Instances[s.ID].Group
		default:
			continue
		}
		if gc, ok := groups.Group(m.Config, group); ok && gc.Front != 0 {
			if err := checkSurgeSource(gc, group, groupSurge(m.Config, groups, group, surge)); err != nil {
				return err
			}
		}
	}
	return nil
}

// onlyWeight reports whether a change is of the weight alone.
func onlyWeight(changes []fleet.FieldChange) bool {
	for _, c := range changes {
		if c.Field != "weight" {
			return false
		}
	}
	return len(changes) > 0
}

// planRestarts turns each Keep of the plan whose unit does not run what the
// registry says (see checkRunning) into a Restart: a unit that is not
// running, or whose process was started with other settings than its
// entry renders now. An apply killed between its registry update and its
// restarts leaves exactly these; so does a stop or a crash of the units.
// A process without a record of its settings (started by an earlier
// version) is left alone.
func (m *Manager) planRestarts(ctx context.Context, reg *config.Registry, plan *fleet.Plan) error {
	var keep []string
	for _, s := range plan.Steps {
		if s.Action == fleet.Keep {
			keep = append(keep, s.ID)
		}
	}
	states, procs, err := m.runningState(ctx, reg, keep)
	if err != nil {
		return err
	}
	c := m.checkRunning(reg, keep, states, procs)
	why := map[string]string{}
	for _, id := range c.NotRunning {
		why[id] = "not running"
	}
	for _, id := range c.Stale {
		why[id] = "started with other settings"
	}
	for i, s := range plan.Steps {
		if w, ok := why[s.ID]; ok && s.Action == fleet.Keep {
			plan.Steps[i].Action = fleet.Restart
			plan.Steps[i].Changes = []fleet.FieldChange{{Field: "unit", Old: w, New: "running the registered settings"}}
		}
	}
	return nil
}

// progressFunc serializes the calls to fn, for a batch of total instances.
func (m *Manager) progressFunc(fn func(Progress), begin time.Time, total int) func(id string, a fleet.Action, p Phase, err error) {
	var mu sync.Mutex
	return func(id string, a fleet.Action, p Phase, err error) {
		if fn == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		fn(Progress{ID: id, Action: a, Phase: p, Err: err, Elapsed: time.Since(begin), Total: total})
	}
}

// parallel is the bound on instances starting at once.
func (m *Manager) parallel(n int) int {
	if n > 0 {
		return n
	}
	if m.Config != nil && m.Config.Batch.Parallel > 0 {
		return m.Config.Batch.Parallel
	}
	return DefaultParallel()
}

// runBatch renders every item's files, makes systemd read them with at
// most one daemon-reload, and then starts (or restarts) the items at most
// Parallel at once, each waiting for its health request concurrently with
// the others. It sets each item's err.
func (m *Manager) runBatch(ctx context.Context, items []*batchItem, opts BatchOptions, progress func(string, fleet.Action, Phase, error)) {
	if len(items) == 0 {
		return
	}
	setups := make([]*instanceSetup, len(items))
	var written, enable []string
	for i, it := range items {
		su, err := m.setup(it.inst)
		if err == nil {
			var w []string
			if w, err = m.writeInstanceFiles(su); err == nil {
				written = append(written, w...)
				enable = append(enable, it.inst.Unit)
			}
		}
		setups[i], it.err = su, err
	}
	fail := func(err error) {
		for _, it := range items {
			if it.err == nil {
				it.err = err
			}
		}
	}
	if err := m.writeGroupFiles(ctx); err != nil {
		fail(err)
		return
	}
	if len(enable) == 0 {
		return
	}
	// The links in kato.target.wants bring the instances back at boot;
	// nothing in their start needs them, so they are made while the
	// instances come up, as a single start does. A failure fails every
	// item that started, which is then rolled back.
	enabled := make(chan error, 1)
	go func() { enabled <- m.Systemd.EnableUnits(ctx, enable) }()
	defer func() {
		if err := <-enabled; err != nil {
			fail(err)
		}
	}()
	loaded, err := m.Systemd.ListUnits(ctx, append(written, units.GroupPattern)...)
	if err != nil {
		fail(err)
		return
	}
	var reload bool
	var failed []string
	states := map[string]UnitState{}
	// The loaded units' properties, all asked for at once.
	var ask []string
	for _, l := range loaded {
		if units.IsGroupTarget(l.Name) || slices.Contains(written, l.Name) {
			ask = append(ask, l.Name)
		}
	}
	props := make([]UnitState, len(ask))
	errs := make([]error, len(ask))
	var reads sync.WaitGroup
	for k, name := range ask {
		reads.Go(func() { props[k], errs[k] = m.Systemd.Unit(ctx, name) })
	}
	reads.Wait()
	if err := errors.Join(errs...); err != nil {
		fail(err)
		return
	}
	for k, u := range props {
		states[ask[k]] = u
		reload = reload || needsReload(u)
		if !units.IsGroupTarget(ask[k]) && (u.ActiveState == "failed" || u.NRestarts > 0) {
			failed = append(failed, ask[k])
		}
	}
	if reload {
		if err := m.Systemd.Reload(ctx); err != nil {
			fail(err)
			return
		}
	}
	for _, name := range failed {
		if err := m.Systemd.ResetFailedUnit(ctx, name); err != nil {
			fail(err)
			return
		}
	}
	if err := m.checkBatchPorts(ctx, items, setups); err != nil {
		fail(err)
		return
	}
	sem := make(chan struct{}, m.parallel(opts.Parallel))
	// A large batch lists its units less often: each listing matches
	// every loaded unit against every name, in systemd, whose CPU the
	// start jobs need.
	watch := &unitWatch{sd: m.Systemd, every: batchStateInterval * time.Duration(max(1, len(items)/batchProbes))}
	for _, it := range items {
		watch.names = append(watch.names, it.inst.Unit)
	}
	var wg sync.WaitGroup
	for i, it := range items {
		if it.err != nil {
			progress(it.inst.ID, it.action, PhaseFailed, it.err)
			continue
		}
		it.wasActive = states[it.inst.Unit].Active()
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				it.err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			progress(it.inst.ID, it.action, PhaseStarting, nil)
			it.err = m.startOne(ctx, it, setups[i], opts.Timeout, watch)
			if it.err != nil {
				progress(it.inst.ID, it.action, PhaseFailed, it.err)
				return
			}
			progress(it.inst.ID, it.action, PhaseReady, nil)
		}()
	}
	wg.Wait()
}

// checkBatchPorts fails each item on the host network whose API port a
// process other than the item's own holds: a bind probe of each port, and
// only when some port is in use one look at the host's listening sockets
// (and, when some port is held, one at the processes).
func (m *Manager) checkBatchPorts(ctx context.Context, items []*batchItem, setups []*instanceSetup) error {
	// A bind probe of each port first (two system calls each); the
	// sockets of every process are read only when some port is in use.
	var inUse []int
	for i, it := range items {
		su := setups[i]
		if it.err != nil || su == nil || su.network != nil {
			continue
		}
		used, err := m.Ports.InUse(ctx, su.readyPort)
		if err != nil {
			return err
		}
		if used {
			inUse = append(inUse, i)
		}
	}
	if len(inUse) == 0 {
		return nil
	}
	holders, err := m.Ports.Listening(ctx)
	if err != nil {
		return err
	}
	held := map[*batchItem]int32{}
	var unitNames []string
	for _, i := range inUse {
		it, su := items[i], setups[i]
		if pid, ok := holders[su.readyPort]; ok && pid != 0 {
			held[it] = pid
			unitNames = append(unitNames, it.inst.Unit)
		}
	}
	if len(held) == 0 {
		return nil
	}
	procs, err := m.Processes.ByUnit(ctx, unitNames)
	if err != nil {
		return err
	}
	for it, pid := range held {
		if !slices.Contains(procs[it.inst.Unit].PIDs, pid) {
			it.err = portHeldError(it.inst.Unit, it.inst.APIPort, pid, "before the start")
		}
	}
	return nil
}

// batchStateInterval is how often a batch lists its units' states while
// they wait for their health requests: one listing for the whole batch,
// instead of a properties call per instance and health request, which with
// fifty instances polling every 20ms keeps systemd itself busy.
const batchStateInterval = 100 * time.Millisecond

// unitWatch is the states of a batch's units from one ListUnits call,
// shared by the instances waiting for readiness and read again when older
// than every.
type unitWatch struct {
	sd    Systemd
	names []string
	every time.Duration

	mu    sync.Mutex
	at    time.Time
	units map[string]UnitState
}

// state returns the unit's state from a listing at most every old. No
// caller sees its unit as it was before its start: a listing asked for
// before since (when the caller's start job had finished) says only that
// the unit is starting, until the next listing, rather than each new start
// asking for a listing of its own. A unit the listing lacks is not loaded:
// inactive.
func (w *unitWatch) state(ctx context.Context, name string, since time.Time) (UnitState, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.units != nil && w.at.Before(since) && time.Since(w.at) < w.every {
		return UnitState{Name: name, ActiveState: "activating", SubState: "start"}, nil
	}
	if w.units == nil || w.at.Before(since) || time.Since(w.at) >= w.every {
		// A listing shows systemd as it was when it read the request,
		// which may be before a start job that finished while the answer
		// was on its way: it counts as taken when it was asked for.
		asked := time.Now()
		list, err := w.sd.ListUnits(ctx, w.names...)
		if err != nil {
			return UnitState{}, err
		}
		w.units = make(map[string]UnitState, len(list))
		for _, u := range list {
			w.units[u.Name] = u
		}
		w.at = asked
	}
	if u, ok := w.units[name]; ok {
		return u, nil
	}
	return UnitState{Name: name, ActiveState: "inactive", SubState: "dead"}, nil
}

// startOne queues the item's start or restart job and waits for its
// health request.
func (m *Manager) startOne(ctx context.Context, it *batchItem, su *instanceSetup, timeout time.Duration, watch *unitWatch) error {
	var restarts uint32
	if it.restart {
		u, err := m.Systemd.Unit(ctx, it.inst.Unit)
		if err != nil {
			return err
		}
		restarts = u.NRestarts
		if err := m.Systemd.RestartUnit(ctx, it.inst.Unit); err != nil {
			return m.startError(ctx, it.inst.Unit, err)
		}
	} else if err := m.Systemd.StartUnit(ctx, it.inst.Unit); err != nil {
		return m.startError(ctx, it.inst.Unit, err)
	}
	if err := m.waitReadyWatched(ctx, it.inst, su, restarts, timeout, watch, nil); err != nil {
		return m.startError(ctx, it.inst.Unit, err)
	}
	return nil
}

// rollbackItem undoes a failed item: a new instance is removed, a changed
// one gets its old settings back and runs with them again if it ran
// before.
func (m *Manager) rollbackItem(ctx context.Context, it *batchItem) error {
	switch {
	case it.action == fleet.Create:
		return m.rollback(ctx, it.inst, true)
	case it.old == nil:
		return m.Systemd.StopUnit(ctx, it.inst.Unit)
	}
	old := *it.old
	if err := m.Registry.Update(func(r *config.Registry) error {
		r.Instances[old.ID] = &old
		return nil
	}); err != nil {
		return err
	}
	su, err := m.setup(old)
	if err != nil {
		return err
	}
	written, err := m.writeInstanceFiles(su)
	if err != nil {
		return err
	}
	if err := m.reloadIfNeeded(ctx, written...); err != nil {
		return err
	}
	if !it.wasActive {
		return m.Systemd.StopUnit(ctx, old.Unit)
	}
	if err := m.Systemd.ResetFailedUnit(ctx, old.Unit); err != nil {
		return err
	}
	if err := m.Systemd.RestartUnit(ctx, old.Unit); err != nil {
		return err
	}
	return m.waitReady(ctx, old, su, 0, 0)
}

// removeMany tears down the instances ids, at most parallel at once, and
// then removes their registry entries in one update. It returns each id's
// error, nil for those removed.
func (m *Manager) removeMany(ctx context.Context, ids []string, parallel int) map[string]error {
	out := make(map[string]error, len(ids))
	if len(ids) == 0 {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			err := m.teardown(ctx, id)
			if err != nil {
				err = fmt.Errorf("stop %s: %w", id, err)
			}
			mu.Lock()
			out[id] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	err := m.Registry.Update(func(r *config.Registry) error {
		for id, e := range out {
			if e == nil {
				delete(r.Instances, id)
			}
		}
		return nil
	})
	if err != nil {
		for id, e := range out {
			if e == nil {
				out[id] = err
			}
		}
	}
	return out
}

// writeGroupFiles renders the drop-in of every group's target from the
// registry (a Wants= of each member) and removes those of groups that have
// no member left. It reports the targets whose drop-in changed.
func (m *Manager) writeGroupFiles(ctx context.Context) error {
	_, err := m.groupFiles(ctx)
	return err
}

func (m *Manager) groupFiles(ctx context.Context) ([]string, error) {
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	members := map[string][]string{}
	for _, in := range reg.Sorted() {
		if in.Group != "" {
			members[in.Group] = append(members[in.Group], in.ID)
		}
	}
	if len(members) > 0 {
		ok, err := m.Systemd.UnitFileExists(ctx, units.GroupTemplate)
		if err != nil {
			return nil, err
		}
		if !ok {
			// Units installed by a version without groups.
			if _, err := m.InstallUnits(ctx); err != nil {
				return nil, err
			}
		}
	}
	var changed []string
	for g, ids := range members {
		data, err := units.RenderGroupDropIn(g, ids)
		if err != nil {
			return nil, err
		}
		target := units.GroupTarget(g)
		ch, err := writeFileAtomic(m.unitDropInPath(target), data, 0o644)
		if err != nil {
			return nil, err
		}
		if ch {
			changed = append(changed, target)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(m.Paths.UnitDir, units.GroupPattern+".d", units.DropInName))
	for _, d := range dirs {
		target := strings.TrimSuffix(filepath.Base(filepath.Dir(d)), ".d")
		if g, ok := units.GroupName(target); ok && len(members[g]) > 0 {
			continue
		}
		if err := m.removeDropIn(target); err != nil {
			return nil, err
		}
		changed = append(changed, target)
	}
	slices.Sort(changed)
	return changed, nil
}

// syncGroups writes the groups' drop-ins (see groupFiles) and, when systemd
// holds a target whose drop-in changed, reloads it so that starting the
// target starts the members it has now.
func (m *Manager) syncGroups(ctx context.Context) error {
	changed, err := m.groupFiles(ctx)
	if err != nil || len(changed) == 0 {
		return err
	}
	loaded, err := m.Systemd.ListUnits(ctx, changed...)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(loaded))
	for _, l := range loaded {
		names = append(names, l.Name)
	}
	return m.reloadIfNeeded(ctx, names...)
}

// GroupMembers returns the registered instances of the group, by id.
func (m *Manager) GroupMembers(group string) ([]config.Instance, error) {
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	var out []config.Instance
	for _, in := range reg.Sorted() {
		if in.Group == group {
			out = append(out, *in)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no instance is in group %q; run `kato-manager list`: %w", group, config.ErrNotFound)
	}
	return out, nil
}

// GroupResult is what a start or restart of a group did.
type GroupResult struct {
	Done    []string // started or restarted
	Running []string // left alone: already running (start)
	Failed  []BatchFailure
}

// StartGroup starts the registered instances of the group that are not
// running, with their stored settings, as one batch (see BatchOptions).
// An instance that does not become ready is stopped again.
func (m *Manager) StartGroup(ctx context.Context, group string, opts BatchOptions) (*GroupResult, error) {
	return m.groupBatch(ctx, group, false, opts)
}

// RestartGroup restarts every registered instance of the group as one
// batch.
func (m *Manager) RestartGroup(ctx context.Context, group string, opts BatchOptions) (*GroupResult, error) {
	return m.groupBatch(ctx, group, true, opts)
}

func (m *Manager) groupBatch(ctx context.Context, group string, restart bool, opts BatchOptions) (*GroupResult, error) {
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	members, err := m.GroupMembers(group)
	if err != nil {
		return nil, err
	}
	res := &GroupResult{}
	var items []*batchItem
	for _, in := range members {
		if !restart {
			u, err := m.Systemd.Unit(ctx, in.Unit)
			if err != nil {
				return nil, err
			}
			if u.Active() {
				res.Running = append(res.Running, in.ID)
				continue
			}
		}
		items = append(items, &batchItem{inst: in, action: fleet.Keep, restart: restart})
	}
	progress := m.progressFunc(opts.Progress, time.Now(), len(items))
	m.runBatch(ctx, items, opts, progress)
	for _, it := range items {
		if it.err == nil {
			res.Done = append(res.Done, it.inst.ID)
			continue
		}
		f := it.failure()
		if !restart {
			f.RollbackErr = m.Systemd.StopUnit(context.WithoutCancel(ctx), it.inst.Unit)
		}
		res.Failed = append(res.Failed, f)
	}
	if err := m.syncFronts(ctx, nil); err != nil {
		return res, err
	}
	if len(res.Failed) > 0 {
		return res, fmt.Errorf("%d of %d instances failed: %w", len(res.Failed), len(items), ErrBatchFailed)
	}
	return res, nil
}

// StopGroup stops and removes every instance of the group, as Stop does
// one, at most Parallel at once.
func (m *Manager) StopGroup(ctx context.Context, group string, parallel int) (*StopResult, error) {
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	members, err := m.GroupMembers(group)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(members))
	for i, in := range members {
		ids[i] = in.ID
	}
	res := &StopResult{}
	var errs []error
	out := m.removeMany(ctx, ids, m.parallel(parallel))
	for _, id := range ids {
		if out[id] != nil {
			errs = append(errs, out[id])
			continue
		}
		res.Stopped = append(res.Stopped, id)
	}
	errs = append(errs, m.syncGroups(ctx), m.syncFronts(ctx, nil))
	return res, errors.Join(errs...)
}

// checkChange refuses a change the restart would only find out about: a
// generation-A processor moved onto the host network beside another one
// (both gateways would talk to the engine on localhost:5555), or a new port
// that something on the host holds. r holds the other changes already made.
func (m *Manager) checkChange(ctx context.Context, r *config.Registry, old, e *config.Instance, free map[int]bool) error {
	proc, err := m.Config.ProcessorNamed(e.Processor)
	if err != nil {
		return err
	}
	network := e.Network
	if network == "" {
		network = proc.Network
	}
	if err := checkGenerationCNetwork(proc, network); err != nil {
		return err
	}
	if proc.Generation != units.GenerationA && e.ZMQPort != 0 {
		return &config.FieldError{Field: "zmq_port", Value: strconv.Itoa(e.ZMQPort), Rule: "must not be set for a generation-" + proc.Generation + " processor, which serves HTTP only and has no ZMQ port"}
	}
	if proc.Generation == units.GenerationA && network == config.NetworkHost {
		// One the apply removes (its ports counted free) is no obstacle.
		if other := m.hostEngineHolder(r, e.ID); other != "" && !free[r.Instances[other].APIPort] {
			return fmt.Errorf("instance %s already runs a generation-A processor on the host network, and a generation-A gateway always talks to the engine on localhost:5555; keep %s on --network private: %w", other, e.ID, ErrCrossTalk)
		}
		if e.ZMQPort != config.PrivateZMQPort {
			return &config.FieldError{Field: "zmq_port", Value: strconv.Itoa(e.ZMQPort), Rule: "must be 5555 for a generation-A processor on the host network, whose gateway always talks to ZMQ port 5555 (or use network: private)"}
		}
	}
	for _, p := range []struct {
		field    string
		was, now int
	}{{"port", old.APIPort, e.APIPort}, {"zmq_port", old.ZMQPort, e.ZMQPort}} {
		if p.now == p.was || free[p.now] {
			continue
		}
		inUse, err := m.Ports.InUse(ctx, p.now)
		if err != nil {
			return err
		}
		if inUse {
			return &config.FieldError{Field: p.field, Value: strconv.Itoa(p.now), Rule: "is in use on this host"}
		}
	}
	return nil
}
