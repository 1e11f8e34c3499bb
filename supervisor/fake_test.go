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
	u := f.unit(name)
	u.ActiveState, u.SubState, u.ActiveSince = "active", "running", time.Now()
	if f.onStart != nil {
		f.onStart(name, u)
	}
	return nil
}

func (f *fakeSystemd) StopUnit(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stop %s", name)
	if u, ok := f.units[name]; ok && u.ActiveState != "failed" {
		u.ActiveState, u.SubState, u.MainPID = "inactive", "dead", 0
	}
	return nil
}

func (f *fakeSystemd) RestartUnit(ctx context.Context, name string) error {
	f.mu.Lock()
	f.record("restart %s", name)
	f.mu.Unlock()
	return f.StartUnit(ctx, name)
}

func (f *fakeSystemd) ResetFailedUnit(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.units[name]; ok {
		if u.ActiveState == "failed" {
			u.ActiveState, u.SubState = "inactive", "dead"
		}
		u.NRestarts = 0
	}
	return nil
}

func (f *fakeSystemd) EnableUnits(ctx context.Context, names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		f.record("enable %s", n)
		f.enabled[n] = true
	}
	return nil
}

func (f *fakeSystemd) DisableUnits(ctx context.Context, names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		f.record("disable %s", n)
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
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []UnitState
	for name, u := range f.units {
		for _, p := range patterns {
			prefix, suffix, _ := strings.Cut(p, "*")
			if strings.HasPrefix(name, prefix) && strings.HasSuffix(name, suffix) {
				out = append(out, UnitState{Name: name, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeSystemd) Unit(ctx context.Context, name string) (UnitState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.units[name]; ok {
		return *u, nil
	}
	return UnitState{Name: name, LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}, nil
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
}

func (p *fakePorts) Listening(ctx context.Context) (map[int]int32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
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

func (p *fakePorts) Bound(ctx context.Context) (map[int]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[int]bool{}
	for port := range p.m {
		out[port] = true
	}
	return out, nil
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
