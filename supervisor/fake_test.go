package supervisor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// fakeSystemd is an in-memory stand-in for systemd's D-Bus API. Starting a
// unit calls onStart, which plays the part of the process systemd would run.
type fakeSystemd struct {
	mu      sync.Mutex
	units   map[string]*UnitState
	enabled map[string]bool
	files   map[string]bool // unit files systemd knows
	calls   []string
	onStart func(unit string, u *UnitState)
	// fail makes a call fail as systemd would: the key is the call as
	// callLog records it ("stop kato@a.service"), the value a *BusError.
	fail map[string]error
	// unitCalls counts the calls of Unit, the per-unit read;
	// listCalls those of ListUnits, serviceCalls those of
	// ServiceProperties, runCalls those of UnitRun, watchCalls those of
	// WatchUnits.
	unitCalls, listCalls, serviceCalls, runCalls, watchCalls int
	// watchers are the callbacks of WatchUnits; lose ends their watches.
	watchers []func(string)
	lose     []chan struct{}
	// onList, when set, runs at the start of every ListUnits call, outside
	// the fake's lock.
	onList func()
}

// busError is the error the real adapter returns for the D-Bus error name.
func busError(name, message string) error {
	return &BusError{Name: name, Message: message, sentinel: dbusSentinels[name]}
}

// failure returns the error injected for the call, if any.
func (f *fakeSystemd) failure(call string) error {
	if err, ok := f.fail[call]; ok {
		return err
	}
	return nil
}

func newFakeSystemd() *fakeSystemd {
	return &fakeSystemd{units: map[string]*UnitState{}, enabled: map[string]bool{}, files: map[string]bool{"kato@.service": true}}
}

func (f *fakeSystemd) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeSystemd) unit(name string) *UnitState {
	u, ok := f.units[name]
	if !ok {
		u = &UnitState{Name: name, LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
		f.units[name] = u
	}
	return u
}

func (f *fakeSystemd) StartUnit(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("start %s", name)
	if err := f.failure("start " + name); err != nil {
		return err
	}
	u := f.unit(name)
	if u.StartLimitHit() {
		// systemd refuses until reset-failed.
		return fmt.Errorf("start %s: job result %q: %w", name, "failed", ErrJobFailed)
	}
	u.ActiveState, u.SubState, u.ActiveSince = "active", "running", time.Now()
	if f.onStart != nil {
		f.onStart(name, u)
	}
	f.notify(name)
	return nil
}

func (f *fakeSystemd) StopUnit(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stop %s", name)
	if err := f.failure("stop " + name); err != nil {
		return err
	}
	u, ok := f.units[name]
	if !ok {
		// systemd refuses to stop a unit it has not loaded.
		return fmt.Errorf("stop %s: %w", name, busError("org.freedesktop.systemd1.NoSuchUnit", "Unit "+name+" not loaded."))
	}
	if u.ActiveState != "failed" {
		u.ActiveState, u.SubState, u.MainPID = "inactive", "dead", 0
	}
	f.notify(name)
	return nil
}

func (f *fakeSystemd) RestartUnit(ctx context.Context, name string) error {
	f.mu.Lock()
	f.record("restart %s", name)
	f.mu.Unlock()
	return f.StartUnit(ctx, name)
}

func (f *fakeSystemd) ReloadUnit(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("reload %s", name)
	u, ok := f.units[name]
	if !ok || u.ActiveState != "active" {
		return fmt.Errorf("reload %s: %w", name, ErrJobFailed)
	}
	return nil
}

func (f *fakeSystemd) ResetFailedUnit(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.units[name]; ok {
		if u.ActiveState == "failed" {
			u.ActiveState, u.SubState, u.Result = "inactive", "dead", "success"
		}
		u.NRestarts = 0
		f.notify(name)
	}
	return nil
}

func (f *fakeSystemd) EnableUnits(ctx context.Context, names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		f.record("enable %s", n)
		if err := f.failure("enable " + n); err != nil {
			return err
		}
		f.enabled[n] = true
	}
	return nil
}

func (f *fakeSystemd) DisableUnits(ctx context.Context, names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		f.record("disable %s", n)
		if err := f.failure("disable " + n); err != nil {
			return err
		}
		delete(f.enabled, n)
	}
	return nil
}

func (f *fakeSystemd) Reload(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("reload")
	// Inactive units are garbage-collected on reload, as systemd does.
	for name, u := range f.units {
		if u.ActiveState == "inactive" {
			delete(f.units, name)
		}
	}
	return nil
}

func (f *fakeSystemd) ListUnits(ctx context.Context, patterns ...string) ([]UnitState, error) {
	if f.onList != nil {
		f.onList()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listCalls++
	var out []UnitState
	for name, u := range f.units {
		if matchesAny(name, patterns) {
			out = append(out, UnitState{Name: name, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// matchesAny reports whether name matches one of the patterns, each with
// at most one '*'.
func matchesAny(name string, patterns []string) bool {
	for _, p := range patterns {
		prefix, suffix, _ := strings.Cut(p, "*")
		if strings.HasPrefix(name, prefix) && strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// ServiceProperties answers with the unit's fields, as one GetAll, and
// counts the call.
func (f *fakeSystemd) ServiceProperties(ctx context.Context, name string) (UnitState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serviceCalls++
	u, ok := f.units[name]
	if !ok {
		return UnitState{}, fmt.Errorf("read properties of %s: %w", name, busError("org.freedesktop.systemd1.NoSuchUnit", "Unit "+name+" not loaded."))
	}
	return *u, nil
}

// UnitRun answers with the unit's states, result and restart count, and
// counts the call.
func (f *fakeSystemd) UnitRun(ctx context.Context, name string) (UnitState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runCalls++
	u, ok := f.units[name]
	if !ok {
		return UnitState{Name: name, ActiveState: "inactive", SubState: "dead"}, nil
	}
	return UnitState{Name: name, ActiveState: u.ActiveState, SubState: u.SubState, Result: u.Result, NRestarts: u.NRestarts, MainPID: u.MainPID}, nil
}

// WatchUnits registers changed, which the fake calls whenever a unit
// changes (set, start, stop, restart, reset-failed), until ctx ends or
// loseWatch.
func (f *fakeSystemd) WatchUnits(ctx context.Context, changed func(unit string)) (<-chan error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchCalls++
	if err := f.failure("watch"); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	lost := make(chan struct{})
	f.watchers = append(f.watchers, changed)
	f.lose = append(f.lose, lost)
	go func() {
		select {
		case <-ctx.Done():
			done <- nil
		case <-lost:
			done <- fmt.Errorf("watch units: the connection to systemd was lost")
		}
	}()
	return done, nil
}

// loseWatch ends every watch as a lost connection does.
func (f *fakeSystemd) loseWatch() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.lose {
		close(l)
	}
	f.watchers, f.lose = nil, nil
}

// notify tells the watchers that a unit changed; f.mu is held.
func (f *fakeSystemd) notify(name string) {
	for _, w := range f.watchers {
		w(name)
	}
}

func (f *fakeSystemd) Unit(ctx context.Context, name string) (UnitState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unitCalls++
	state := "disabled"
	if f.enabled[name] {
		state = "enabled"
	}
	if u, ok := f.units[name]; ok {
		c := *u
		c.UnitFileState = state
		return c, nil
	}
	return UnitState{Name: name, LoadState: "not-found", ActiveState: "inactive", SubState: "dead", UnitFileState: state}, nil
}

func (f *fakeSystemd) UnitFileExists(ctx context.Context, name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.files[name], nil
}

func (f *fakeSystemd) Version(ctx context.Context) (string, error) { return "252", nil }

// set changes a unit's state, as a crash or an operator would.
func (f *fakeSystemd) set(name string, change func(u *UnitState)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f.unit(name))
	f.notify(name)
}

func (f *fakeSystemd) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// fakePorts is the host's listening sockets.
type fakePorts struct {
	mu sync.Mutex
	m  map[int]int32
	// listings counts the calls of Listening, which reads every
	// process's sockets on a real host.
	listings int
}

func (p *fakePorts) Listening(ctx context.Context) (map[int]int32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listings++
	out := make(map[int]int32, len(p.m))
	for k, v := range p.m {
		out[k] = v
	}
	return out, nil
}

func (p *fakePorts) ListeningBy(ctx context.Context, pid int32) (map[int]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[int]bool{}
	for port, holder := range p.m {
		if holder == pid {
			out[port] = true
		}
	}
	return out, nil
}

func (p *fakePorts) ListeningByEach(ctx context.Context, pids []int32) (map[int32]map[int]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[int32]map[int]bool{}
	for _, pid := range pids {
		out[pid] = map[int]bool{}
		for port, holder := range p.m {
			if holder == pid {
				out[pid][port] = true
			}
		}
	}
	return out, nil
}

func (p *fakePorts) InUse(ctx context.Context, port int) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, held := p.m[port]
	return held, nil
}

func (p *fakePorts) listen(port int, pid int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[port] = pid
}

func (p *fakePorts) close(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, port)
}

// fakeProcesses maps units to processes.
type fakeProcesses struct {
	mu sync.Mutex
	m  map[string]UnitProcesses
}

func (p *fakeProcesses) ByUnit(ctx context.Context, units []string) (map[string]UnitProcesses, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]UnitProcesses{}
	for _, u := range units {
		if up, ok := p.m[u]; ok {
			out[u] = up
		}
	}
	return out, nil
}
