package kgpool

import (
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/supervisor"
)

// TestHealth: this host's workers get their reports' counters, other hosts'
// workers are listed only when the reports are shared, and a pool whose
// workers are healthy is degraded while the KG service is not.
func TestHealth(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pool := func() *supervisor.PoolHealth {
		return &supervisor.PoolHealth{ManagerRunning: true, TotalWorkers: 1, HealthyWorkers: 1,
			Workers: []supervisor.WorkerHealth{{WorkerID: 1, Running: true, PID: 100, Local: true}}}
	}
	reports := []kgdb.Report{
		{Host: "a", WorkerID: 1, PID: 100, UpdatedAt: now, Stats: kgdb.WorkerStats{TotalProcessed: 4}},
		{Host: "b", WorkerID: 1, PID: 200, UpdatedAt: now},
	}
	healthy := ServiceHealth{ServiceStatus: kgdb.ServiceStatus{Enabled: true, IsHealthy: true}}
	r := Health(pool(), reports, false, healthy, "a", now)
	if r.Status != StatusHealthy || len(r.WorkerDetails) != 1 || r.WorkerDetails[0].Stats == nil || r.WorkerDetails[0].Stats.TotalProcessed != 4 {
		t.Errorf("one host: %+v", r)
	}
	if r.KGServiceStatus == nil || !r.KGServiceStatus.IsHealthy {
		t.Errorf("service: %+v", r.KGServiceStatus)
	}
	r = Health(pool(), reports, true, healthy, "a", now)
	if len(r.WorkerDetails) != 2 || r.WorkerDetails[1].Host != "b" || r.WorkerDetails[1].SubState != "reporting" {
		t.Errorf("shared reports: %+v", r.WorkerDetails)
	}
	down := ServiceHealth{ServiceStatus: kgdb.ServiceStatus{Enabled: true}, Problem: "connection refused"}
	if r := Health(pool(), reports, false, down, "a", now); r.Status != StatusDegraded {
		t.Errorf("service down: status %s, want %s", r.Status, StatusDegraded)
	}
	off := ServiceHealth{ServiceStatus: kgdb.ServiceStatus{Enabled: false}}
	if r := Health(pool(), reports, false, off, "a", now); r.Status != StatusHealthy {
		t.Errorf("service disabled: status %s, want %s", r.Status, StatusHealthy)
	}
	sick := pool()
	sick.UnhealthyWorkers, sick.HealthyWorkers = 1, 0
	if r := Health(sick, reports, false, down, "a", now); r.Status != StatusUnhealthy {
		t.Errorf("unhealthy worker: status %s, want %s", r.Status, StatusUnhealthy)
	}
}
