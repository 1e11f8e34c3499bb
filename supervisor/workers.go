package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/units"
)

// WorkerEnvFile is the environment file every kg-worker@.service reads; the
// pool writes the settings given on the command line there.
const WorkerEnvFile = "kg-worker.env"

// Pool drives the KG worker pool: kg-worker@1.service … kg-worker@N.service.
type Pool struct {
	Systemd Systemd
	Config  *config.Config
	// EnvDir is where WorkerEnvFile lives: /etc/kato.
	EnvDir string
	// UnitDir is where the workers' drop-in with their resource limits
	// goes: /etc/systemd/system.
	UnitDir string
	// ProcessStatus reports a process's state letters as gopsutil does (R,
	// S, T, Z, …); nil means gopsutil.
	ProcessStatus func(ctx context.Context, pid int32) ([]string, error)
}

// OpenPool is the worker pool of m's configuration on m's systemd, its
// unit files installed first when systemd does not have them yet
// (EnsureUnits, with m's tools), as a first start of an instance does.
func (m *Manager) OpenPool(ctx context.Context) (*Pool, error) {
	if err := m.EnsureUnits(ctx); err != nil {
		return nil, err
	}
	return &Pool{Systemd: m.Systemd, Config: m.Config, EnvDir: m.Paths.WorkerEnvDir, UnitDir: m.Paths.UnitDir}, nil
}

// PoolSettings are what `workers start` may set for the whole pool.
type PoolSettings struct {
	// PollInterval in seconds; zero keeps what the workers read already.
	// It is checked by the rule of kg.poll_interval.
	PollInterval float64
}

// workerUnits lists the pool's units known to systemd, by worker number.
func (p *Pool) workerUnits(ctx context.Context) (map[int]UnitState, error) {
	list, err := p.Systemd.ListUnits(ctx, units.WorkerPattern)
	if err != nil {
		return nil, err
	}
	out := map[int]UnitState{}
	for _, u := range list {
		if n, ok := units.WorkerNumber(u.Name); ok && u.LoadState == "loaded" {
			out[n] = u
		}
	}
	return out, nil
}

// Start writes the pool settings and starts workers 1..n; workers above n
// that run are left alone (use Scale to stop them).
func (p *Pool) Start(ctx context.Context, n int, s PoolSettings) ([]string, error) {
	if err := ValidateWorkerCount(n); err != nil {
		return nil, err
	}
	if s.PollInterval != 0 {
		k := p.Config.KG
		k.PollInterval = s.PollInterval
		if err := config.CheckKG("poll_interval", "poll_interval", &k); err != nil {
			return nil, err
		}
		if err := setEnvLine(filepath.Join(p.EnvDir, WorkerEnvFile), "KG_POLL_INTERVAL", strconv.FormatFloat(s.PollInterval, 'g', -1, 64)); err != nil {
			return nil, err
		}
	}
	if err := p.writeDropIn(ctx); err != nil {
		return nil, err
	}
	var started []string
	names := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		names = append(names, units.WorkerUnit(i))
	}
	// The .wants symlinks bring the workers back at boot; the template has
	// no per-worker files, so nothing here needs a daemon-reload.
	if err := p.Systemd.EnableUnits(ctx, names); err != nil {
		return nil, err
	}
	for _, name := range names {
		if err := p.Systemd.ResetFailedUnit(ctx, name); err != nil {
			return started, err
		}
		// A running worker is restarted so that it reads new settings.
		start := p.Systemd.StartUnit
		if s.PollInterval != 0 {
			start = p.Systemd.RestartUnit
		}
		if err := start(ctx, name); err != nil {
			return started, err
		}
		started = append(started, name)
	}
	return started, nil
}

// writeDropIn writes the limits of kato.toml into the drop-in every worker
// reads, reloading systemd when it changed.
func (p *Pool) writeDropIn(ctx context.Context) error {
	l := p.Config.Limits
	data, err := units.RenderWorkerDropIn(units.Limits{MemoryMax: l.WorkerMemoryMax, TasksMax: l.WorkerTasksMax})
	if err != nil {
		return err
	}
	changed, err := writeFileAtomic(filepath.Join(p.UnitDir, units.WorkerDropInDir, units.DropInName), data, 0o644)
	if err != nil || !changed {
		return err
	}
	return p.Systemd.Reload(ctx)
}

// setEnvLine sets name=value in the environment file at path and keeps
// everything else in it: the other lines, comments included, in their order,
// and the file's mode. A file that does not exist is created 0600 with a
// header: systemd reads it as root, and the pool may keep credentials there
// (KG_SERVICE_URL), so it is root's alone, as the instances' files.
func setEnvLine(path, name, value string) error {
	mode := os.FileMode(0o600)
	var lines []string
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
		lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if len(data) == 0 {
			lines = nil
		}
	case errors.Is(err, fs.ErrNotExist):
		lines = []string{"# Settings for every kg-worker@.service; `kato-manager workers start` sets KG_POLL_INTERVAL."}
	default:
		return fmt.Errorf("read %s: %w", path, err)
	}
	line := name + "=" + value
	set := false
	out := lines[:0:0]
	for _, l := range lines {
		t := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "export "))
		if k, _, ok := strings.Cut(t, "="); ok && strings.TrimSpace(k) == name {
			if set {
				continue // a later duplicate would win in systemd; drop it
			}
			l, set = line, true
		}
		out = append(out, l)
	}
	if !set {
		out = append(out, line)
	}
	_, err = writeFileAtomic(path, []byte(strings.Join(out, "\n")+"\n"), mode)
	return err
}

// ValidateWorkerCount checks a number of workers: 1 to config.MaxWorkers.
func ValidateWorkerCount(n int) error {
	if n < 1 || n > config.MaxWorkers {
		return &config.FieldError{Field: "workers", Value: strconv.Itoa(n), Rule: fmt.Sprintf("must be between 1 and %d", config.MaxWorkers)}
	}
	return nil
}

// Stop stops and disables every worker. Each worker, on SIGTERM, stops
// claiming and finishes or hands back what it holds, so nothing is left
// in 'processing'.
func (p *Pool) Stop(ctx context.Context) ([]string, error) {
	return p.stopAbove(ctx, 0)
}

// stopAbove stops and disables workers numbered above n.
func (p *Pool) stopAbove(ctx context.Context, n int) ([]string, error) {
	known, err := p.workerUnits(ctx)
	if err != nil {
		return nil, err
	}
	var stopped []string
	var errs []error
	for _, num := range sortedInts(known) {
		if num <= n {
			continue
		}
		name := units.WorkerUnit(num)
		if err := p.Systemd.DisableUnits(ctx, []string{name}); err != nil && !errors.Is(err, ErrNoSuchUnit) {
			errs = append(errs, err)
		}
		// systemd keeps a stopped unit loaded for a while: one that is
		// already inactive is disabled, not reported again.
		if known[num].ActiveState == "inactive" {
			continue
		}
		if err := p.Systemd.StopUnit(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := p.Systemd.ResetFailedUnit(ctx, name); err != nil {
			errs = append(errs, err)
		}
		stopped = append(stopped, name)
	}
	return stopped, errors.Join(errs...)
}

// Restart restarts every worker that runs.
func (p *Pool) Restart(ctx context.Context) ([]string, error) {
	known, err := p.workerUnits(ctx)
	if err != nil {
		return nil, err
	}
	var restarted []string
	for _, num := range sortedInts(known) {
		if !known[num].Active() && known[num].ActiveState != "failed" {
			continue
		}
		name := units.WorkerUnit(num)
		if err := p.Systemd.ResetFailedUnit(ctx, name); err != nil {
			return restarted, err
		}
		if err := p.Systemd.RestartUnit(ctx, name); err != nil {
			return restarted, err
		}
		restarted = append(restarted, name)
	}
	if len(restarted) == 0 {
		return nil, errors.New("no workers run; start them with `kato-manager workers start`")
	}
	return restarted, nil
}

// Scale makes exactly workers 1..n run, starting and stopping the
// difference while the others keep working.
func (p *Pool) Scale(ctx context.Context, n int) (started, stopped []string, err error) {
	if err := ValidateWorkerCount(n); err != nil {
		return nil, nil, err
	}
	started, err = p.Start(ctx, n, PoolSettings{})
	if err != nil {
		return started, nil, err
	}
	stopped, err = p.stopAbove(ctx, n)
	return started, stopped, err
}

// WorkerHealth is one worker's health: systemd's view and its process's.
type WorkerHealth struct {
	// Host is the host the worker runs on; Local says whether that is
	// this host. Pool.Health reports this host's workers; `workers
	// health` adds other hosts' (RemoteHealth) when they share the queue.
	Host  string `json:"host"`
	Local bool   `json:"local"`
	// Index is the KG Manager's worker_id: the worker's place counted from
	// 0, one less than WorkerID.
	Index int `json:"worker_id"`
	// WorkerID is the N of the worker's unit kg-worker@N.service, from 1.
	WorkerID    int    `json:"instance"`
	Unit        string `json:"unit"`
	Running     bool   `json:"running"`
	ActiveState string `json:"active_state"`
	SubState    string `json:"sub_state"`
	PID         uint32 `json:"pid"`
	// ProcessState is the main process's state as /proc shows it:
	// running, sleep, stop, zombie, …
	ProcessState string `json:"process_state,omitempty"`
	Restarts     uint32 `json:"restarts"`
	Problem      string `json:"problem,omitempty"`
	// Stats are the worker's counters from its report, as the KG
	// Manager's health check gave them; nil where no report was read.
	Stats *kgdb.WorkerStats `json:"stats,omitempty"`
}

// PoolHealth is the KG Manager's check_worker_health, answered by systemd and
// /proc.
type PoolHealth struct {
	ManagerRunning   bool           `json:"manager_running"`
	TotalWorkers     int            `json:"total_workers"`
	HealthyWorkers   int            `json:"healthy_workers"`
	UnhealthyWorkers int            `json:"unhealthy_workers"`
	WorkersRestarted uint32         `json:"workers_restarted"`
	Workers          []WorkerHealth `json:"-"`
}

// Health inspects every worker systemd knows. A worker is healthy when its
// unit is active and running and its main process is not stopped or a
// zombie.
func (p *Pool) Health(ctx context.Context) (*PoolHealth, error) {
	known, err := p.workerUnits(ctx)
	if err != nil {
		return nil, err
	}
	h := &PoolHealth{Workers: []WorkerHealth{}}
	host := Hostname()
	statusOf := p.ProcessStatus
	if statusOf == nil {
		statusOf = func(ctx context.Context, pid int32) ([]string, error) {
			proc, err := process.NewProcessWithContext(ctx, pid)
			if err != nil {
				return nil, err
			}
			return proc.StatusWithContext(ctx)
		}
	}
	for _, num := range sortedInts(known) {
		name := units.WorkerUnit(num)
		u, err := p.Systemd.Unit(ctx, name)
		if err != nil {
			return nil, err
		}
		if u.ActiveState == "inactive" {
			continue // stopped on purpose: not part of the pool
		}
		w := WorkerHealth{Host: host, Local: true, Index: num - 1, WorkerID: num, Unit: name, ActiveState: u.ActiveState, SubState: u.SubState, PID: u.MainPID, Restarts: u.NRestarts}
		h.WorkersRestarted += u.NRestarts
		switch {
		case u.StartLimitHit():
			w.Problem = "systemd gave up restarting it (start limit hit); see `journalctl -u " + name + "`, fix the cause, then `kato-manager workers restart`"
		case u.ActiveState != "active" || u.SubState != "running":
			w.Problem = fmt.Sprintf("unit is %s/%s", u.ActiveState, u.SubState)
		case u.MainPID == 0:
			w.Problem = "no main process"
		default:
			states, err := statusOf(ctx, int32(u.MainPID))
			if err != nil {
				w.Problem = fmt.Sprintf("process %d: %v", u.MainPID, err)
				break
			}
			if len(states) > 0 {
				w.ProcessState = states[0]
			}
			if w.ProcessState == process.Stop || w.ProcessState == process.Zombie {
				w.Problem = fmt.Sprintf("process %d is %s", u.MainPID, w.ProcessState)
			}
		}
		w.Running = w.Problem == ""
		if w.Running {
			h.HealthyWorkers++
		} else {
			h.UnhealthyWorkers++
		}
		h.Workers = append(h.Workers, w)
	}
	h.TotalWorkers = len(h.Workers)
	h.ManagerRunning = h.HealthyWorkers > 0
	return h, nil
}

// RestartUnhealthy restarts the workers Health found unhealthy.
func (p *Pool) RestartUnhealthy(ctx context.Context, h *PoolHealth) ([]string, error) {
	var restarted []string
	for _, w := range h.Workers {
		if w.Running {
			continue
		}
		if err := p.Systemd.ResetFailedUnit(ctx, w.Unit); err != nil {
			return restarted, err
		}
		if err := p.Systemd.RestartUnit(ctx, w.Unit); err != nil {
			return restarted, err
		}
		restarted = append(restarted, w.Unit)
	}
	return restarted, nil
}

func sortedInts[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
