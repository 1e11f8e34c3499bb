package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/kato-manager/kato-manager/internal/testkit/promtest"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/supervisor"
)

// scrape serves the collector as serve does and parses the answer with the
// Prometheus text parser.
func scrape(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	fams, err := promtest.Parse(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// takeSnapshot takes a snapshot of sample and q as serve does.
func takeSnapshot(t *testing.T, sample func(context.Context) (*supervisor.Sample, error), q Queue) *snapshot {
	t.Helper()
	snap, err := newSnapshots(sample, q, 0, 5*time.Second).get(context.Background(), defaultPageStatus)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// metricValue returns the value of the family's sample with the labels.
func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := promtest.Value(fams, name, labels...)
	if !ok {
		t.Fatalf("no %s%v in /metrics", name, labels)
	}
	return v
}

// TestMetricsFromSampleAndQueue: the collector turns a fleet sample, the
// queue's counts and latencies and the workers' reports into the metrics
// the README lists; a report of an earlier process (another pid) counts
// for nothing.
func TestMetricsFromSampleAndQueue(t *testing.T) {
	ctx := context.Background()
	q, err := kgworker.Open(ctx, filepath.Join(t.TempDir(), "kg.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for i := int64(1); i <= 3; i++ {
		if _, err := q.Enqueue(ctx, i, 1); err != nil {
			t.Fatal(err)
		}
	}
	items, err := q.ClaimBatch(ctx, "w1", 1, time.Minute)
	if err != nil || len(items) != 1 {
		t.Fatal(items, err)
	}
	if _, err := q.Fail(ctx, "w1", items[0].ID, "boom"); err != nil {
		t.Fatal(err)
	}
	started := time.Now().Add(-time.Hour)
	if err := q.PublishReport(ctx, kgworker.Report{WorkerID: 1, Owner: "w1", PID: 77, StartedAt: started, UpdatedAt: time.Now(),
		Stats:   kgworker.Stats{TotalProcessed: 12, TotalSuccess: 9, TotalFailed: 3},
		Service: kgworker.ServiceStatus{Enabled: true, IsHealthy: false, ConsecutiveFailures: 4}}); err != nil {
		t.Fatal(err)
	}
	if err := q.PublishReport(ctx, kgworker.Report{WorkerID: 2, Owner: "w2", PID: 55, Stats: kgworker.Stats{TotalProcessed: 100}}); err != nil {
		t.Fatal(err)
	}
	// Workers of two other hosts sharing the queue: one reports, one fell
	// silent.
	for _, r := range []kgworker.Report{
		{Host: "b.example", WorkerID: 1, Owner: "b1", PID: 77, UpdatedAt: time.Now(), Stats: kgworker.Stats{TotalProcessed: 40, TotalFailed: 1}},
		{Host: "c.example", WorkerID: 1, Owner: "c1", PID: 78, UpdatedAt: time.Now().Add(-time.Hour), Stats: kgworker.Stats{TotalProcessed: 5}},
	} {
		if err := q.PublishReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Unix(1700000000, 500000000)
	sample := &supervisor.Sample{
		Instances: []supervisor.InstanceSample{
			{InstanceView: supervisor.InstanceView{ID: "a", Name: "Alpha", ActiveState: "active", SubState: "running", PID: 10, MemoryBytes: 1 << 20, Since: since, Processor: "default"},
				Up: true, Ready: true, Restarts: 2, CPUSeconds: 3.25},
			{InstanceView: supervisor.InstanceView{ID: "b", Name: "Beta", ActiveState: "failed", SubState: "failed", Processor: "default"}, Restarts: 5, LivenessRestarts: 3},
		},
		Workers: []supervisor.WorkerSample{
			{WorkerID: 1, ActiveState: "active", SubState: "running", Up: true, PID: 77, Restarts: 1},
			{WorkerID: 2, ActiveState: "active", SubState: "running", Up: true, PID: 56},
			{WorkerID: 3, ActiveState: "inactive", SubState: "dead"},
		},
	}
	fams := scrape(t, &fleetCollector{snap: takeSnapshot(t, func(context.Context) (*supervisor.Sample, error) { return sample, nil }, kgdb.NewLocal(q)), host: "a.example"})
	a := []string{"id", "a", "name", "Alpha", "group", "", "processor", "default"}
	b := []string{"id", "b", "name", "Beta", "group", "", "processor", "default"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"kato_instance_up", a, 1}, {"kato_instance_up", b, 0},
		{"kato_instance_ready", a, 1}, {"kato_instance_ready", b, 0},
		{"kato_instance_restarts_total", a, 2}, {"kato_instance_restarts_total", b, 5},
		{"kato_instance_liveness_restarts_total", []string{"id", "a"}, 0}, {"kato_instance_liveness_restarts_total", []string{"id", "b"}, 3},
		{"kato_instance_memory_bytes", a, 1 << 20}, {"kato_instance_cpu_seconds_total", a, 3.25},
		{"kato_instance_start_time_seconds", a, 1700000000.5}, {"kato_instance_start_time_seconds", b, 0},
		{"kg_worker_up", []string{"worker", "1"}, 1},
		{"kg_worker_up", []string{"host", "a.example", "local", "true", "worker", "1"}, 1},
		{"kg_worker_items_processed_total", []string{"host", "a.example", "worker", "1"}, 12},
		{"kg_worker_up", []string{"host", "b.example", "local", "false", "worker", "1"}, 1},
		{"kg_worker_items_processed_total", []string{"host", "b.example", "worker", "1"}, 40},
		{"kg_worker_items_failed_total", []string{"host", "b.example", "worker", "1"}, 1},
		{"kg_worker_up", []string{"host", "c.example", "local", "false", "worker", "1"}, 0},
		{"kg_worker_items_processed_total", []string{"worker", "1"}, 12},
		{"kg_worker_items_failed_total", []string{"worker", "1"}, 3},
		{"kg_worker_restarts_total", []string{"worker", "1"}, 1},
		{"kg_worker_items_processed_total", []string{"worker", "2"}, 0}, // the report is pid 55's
		{"kg_queue_items", []string{"status", "pending"}, 3},            // the failure is retried later
		{"kg_queue_items", []string{"status", "completed"}, 0},
		{"kg_queue_enqueue_to_pickup_seconds", nil, 1},
		{"kg_queue_claim_to_done_seconds", nil, 0},
		{"kg_service_healthy", nil, 0},
		{"kg_service_consecutive_failures", nil, 4},
		{"kato_manager_scrape_success", []string{"source", "systemd"}, 1},
		{"kato_manager_scrape_success", []string{"source", "queue"}, 1},
	} {
		if got := metricValue(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if _, ok := promtest.Value(fams, "kg_worker_up", "worker", "3"); ok {
		t.Error("a stopped worker is listed")
	}
	if got := fams["kg_queue_claim_to_done_seconds"].GetType(); got != dto.MetricType_HISTOGRAM {
		t.Errorf("claim-to-done is a %v", got)
	}
}

// TestMetricsSurviveASourceDown: with systemd unreachable the queue's
// metrics are still served and the scrape says which source failed.
func TestMetricsSurviveASourceDown(t *testing.T) {
	ctx := context.Background()
	q, err := kgworker.Open(ctx, filepath.Join(t.TempDir(), "kg.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	fams := scrape(t, &fleetCollector{snap: takeSnapshot(t, func(context.Context) (*supervisor.Sample, error) { return nil, errors.New("no bus") }, kgdb.NewLocal(q))})
	if metricValue(t, fams, "kato_manager_scrape_success", "source", "systemd") != 0 || metricValue(t, fams, "kato_manager_scrape_success", "source", "queue") != 1 {
		t.Error("scrape success does not name the failed source")
	}
	if _, ok := fams["kato_instance_up"]; ok {
		t.Error("instance metrics without systemd")
	}
	if metricValue(t, fams, "kg_queue_items", "status", "pending") != 0 {
		t.Error("queue counts missing")
	}
	if !strings.HasPrefix(fams["kg_queue_items"].GetHelp(), "Items") {
		t.Error("no help text")
	}
}
