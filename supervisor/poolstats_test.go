package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
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
	s := AggregateStats(h, reports, queue, true, t0.Add(time.Hour), "a.example")
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
	s = AggregateStats(h, reports, queue, true, t0, "a.example")
	if s.TotalProcessed != 72 || s.WorkerDetails[1].Stats.TotalProcessed != 0 {
		t.Errorf("stale report counted: %+v", s)
	}
}

func TestAggregateStatsRedactsServiceURL(t *testing.T) {
	h := &PoolHealth{TotalWorkers: 1, Workers: []WorkerHealth{{WorkerID: 1, Running: true, PID: 100}}}
	reports := []kgworker.Report{{WorkerID: 1, PID: 100,
		Service: kgworker.ServiceStatus{Enabled: true, URL: "https://kg:hunter2@kg.example:8088/base"}}}
	s := AggregateStats(h, reports, kgworker.Counts{}, true, time.Now(), "a.example")
	if got := s.KGServiceStatus.URL; got != "https://REDACTED@kg.example:8088/base" {
		t.Errorf("/stats shows the service URL as %q", got)
	}
}

// TestAggregateStatsOfManyHosts: with workers of other hosts reporting to
// the same queue, this host's worker 1 is joined with this host's report
// only; another host's worker 1 that still reports is listed and counted,
// one that stopped reporting is listed with the reason and not counted.
func TestAggregateStatsOfManyHosts(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h := &PoolHealth{TotalWorkers: 1, HealthyWorkers: 1, Workers: []WorkerHealth{
		{WorkerID: 1, Unit: "kg-worker@1.service", Running: true, PID: 100},
	}}
	reports := []kgworker.Report{
		{Host: "a.example", WorkerID: 1, PID: 100, UpdatedAt: now, Stats: kgworker.Stats{TotalProcessed: 10}},
		{Host: "b.example", WorkerID: 1, PID: 100, UpdatedAt: now.Add(-5 * time.Second), Stats: kgworker.Stats{TotalProcessed: 20}},
		{Host: "c.example", WorkerID: 2, PID: 300, UpdatedAt: now.Add(-10 * time.Minute), Stats: kgworker.Stats{TotalProcessed: 1000}},
	}
	s := AggregateStats(h, reports, kgworker.Counts{}, true, now, "a.example")
	if s.TotalWorkers != 2 || s.TotalProcessed != 30 || len(s.WorkerDetails) != 3 {
		t.Fatalf("stats = %+v, want 2 workers, 30 processed, 3 rows", s)
	}
	local, b, c := s.WorkerDetails[0], s.WorkerDetails[1], s.WorkerDetails[2]
	if local.Host != "a.example" || !local.Local || local.Stats.TotalProcessed != 10 {
		t.Errorf("this host's worker = %+v", local)
	}
	if b.Host != "b.example" || b.Local || !b.Running || b.Stats.TotalProcessed != 20 || b.Unit != "kg-worker@1.service" {
		t.Errorf("b's worker = %+v", b)
	}
	if c.Host != "c.example" || c.Running || c.Problem != "no report for 10m0s" || c.Stats.TotalProcessed != 0 {
		t.Errorf("c's silent worker = %+v", c)
	}
}

// TestRemoteHealth: other hosts' workers are listed from their reports,
// reporting or silent, and this host's reports are left to Pool.Health.
func TestRemoteHealth(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	rows := RemoteHealth([]kgworker.Report{
		{Host: "a.example", WorkerID: 1, PID: 10, UpdatedAt: now},
		{WorkerID: 2, PID: 11, UpdatedAt: now},
		{Host: "b.example", WorkerID: 1, PID: 20, UpdatedAt: now.Add(-10 * time.Second)},
		{Host: "b.example", WorkerID: 2, PID: 21, UpdatedAt: now.Add(-2 * time.Minute)},
	}, "a.example", now)
	if len(rows) != 2 {
		t.Fatalf("rows = %+v, want b.example's two workers", rows)
	}
	if r := rows[0]; r.Host != "b.example" || r.Local || !r.Running || r.SubState != "reporting" || r.Unit != "kg-worker@1.service" || r.PID != 20 {
		t.Errorf("reporting worker = %+v", r)
	}
	if r := rows[1]; r.Running || r.SubState != "silent" || r.Problem != "no report for 2m0s" {
		t.Errorf("silent worker = %+v", r)
	}
}

// TestAggregateStatsAsTheKGManager: worker_id counts from 0 as the KG
// Manager's did, the unit's number is beside it, and skipped items are
// counted.
func TestAggregateStatsAsTheKGManager(t *testing.T) {
	h := &PoolHealth{TotalWorkers: 2, Workers: []WorkerHealth{
		{WorkerID: 1, Unit: "kg-worker@1.service", Running: true, PID: 100, Local: true},
		{WorkerID: 2, Unit: "kg-worker@2.service", Running: true, PID: 200, Local: true},
	}}
	reports := []kgworker.Report{
		{Host: "a.example", WorkerID: 1, PID: 100, Stats: kgworker.Stats{TotalProcessed: 13, TotalSuccess: 12, TotalSkipped: 1}},
		{Host: "a.example", WorkerID: 2, PID: 200, Stats: kgworker.Stats{TotalProcessed: 2, TotalFailed: 1, TotalSkipped: 1}},
	}
	s := AggregateStats(h, reports, kgworker.Counts{}, true, time.Now(), "a.example")
	if s.TotalProcessed != 15 || s.TotalSuccess != 12 || s.TotalFailed != 1 || s.TotalSkipped != 2 {
		t.Errorf("sums = %+v, want 15 processed: 12 success, 1 failed, 2 skipped", s)
	}
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		TotalSkipped  int `json:"total_skipped"`
		WorkerDetails []struct {
			WorkerID int            `json:"worker_id"`
			Instance int            `json:"instance"`
			Unit     string         `json:"unit"`
			Stats    kgworker.Stats `json:"stats"`
		} `json:"worker_details"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if out.TotalSkipped != 2 || len(out.WorkerDetails) != 2 {
		t.Fatalf("JSON: %s", raw)
	}
	for i, w := range out.WorkerDetails {
		if w.WorkerID != i || w.Instance != i+1 || w.Unit != fmt.Sprintf("kg-worker@%d.service", i+1) {
			t.Errorf("worker_details[%d] = %+v, want worker_id %d of kg-worker@%d.service", i, w, i, i+1)
		}
	}
	if out.WorkerDetails[0].Stats.TotalSkipped != 1 {
		t.Errorf("worker 0's stats: %+v", out.WorkerDetails[0].Stats)
	}
}

// TestAttachStats: each worker of this host gets its running process's
// counters, as the KG Manager's health check gave them; a report of an
// earlier process does not count.
func TestAttachStats(t *testing.T) {
	workers := []WorkerHealth{
		{Local: true, WorkerID: 1, PID: 100},
		{Local: true, WorkerID: 2, PID: 200},
	}
	AttachStats(workers, []kgworker.Report{
		{Host: "a.example", WorkerID: 1, PID: 100, Stats: kgworker.Stats{TotalProcessed: 7}},
		{Host: "a.example", WorkerID: 2, PID: 199, Stats: kgworker.Stats{TotalProcessed: 9}},
	}, "a.example")
	if workers[0].Stats == nil || workers[0].Stats.TotalProcessed != 7 {
		t.Errorf("worker 1: %+v", workers[0].Stats)
	}
	if workers[1].Stats != nil {
		t.Errorf("worker 2 got an earlier process's counters: %+v", workers[1].Stats)
	}
}

// TestCheckService: the KG service's state as its /health answers, a
// refused connection and an unhealthy answer each named, the URL's
// credentials never shown.
func TestCheckService(t *testing.T) {
	fake := kgservicefake.New()
	srv := httptest.NewServer(fake)
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://kg:secret@" + ln.Addr().String()
	ln.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		kg          config.KG
		outage      bool
		wantHealthy bool
		wantProblem string
	}{
		{"healthy", config.KG{ServiceEnabled: true, ServiceURL: srv.URL}, false, true, ""},
		{"unhealthy", config.KG{ServiceEnabled: true, ServiceURL: srv.URL}, true, false, `reports status "unhealthy"`},
		{"refused", config.KG{ServiceEnabled: true, ServiceURL: refused}, false, false, "connection refused"},
		{"disabled", config.KG{ServiceEnabled: false, ServiceURL: refused}, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetControl(kgservicefake.Control{Outage: tc.outage})
			h := CheckService(ctx, tc.kg)
			if h.IsHealthy != tc.wantHealthy || h.Enabled != tc.kg.ServiceEnabled || !strings.Contains(h.Problem, tc.wantProblem) || (tc.wantProblem == "") != (h.Problem == "") {
				t.Errorf("CheckService = %+v, want healthy %v, problem %q", h, tc.wantHealthy, tc.wantProblem)
			}
			if strings.Contains(h.Problem+h.URL, "secret") {
				t.Errorf("the password is shown: %+v", h)
			}
		})
	}
}
