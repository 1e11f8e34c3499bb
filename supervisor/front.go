package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/units"
)

// FrontCheckInterval is how often a front sends each member its ready
// request: two failures in a row take a member out of the rotation within
// a second, two successes put it back.
const FrontCheckInterval = 500 * time.Millisecond

// frontDrainTimeout bounds the wait for a member leaving a front (stop,
// scale down) to finish the requests it was given.
const frontDrainTimeout = 30 * time.Second

// FrontRestarter returns what a rolling restart of a group's front
// (front.Roll) restarts members with: each member is the instance of that
// id, restarted as Restart does and waited for until it answers its ready
// request, for at most timeout.
func (m *Manager) FrontRestarter(timeout time.Duration) front.Restarter {
	return memberRestarter{m: m, timeout: timeout}
}

type memberRestarter struct {
	m       *Manager
	timeout time.Duration
	// locked says the caller holds the operations lock already.
	locked bool
}

func (r memberRestarter) RestartMember(ctx context.Context, id string) error {
	if host, ok := r.m.remoteHost(id); ok {
		return r.m.restartRemote(ctx, host, id, r.timeout)
	}
	var err error
	if r.locked {
		_, err = r.m.restartLocked(ctx, id, r.timeout)
	} else {
		_, err = r.m.Restart(ctx, id, r.timeout)
	}
	return err
}

func (m *Manager) frontDir() string {
	if m.FrontDir != "" {
		return m.FrontDir
	}
	if m.Paths.FrontDir != "" {
		return m.Paths.FrontDir
	}
	return front.ConfigDir
}

// frontSocket is the admin socket of the front of group in the scope: in
// the runtime directory kato-front@GROUP has under /run (system) or the
// user's runtime directory (--user).
func (m *Manager) frontSocket(group string) string {
	if m.Paths.FrontRuntimeDir == "" {
		return front.SocketPath(group)
	}
	return filepath.Join(m.Paths.FrontRuntimeDir, group, "admin.sock")
}

func (m *Manager) frontAdmin(group string) front.Runtime {
	if m.FrontAdmin != nil {
		return m.FrontAdmin(group)
	}
	return front.NewClient(m.frontSocket(group))
}

// FrontOf returns the front of the group name as kato.toml's [groups.NAME]
// and the registry make it, without the members in exclude, and whether
// the group has a front at all. Members are reached on 127.0.0.1 at their
// API ports, with their weights; the ready check is the group's ready, else
// the members' processor's, reading generation C's body.
func (m *Manager) FrontOf(reg *config.Registry, name string, exclude map[string]bool) (front.Group, bool, error) {
	gc, ok := reg.Group(m.Config, name)
	if !ok || gc.Front == 0 {
		return front.Group{}, false, nil
	}
	g := front.Group{Name: name, Address: gc.Address, Port: gc.Front, Balance: gc.Balance, CheckInterval: FrontCheckInterval}
	ready := gc.Ready
	var proc *config.Processor
	for _, in := range reg.Sorted() {
		if in.Group != name || exclude[in.ID] {
			continue
		}
		if proc == nil {
			p, err := m.Config.ProcessorNamed(in.Processor)
			if err != nil {
				return front.Group{}, true, err
			}
			proc = &p
		}
		g.Members = append(g.Members, front.Member{ID: in.ID, Address: "127.0.0.1", Port: in.APIPort, Weight: in.Weight})
	}
	// Members on other hosts, at their hosts' addresses; the group's
	// processor says how they answer their ready request.
	for _, id := range slices.Sorted(maps.Keys(reg.RemoteMembers)) {
		rm := reg.RemoteMembers[id]
		if rm.Group != name || exclude[id] {
			continue
		}
		if proc == nil {
			p, err := m.Config.ProcessorNamed(gc.Processor)
			if err != nil {
				return front.Group{}, true, err
			}
			proc = &p
		}
		g.Members = append(g.Members, front.Member{ID: id, Address: rm.Address, Port: rm.Port, Weight: rm.Weight})
	}
	if proc == nil {
		return g, true, nil
	}
	if ready == "" {
		ready = proc.Ready
	}
	_, path, _ := strings.Cut(ready, " ")
	g.Ready = front.ReadyCheck{Path: path}
	if proc.Generation == units.GenerationC {
		g.Ready.Body = front.HealthyBody
	}
	return g, true, nil
}

// frontNames returns the groups that have a front in kato.toml or a
// configuration written for one earlier (a group since removed).
func (m *Manager) frontNames(reg *config.Registry) []string {
	var names []string
	for _, n := range reg.GroupNames(m.Config) {
		if g, _ := reg.Group(m.Config, n); g.Front != 0 {
			names = append(names, n)
		}
	}
	files, _ := filepath.Glob(filepath.Join(m.frontDir(), "*.cfg"))
	for _, f := range files {
		n := strings.TrimSuffix(filepath.Base(f), ".cfg")
		if units.GroupNameRule(n) == "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// syncFronts makes every group's front what its members are now, less
// those in exclude: it renders the configuration, writes it atomically
// and starts the front, or reloads it when the configuration changed (a
// reload refuses no connection). A front whose group has no member left,
// or no front any more, is stopped and its configuration removed.
func (m *Manager) syncFronts(ctx context.Context, exclude map[string]bool) error {
	reg, err := m.Registry.Load()
	if err != nil {
		return err
	}
	names := m.frontNames(reg)
	if len(names) == 0 {
		return nil
	}
	var errs []error
	for _, name := range names {
		if err := m.syncFront(ctx, reg, name, exclude); err != nil {
			errs = append(errs, fmt.Errorf("front of group %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) syncFront(ctx context.Context, reg *config.Registry, name string, exclude map[string]bool) error {
	g, ok, err := m.FrontOf(reg, name, exclude)
	if err != nil {
		return err
	}
	unit := units.FrontUnit(name)
	path := filepath.Join(m.frontDir(), name+".cfg")
	if !ok || len(g.Members) == 0 {
		u, err := m.Systemd.Unit(ctx, unit)
		if err != nil {
			return err
		}
		if u.Active() {
			if err := m.Systemd.StopUnit(ctx, unit); err != nil {
				return err
			}
		}
		return removeFile(path)
	}
	if err := m.checkFrontPort(g); err != nil {
		return err
	}
	data, err := front.Render(g, m.frontSocket(name))
	if err != nil {
		return err
	}
	changed, err := writeFileAtomic(path, data, 0o644)
	if err != nil {
		return err
	}
	u, err := m.Systemd.Unit(ctx, unit)
	if err != nil {
		return err
	}
	switch {
	case !u.Active():
		if ok, err := m.Systemd.UnitFileExists(ctx, units.FrontTemplate); err != nil {
			return err
		} else if !ok {
			// Units installed by a version without fronts.
			if _, err := m.InstallUnits(ctx); err != nil {
				return err
			}
		}
		if u.ActiveState == "failed" {
			if err := m.Systemd.ResetFailedUnit(ctx, unit); err != nil {
				return err
			}
		}
		return m.Systemd.StartUnit(ctx, unit)
	case changed:
		return m.reloadFront(ctx, g, unit)
	}
	return nil
}

// frontReloadWait bounds the wait for a reloaded front's new worker.
const frontReloadWait = 30 * time.Second

// reloadFront reloads the running front of g on its new configuration, its
// members keeping what was set through the admin socket (a drain, a
// maintenance, a weight): front.ReloadKeepingState.
func (m *Manager) reloadFront(ctx context.Context, g front.Group, unit string) error {
	reload := func(ctx context.Context) error { return m.Systemd.ReloadUnit(ctx, unit) }
	c, ok := m.frontAdmin(g.Name).(front.Commander)
	if !ok {
		// A runtime without commands (a double) keeps no state.
		return reload(ctx)
	}
	return front.ReloadKeepingState(ctx, c, g, front.StateFileFor(m.frontSocket(g.Name)), frontReloadWait, reload)
}

// drainMembers takes ids out of their groups' fronts before they stop:
// each is drained (no new request), waited for until its connections end
// (bounded), and the front is reloaded without it. Members of groups
// without a running front are left alone.
func (m *Manager) drainMembers(ctx context.Context, ids []string) error {
	reg, err := m.Registry.Load()
	if err != nil {
		return err
	}
	if len(m.frontNames(reg)) == 0 {
		return nil
	}
	byGroup := map[string][]string{}
	for _, id := range ids {
		if in, ok := reg.Instances[id]; ok && in.Group != "" {
			byGroup[in.Group] = append(byGroup[in.Group], id)
		} else if rm, ok := reg.RemoteMembers[id]; ok {
			byGroup[rm.Group] = append(byGroup[rm.Group], id)
		}
	}
	exclude := map[string]bool{}
	var errs []error
	for group, members := range byGroup {
		g, ok, err := m.FrontOf(reg, group, nil)
		if err != nil || !ok {
			continue
		}
		u, err := m.Systemd.Unit(ctx, units.FrontUnit(group))
		if err != nil {
			return err
		}
		for _, id := range members {
			exclude[id] = true
		}
		if !u.Active() {
			continue
		}
		rt := m.frontAdmin(group)
		for _, id := range members {
			if err := rt.SetState(ctx, g.Backend(id), id, front.Drain); err != nil {
				errs = append(errs, fmt.Errorf("drain %s in the front of group %s: %w", id, group, err))
			}
		}
		m.waitDrained(ctx, rt, members)
	}
	if len(exclude) == 0 {
		return errors.Join(errs...)
	}
	return errors.Join(append(errs, m.syncFronts(ctx, exclude))...)
}

// waitDrained waits, at most frontDrainTimeout, until no connection to ids
// is open in the front.
func (m *Manager) waitDrained(ctx context.Context, rt front.Runtime, ids []string) {
	ctx, cancel := context.WithTimeout(ctx, frontDrainTimeout)
	defer cancel()
	for {
		s, err := rt.Stats(ctx)
		if err == nil {
			open := 0
			for _, id := range ids {
				if ms, ok := s.Member(id); ok {
					open += ms.Sessions
				}
			}
			if open == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RollOptions are a rolling restart's options.
type RollOptions struct {
	// MaxUnavailable is how many members are out at once; zero is 1, and
	// never all of them.
	MaxUnavailable int
	// Surge is how many extra members, NAME-surge-1…NAME-surge-N, start
	// from the group's template before any member goes out, and are
	// drained and removed after the roll (Kubernetes' maxSurge);
	// SurgeOfGroup is the group's own. With it,
	// MaxUnavailable is taken as given, zero included: at least the
	// group's size less MaxUnavailable serve throughout.
	Surge int
	// Timeout bounds each member's wait for its health request; zero is
	// the processor's ready_timeout.
	Timeout time.Duration
}

// SurgeOfGroup, as a Surge, takes the group's own surge ([groups.NAME]
// surge, or the fleet file's groups:), none when it has none.
const SurgeOfGroup = -1

// SurgeID returns the id of the group's extra member k of a roll with
// surge, NAME-surge-k: not a replica NAME-k, so scale leaves it alone.
func SurgeID(group string, k int) string { return group + "-surge-" + strconv.Itoa(k) }

// ErrNoFront is returned by RollGroup for a group without a front.
var ErrNoFront = errors.New("group has no front")

// RollGroup restarts the members of a fronted group a few at a time (see
// front.Roll): each is drained, restarted, waited for until ready and put
// back while the others serve. The roll stops at the first member that
// does not come back; the result names it as failed, the members restarted
// before it as done.
func (m *Manager) RollGroup(ctx context.Context, group string, opts RollOptions) (_ *GroupResult, err error) {
	reg, release, err := m.lockedRegistry(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if !reg.HasRemoteMembers(group) {
		if _, err := m.GroupMembers(group); err != nil {
			return nil, err
		}
	}
	g, ok, err := m.FrontOf(reg, group, nil)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("group %s: %w", group, ErrNoFront)
	}
	if opts.Surge < 0 {
		gc, _ := reg.Group(m.Config, group)
		opts.Surge = gc.Surge
	}
	// The front must run with every member before any goes out.
	if err := m.syncFronts(ctx, nil); err != nil {
		return nil, err
	}
	ro := front.RollOptions{MaxUnavailable: opts.MaxUnavailable, Surge: opts.Surge, DrainTimeout: frontDrainTimeout}
	// The front sees a restarted member up after two checks.
	ro.ReadyTimeout = 4*FrontCheckInterval + 10*time.Second
	res := &GroupResult{}
	var surged []string
	if opts.Surge > 0 {
		surged, err = m.startSurge(ctx, reg, group, opts, ro.ReadyTimeout)
		if err == nil {
			g.Members = slices.DeleteFunc(g.Members, func(mb front.Member) bool { return slices.Contains(surged, mb.ID) })
		}
		defer func() {
			// Drained first: their requests finish, the front reloads
			// without them.
			if rerr := m.removeSurge(context.WithoutCancel(ctx), surged, opts.Surge); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove the extra members %s: %w", strings.Join(surged, ", "), rerr))
			}
		}()
		if err != nil {
			return nil, err
		}
	}
	done, err := front.Roll(ctx, g, m.frontAdmin(group), memberRestarter{m: m, timeout: opts.Timeout, locked: true}, ro)
	res.Done = done
	var re *front.RollError
	if errors.As(err, &re) {
		f := BatchFailure{ID: re.Member, Err: re.Err}
		var se *StartError
		if errors.As(re.Err, &se) {
			f.Journal = se.Journal
		}
		res.Failed = append(res.Failed, f)
		return res, fmt.Errorf("%w: %w", err, ErrBatchFailed)
	}
	return res, err
}

// ErrNoTemplate is returned by RollGroup with a surge for a group whose
// [groups.NAME] names neither a template nor a processor.
var ErrNoTemplate = errors.New("group names no template or processor to make extra members from")

// startSurge starts the extra members of a roll of group with a surge, as
// scale starts a replica, and waits until the front sees each up. It
// returns the ids of the extra members it started or found registered
// (left by a roll that was interrupted), to be removed after the roll.
func (m *Manager) startSurge(ctx context.Context, reg *config.Registry, group string, opts RollOptions, readyTimeout time.Duration) ([]string, error) {
	gc, _ := reg.Group(m.Config, group)
	if err := checkSurgeSource(gc, group, opts.Surge); err != nil {
		return nil, err
	}
	e, tpl, err := ReplicaEntry(m.Config, reg, group)
	if err != nil {
		return nil, err
	}
	var ids []string
	for k := 1; k <= opts.Surge; k++ {
		id := SurgeID(group, k)
		if in, ok := reg.Instances[id]; ok && in.Group != group {
			return ids, fmt.Errorf("instance %s has the name of an extra member of group %s but is in group %q; stop it or rename the group", id, group, in.Group)
		}
		req, err := NewStartRequest(m.Config, m.Config.Layer(e, tpl), StartRequest{ID: id, Timeout: opts.Timeout})
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
		if _, err := m.startLocked(ctx, req); err != nil {
			return ids, fmt.Errorf("start extra member %s: %w", id, err)
		}
	}
	rt := m.frontAdmin(group)
	for _, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, readyTimeout)
		err := waitUp(wctx, rt, id)
		cancel()
		if err != nil {
			return ids, fmt.Errorf("extra member %s: %w", id, err)
		}
	}
	return ids, nil
}

// checkSurgeSource refuses a surge of a group whose [groups.NAME] gc names
// neither a template nor a processor: its members were made by hand (an
// A/B pair, say), and an extra one from [processor] and [defaults] would
// serve another version.
func checkSurgeSource(gc config.Group, group string, surge int) error {
	if surge == 0 || gc.Template != "" || gc.Processor != "" {
		return nil
	}
	return &config.FieldError{Field: "--surge", Value: strconv.Itoa(surge),
		Rule: fmt.Sprintf("goes with a group whose [groups.%s] names a template or processor to make extra members from (%v)", group, ErrNoTemplate)}
}

// groupSurge is the surge of a roll of group given surge: the group's own
// for SurgeOfGroup.
func groupSurge(cfg *config.Config, reg *config.Registry, group string, surge int) int {
	if surge >= 0 || reg == nil {
		return max(surge, 0)
	}
	gc, _ := reg.Group(cfg, group)
	return gc.Surge
}

// waitUp waits until the front sees member id up.
func waitUp(ctx context.Context, rt front.Runtime, id string) error {
	var last front.MemberStats
	for {
		s, err := rt.Stats(ctx)
		if err == nil {
			if ms, ok := s.Member(id); ok {
				if ms.State == front.Up {
					return nil
				}
				last = ms
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: still %s (%s)", front.ErrNotReady, last.State, last.Status)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// removeSurge drains the extra members ids out of their front, then stops
// and removes them.
func (m *Manager) removeSurge(ctx context.Context, ids []string, parallel int) error {
	if len(ids) == 0 {
		return nil
	}
	errs := []error{m.drainMembers(ctx, ids)}
	for _, err := range m.removeMany(ctx, ids, max(1, parallel)) {
		errs = append(errs, err)
	}
	errs = append(errs, m.syncGroups(ctx), m.syncFronts(ctx, nil))
	return errors.Join(errs...)
}

// splitRolled takes out of items those an apply restarts in a group whose
// front runs: they are restarted rolling (rollItems) rather than at once.
// A member whose port or group changes is not: the running front knows it
// at its old place.
func (m *Manager) splitRolled(ctx context.Context, items []*batchItem) (rolled, rest []*batchItem) {
	running := map[string]bool{}
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, items
	}
	for _, it := range items {
		g := it.inst.Group
		if !it.restart || g == "" || it.old != nil && (it.old.APIPort != it.inst.APIPort || it.old.Group != g) {
			rest = append(rest, it)
			continue
		}
		up, seen := running[g]
		if !seen {
			if gc, ok := reg.Group(m.Config, g); ok && gc.Front != 0 {
				u, err := m.Systemd.Unit(ctx, units.FrontUnit(g))
				up = err == nil && u.Active()
			}
			running[g] = up
		}
		if up {
			rolled = append(rolled, it)
		} else {
			rest = append(rest, it)
		}
	}
	return rolled, rest
}

// batchRestarter restarts one member of a rolling apply as the batch would.
type batchRestarter struct {
	m        *Manager
	items    map[string]*batchItem
	opts     BatchOptions
	progress func(string, fleet.Action, Phase, error)
}

func (r batchRestarter) RestartMember(ctx context.Context, id string) error {
	it := r.items[id]
	opts := r.opts
	opts.Parallel = 1
	r.m.runBatch(ctx, []*batchItem{it}, opts, r.progress)
	return it.err
}

// rollItems restarts the items of each group through its front, one at a
// time (front.Roll); with opts.Surge, that many extra members of the group
// start first, as RollGroup's do, that many members go out at a time while
// they serve, and they are removed after the group's roll. The roll of a
// group stops at the first member that does not come back: that one's
// error is its item's, and the members not reached are marked so, their
// settings to be put back unrestarted. It returns what went wrong removing
// the extra members.
func (m *Manager) rollItems(ctx context.Context, items []*batchItem, opts BatchOptions, progress func(string, fleet.Action, Phase, error)) error {
	byGroup := map[string][]*batchItem{}
	var groups []string
	for _, it := range items {
		if byGroup[it.inst.Group] == nil {
			groups = append(groups, it.inst.Group)
		}
		byGroup[it.inst.Group] = append(byGroup[it.inst.Group], it)
	}
	reg, err := m.Registry.Load()
	var surgeErrs []error
	for _, group := range groups {
		its := byGroup[group]
		fail := func(err error) {
			for _, it := range its {
				if it.err == nil {
					it.err = err
				}
			}
		}
		if err != nil {
			fail(err)
			continue
		}
		g, _, err := m.FrontOf(reg, group, nil)
		if err != nil {
			fail(err)
			continue
		}
		byID := map[string]*batchItem{}
		var members []front.Member
		for _, it := range its {
			byID[it.inst.ID] = it
		}
		for _, mb := range g.Members {
			if byID[mb.ID] != nil {
				members = append(members, mb)
			}
		}
		g.Members = members
		ro := front.RollOptions{MaxUnavailable: 1, DrainTimeout: frontDrainTimeout, ReadyTimeout: 4*FrontCheckInterval + 10*time.Second}
		var surged []string
		surge := groupSurge(m.Config, reg, group, opts.Surge)
		if surge > 0 {
			// The extra members carry the load of those out: the group
			// never serves with fewer members than it has.
			ro.MaxUnavailable, ro.Surge = 0, surge
			surged, err = m.startSurge(ctx, reg, group, RollOptions{Surge: surge, Timeout: opts.Timeout}, ro.ReadyTimeout)
			if err != nil {
				for _, it := range its {
					it.notReached = true
					it.err = fmt.Errorf("not restarted: the extra members of group %s did not come up: %w", group, err)
				}
				if rerr := m.removeSurge(context.WithoutCancel(ctx), surged, surge); rerr != nil {
					surgeErrs = append(surgeErrs, fmt.Errorf("remove the extra members %s of group %s: %w", strings.Join(surged, ", "), group, rerr))
				}
				continue
			}
		}
		done, err := front.Roll(ctx, g, m.frontAdmin(group), batchRestarter{m: m, items: byID, opts: opts, progress: progress}, ro)
		// Drained first: their requests finish, the front reloads
		// without them.
		if rerr := m.removeSurge(context.WithoutCancel(ctx), surged, surge); rerr != nil {
			surgeErrs = append(surgeErrs, fmt.Errorf("remove the extra members %s of group %s: %w", strings.Join(surged, ", "), group, rerr))
		}
		if err == nil {
			continue
		}
		var re *front.RollError
		if !errors.As(err, &re) {
			fail(err)
			continue
		}
		if it := byID[re.Member]; it.err == nil {
			it.err = re.Err
		}
		for _, it := range its {
			if it.inst.ID != re.Member && !slices.Contains(done, it.inst.ID) {
				it.notReached = true
				it.err = fmt.Errorf("not restarted: the rolling restart of group %s stopped at %s", group, re.Member)
			}
		}
	}
	return errors.Join(surgeErrs...)
}

// unrollItem puts back the registry entry and files of a member a rolling
// apply did not reach; its process runs the old settings still.
func (m *Manager) unrollItem(ctx context.Context, it *batchItem) error {
	if it.old == nil {
		return nil
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
	return m.reloadIfNeeded(ctx, written...)
}

// runningFrontOf returns the instance ref and its group's front when the
// instance is a member of a front that runs.
func (m *Manager) runningFrontOf(ctx context.Context, ref string) (*config.Instance, front.Group, bool, error) {
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, front.Group{}, false, err
	}
	inst, err := reg.Find(ref)
	if err != nil || inst.Group == "" {
		// restartLocked reports an unknown ref.
		return nil, front.Group{}, false, nil
	}
	g, ok, err := m.FrontOf(reg, inst.Group, nil)
	if err != nil || !ok {
		return nil, front.Group{}, false, err
	}
	u, err := m.Systemd.Unit(ctx, units.FrontUnit(inst.Group))
	if err != nil || !u.Active() {
		return nil, front.Group{}, false, err
	}
	return inst, g, true, nil
}

// unprivilegedPortStart is the first port an unprivileged process may
// bind (net.ipv4.ip_unprivileged_port_start; 1024 when it cannot be read).
func unprivilegedPortStart() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 1024
	}
	return n
}

// checkFrontPort refuses, in the user scope, a front on a port the user's
// HAProxy may not bind: a user manager gives it no capability.
func (m *Manager) checkFrontPort(g front.Group) error {
	if !m.Paths.User {
		return nil
	}
	if start := unprivilegedPortStart(); g.Port < start {
		return &config.FieldError{Field: "groups." + g.Name + ".front", Value: strconv.Itoa(g.Port),
			Rule: fmt.Sprintf("must be at least %d with --user: a user's front binds without privilege below net.ipv4.ip_unprivileged_port_start (%d)", start, start)}
	}
	return nil
}

// checkGroupFront refuses, before anything changes, a member of a group
// whose front the scope cannot run (checkFrontPort).
func (m *Manager) checkGroupFront(reg *config.Registry, group string) error {
	if group == "" {
		return nil
	}
	if gc, ok := reg.Group(m.Config, group); ok && gc.Front != 0 {
		return m.checkFrontPort(front.Group{Name: group, Port: gc.Front})
	}
	return nil
}
