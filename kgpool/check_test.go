package kgpool

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/units"
)

// workerSystemd knows two worker units, the first running and the second
// failed, and records the restarts; any other call panics (the nil
// interface), as Check must not make it.
type workerSystemd struct {
	supervisor.Systemd
	calls []string
}

func (s *workerSystemd) ListUnits(ctx context.Context, patterns ...string) ([]supervisor.UnitState, error) {
	return []supervisor.UnitState{{Name: units.WorkerUnit(1), LoadState: "loaded"}, {Name: units.WorkerUnit(2), LoadState: "loaded"}}, nil
}

func (s *workerSystemd) Unit(ctx context.Context, name string) (supervisor.UnitState, error) {
	if name == units.WorkerUnit(1) {
		return supervisor.UnitState{Name: name, LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: 100}, nil
	}
	return supervisor.UnitState{Name: name, LoadState: "loaded", ActiveState: "failed", SubState: "failed"}, nil
}

func (s *workerSystemd) ResetFailedUnit(ctx context.Context, name string) error {
	s.calls = append(s.calls, "reset-failed "+name)
	return nil
}

func (s *workerSystemd) RestartUnit(ctx context.Context, name string) error {
	s.calls = append(s.calls, "restart "+name)
	return nil
}

// TestCheck: the unit health, the reports' counters and the service's
// health in one report; unhealthy workers restarted only when asked; the
// reports failing is said, not an error.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	pool := func() (*supervisor.Pool, *workerSystemd) {
		sd := &workerSystemd{}
		return &supervisor.Pool{Systemd: sd, Config: config.Default(),
			ProcessStatus: func(context.Context, int32) ([]string, error) { return []string{"S"}, nil }}, sd
	}
	host := supervisor.Hostname()
	reports := func(context.Context) ([]kgdb.Report, error) {
		return []kgdb.Report{{Host: host, WorkerID: 1, PID: 100, UpdatedAt: time.Now(), Stats: kgdb.WorkerStats{TotalProcessed: 4}}}, nil
	}

	p, sd := pool()
	c, err := Check(ctx, p, reports, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Unhealthy != 1 || len(c.Restarted) != 0 || len(sd.calls) != 0 || c.ReportsErr != nil {
		t.Errorf("without restart: %+v, calls %v", c, sd.calls)
	}
	r := c.Report
	if r.Status != StatusUnhealthy || r.TotalWorkers != 2 || r.HealthyWorkers != 1 || r.KGServiceStatus == nil {
		t.Errorf("report: %+v", r)
	}
	if w := r.WorkerDetails[0]; w.WorkerID != 1 || w.Stats == nil || w.Stats.TotalProcessed != 4 {
		t.Errorf("worker 1 without its report's counters: %+v", w)
	}

	p, sd = pool()
	if c, err = Check(ctx, p, reports, true); err != nil {
		t.Fatal(err)
	}
	want := []string{"reset-failed " + units.WorkerUnit(2), "restart " + units.WorkerUnit(2)}
	if !slices.Equal(c.Restarted, []string{units.WorkerUnit(2)}) || !slices.Equal(sd.calls, want) {
		t.Errorf("with restart: restarted %v, calls %v; want %v", c.Restarted, sd.calls, want)
	}

	p, _ = pool()
	broken := errors.New("database is locked")
	c, err = Check(ctx, p, func(context.Context) ([]kgdb.Report, error) { return nil, broken }, false)
	if err != nil || !errors.Is(c.ReportsErr, broken) || c.Report.TotalWorkers != 2 {
		t.Errorf("without reports: %+v, %v", c, err)
	}
	if w := c.Report.WorkerDetails[0]; w.Stats != nil {
		t.Errorf("counters without reports: %+v", w)
	}
}
