package supervisor

import (
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/kgworker"
)

func TestAggregateStats(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h := &PoolHealth{TotalWorkers: 2, HealthyWorkers: 2, ManagerRunning: true, WorkersRestarted: 3, Workers: []WorkerHealth{
		{WorkerID: 1, Unit: "kg-worker@1.service", Running: true, PID: 100, Restarts: 1},
		{WorkerID: 2, Unit: "kg-worker@2.service", Running: true, PID: 200, Restarts: 2},
	}}
	reports := []kgworker.Report{
		{WorkerID: 1, PID: 100, StartedAt: t0.Add(time.Minute), Stats: kgworker.Stats{TotalProcessed: 72, TotalSuccess: 70, TotalFailed: 2},
			Service: kgworker.ServiceStatus{Enabled: true, URL: "http://localhost:8088", IsHealthy: true}},
		{WorkerID: 2, PID: 200, StartedAt: t0, Stats: kgworker.Stats{TotalProcessed: 73, TotalSuccess: 72, TotalFailed: 1},
			Service: kgworker.ServiceStatus{Enabled: true, URL: "http://other", ConsecutiveFailures: 4}},
		// A worker that was scaled away: not part of the sums.
		{WorkerID: 3, PID: 300, Stats: kgworker.Stats{TotalProcessed: 1000}},
	}
	queue := kgworker.Counts{Pending: 5, Processing: 2, Completed: 140, Failed: 3, Total: 150}
	s := AggregateStats(h, reports, queue, true, t0.Add(time.Hour), Hosts{This: "kato2", Fresh: time.Minute})
	if s.TotalProcessed != 145 || s.TotalSuccess != 142 || s.TotalFailed != 3 {
		t.Errorf("sums = %d/%d/%d, want 145/142/3", s.TotalProcessed, s.TotalSuccess, s.TotalFailed)
	}
	if s.KGServiceStatus.URL != "http://localhost:8088" || !s.KGServiceStatus.IsHealthy {
		t.Errorf("service status should be the first worker's: %+v", s.KGServiceStatus)
	}
	if s.QueueSize != queue || s.WorkersRestarted != 3 || !s.ManagerStartedAt.Equal(t0) || len(s.WorkerDetails) != 2 {
		t.Errorf("stats = %+v", s)
	}
	// A report from an earlier process of worker 2 (another pid) does not
	// count for the running one.
	reports[1].PID = 199
	s = AggregateStats(h, reports, queue, true, t0, Hosts{This: "kato2", Fresh: time.Minute})
	if s.TotalProcessed != 72 || s.WorkerDetails[1].Stats.TotalProcessed != 0 {
		t.Errorf("stale report counted: %+v", s)
	}
}

func TestAggregateStatsRedactsServiceURL(t *testing.T) {
	h := &PoolHealth{TotalWorkers: 1, Workers: []WorkerHealth{{WorkerID: 1, Running: true, PID: 100}}}
	reports := []kgworker.Report{{WorkerID: 1, PID: 100,
		Service: kgworker.ServiceStatus{Enabled: true, URL: "https://kg:hunter2@kg.example:8088/base"}}}
	s := AggregateStats(h, reports, kgworker.Counts{}, true, time.Now(), Hosts{})
	if got := s.KGServiceStatus.URL; got != "https://REDACTED@kg.example:8088/base" {
		t.Errorf("/stats shows the service URL as %q", got)
	}
}

// TestAggregateStatsOverHosts: with a queue shared by hosts, the stats
// show this host's workers from systemd and its reports, and the other
// hosts' workers from their recent reports, each marked with its host; a
// worker of this host's number on another host is not confused with ours,
// and a host whose reports are older than Fresh is gone.
func TestAggregateStatsOverHosts(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h := &PoolHealth{TotalWorkers: 1, ManagerRunning: true, Workers: []WorkerHealth{
		{WorkerID: 1, Unit: "kg-worker@1.service", Running: true, PID: 100},
	}}
	reports := []kgworker.Report{
		{Host: "kato2", WorkerID: 1, PID: 100, UpdatedAt: now.Add(-2 * time.Minute), Stats: kgworker.Stats{TotalProcessed: 10, TotalSuccess: 10}},
		// Another host's worker 1, with the same pid: not ours.
		{Host: "kato3", WorkerID: 1, PID: 100, UpdatedAt: now.Add(-time.Second), Stats: kgworker.Stats{TotalProcessed: 20, TotalSuccess: 19, TotalFailed: 1}},
		{Host: "kato3", WorkerID: 2, PID: 101, UpdatedAt: now.Add(-10 * time.Second), Stats: kgworker.Stats{TotalProcessed: 30, TotalSuccess: 30}},
		// A host that vanished a minute and a half ago.
		{Host: "kato4", WorkerID: 1, PID: 7, UpdatedAt: now.Add(-90 * time.Second), Stats: kgworker.Stats{TotalProcessed: 1000}},
	}
	s := AggregateStats(h, reports, kgworker.Counts{}, true, now, Hosts{This: "kato2", Fresh: time.Minute})
	if s.TotalWorkers != 3 || s.TotalProcessed != 60 || s.TotalSuccess != 59 || s.TotalFailed != 1 {
		t.Errorf("totals: %d workers, %d/%d/%d processed; want 3 and 60/59/1", s.TotalWorkers, s.TotalProcessed, s.TotalSuccess, s.TotalFailed)
	}
	want := []WorkerDetail{
		{Host: "kato2", ThisHost: true, WorkerID: 1, Running: true, Unit: "kg-worker@1.service", PID: 100, Stats: reports[0].Stats},
		{Host: "kato3", WorkerID: 1, Running: true, Unit: "kg-worker@1.service", PID: 100, Stats: reports[1].Stats},
		{Host: "kato3", WorkerID: 2, Running: true, Unit: "kg-worker@2.service", PID: 101, Stats: reports[2].Stats},
	}
	if len(s.WorkerDetails) != len(want) {
		t.Fatalf("worker_details = %+v, want %+v", s.WorkerDetails, want)
	}
	for i := range want {
		if s.WorkerDetails[i] != want[i] {
			t.Errorf("worker_details[%d] = %+v, want %+v", i, s.WorkerDetails[i], want[i])
		}
	}
}
