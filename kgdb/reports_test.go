package kgdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
)

func TestReportsReplacePerWorker(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		q, path := openQueue(t, be)
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		publish := func(q *kgdb.DB, r kgdb.Report) {
			t.Helper()
			if err := q.PublishReport(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		publish(q, kgdb.Report{WorkerID: 2, Owner: "kg-worker@2/20", PID: 20, StartedAt: t0, UpdatedAt: t0,
			Stats: kgdb.WorkerStats{TotalProcessed: 3, TotalSuccess: 2, TotalFailed: 1}})
		publish(q, kgdb.Report{WorkerID: 1, Owner: "kg-worker@1/10", PID: 10, StartedAt: t0, UpdatedAt: t0,
			Stats:   kgdb.WorkerStats{TotalProcessed: 5, TotalSuccess: 5},
			Service: kgdb.ServiceStatus{Enabled: true, URL: "http://localhost:8088", IsHealthy: true, ConsecutiveFailures: 0}})
		// Worker 1 restarts: its new process's report replaces the old one.
		publish(q, kgdb.Report{WorkerID: 1, Owner: "kg-worker@1/11", PID: 11, StartedAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Hour),
			Stats: kgdb.WorkerStats{TotalProcessed: 1, TotalSuccess: 1}, Service: kgdb.ServiceStatus{Enabled: true, ConsecutiveFailures: 2}})

		// Another process sees the same reports.
		other := openQueueAt(t, path)
		reports, err := other.Reports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(reports) != 2 {
			t.Fatalf("reports = %+v", reports)
		}
		one, two := reports[0], reports[1]
		if one.WorkerID != 1 || one.PID != 11 || one.Stats.TotalProcessed != 1 || one.Service.ConsecutiveFailures != 2 || !one.StartedAt.Equal(t0.Add(time.Hour)) {
			t.Errorf("worker 1 = %+v", one)
		}
		if two.WorkerID != 2 || two.Stats.TotalFailed != 1 || two.Owner != "kg-worker@2/20" || !two.UpdatedAt.Equal(t0) {
			t.Errorf("worker 2 = %+v", two)
		}
	})
}

// TestReportsPerHost: workers of the same number on two hosts sharing the
// database keep a report each, listed by host; a restart on one host
// replaces only that host's report.
func TestReportsPerHost(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		q, _ := openQueue(t, be)
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		for _, r := range []kgdb.Report{
			{Host: "b.example", WorkerID: 1, Owner: "kg-worker@1/10@b.example", PID: 10, StartedAt: t0, UpdatedAt: t0},
			{Host: "a.example", WorkerID: 1, Owner: "kg-worker@1/10@a.example", PID: 10, StartedAt: t0, UpdatedAt: t0},
			{Host: "a.example", WorkerID: 1, Owner: "kg-worker@1/12@a.example", PID: 12, StartedAt: t0, UpdatedAt: t0},
		} {
			if err := q.PublishReport(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		reports, err := q.Reports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(reports) != 2 || reports[0].Host != "a.example" || reports[0].PID != 12 || reports[1].Host != "b.example" || reports[1].PID != 10 {
			t.Fatalf("reports = %+v, want a.example's worker 1 (pid 12) and b.example's (pid 10)", reports)
		}
	})
}
