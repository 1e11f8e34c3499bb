package kgworker_test

import (
	"context"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/kgworker"
)

func TestReportsReplacePerWorker(t *testing.T) {
	ctx := context.Background()
	q, path := openQueue(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	publish := func(q *kgworker.Queue, r kgworker.Report) {
		t.Helper()
		if err := q.PublishReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	publish(q, kgworker.Report{WorkerID: 2, Owner: "kg-worker@2/20", PID: 20, StartedAt: t0, UpdatedAt: t0,
		Stats: kgworker.Stats{TotalProcessed: 3, TotalSuccess: 2, TotalFailed: 1}})
	publish(q, kgworker.Report{WorkerID: 1, Owner: "kg-worker@1/10", PID: 10, StartedAt: t0, UpdatedAt: t0,
		Stats:   kgworker.Stats{TotalProcessed: 5, TotalSuccess: 5},
		Service: kgworker.ServiceStatus{Enabled: true, URL: "http://localhost:8088", IsHealthy: true, ConsecutiveFailures: 0}})
	// Worker 1 restarts: its new process's report replaces the old one.
	publish(q, kgworker.Report{WorkerID: 1, Owner: "kg-worker@1/11", PID: 11, StartedAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Hour),
		Stats: kgworker.Stats{TotalProcessed: 1, TotalSuccess: 1}, Service: kgworker.ServiceStatus{Enabled: true, ConsecutiveFailures: 2}})

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
}
