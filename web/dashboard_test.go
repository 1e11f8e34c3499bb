package web

import (
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/supervisor"
)

// TestSamplerPlots: the depth is pending plus processing, the throughput
// the items finished per minute between samples, and samples older than
// the window are dropped.
func TestSamplerPlots(t *testing.T) {
	s := newSampler(time.Hour, 15*time.Second)
	now := time.Now()
	s.add(now.Add(-2*time.Hour), queue.Counts{Pending: 99})
	s.add(now.Add(-2*time.Minute), queue.Counts{Pending: 10, Processing: 2})
	s.add(now.Add(-time.Minute), queue.Counts{Pending: 4, Processing: 2, Completed: 5, Failed: 1})
	depth, rate := s.plots()
	if len(depth.Points) != 2 || depth.Points[0].Value != 12 || depth.Last != 6 || depth.Max != 12 {
		t.Errorf("depth %+v", depth)
	}
	if len(rate.Points) != 1 || rate.Last < 5.99 || rate.Last > 6.01 {
		t.Errorf("rate %+v", rate)
	}
	// The axis spans the samples kept: two minutes here.
	if depth.Window != 2*time.Minute || rate.Window != 2*time.Minute {
		t.Errorf("axis spans %s and %s, want 2m", depth.Window, rate.Window)
	}
	svg := string(plotSVG(depth))
	if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "<polyline") || !strings.Contains(svg, ">12<") {
		t.Errorf("svg %s", svg)
	}
	if empty := string(plotSVG(plotData{Title: `<script>`, Window: time.Hour})); !strings.Contains(empty, "no samples yet") || strings.Contains(empty, "<script>") {
		t.Errorf("empty plot %s", empty)
	}
}

// TestWorkerRowsOfManyHosts: the dashboard's worker table joins this
// host's units with this host's reports only and lists the other hosts'
// workers after them, up while they report.
func TestWorkerRowsOfManyHosts(t *testing.T) {
	now := time.Now()
	rows, service := workerRows([]supervisor.WorkerSample{{WorkerID: 1, Unit: "kg-worker@1.service", ActiveState: "active", SubState: "running", Up: true, PID: 7}},
		[]kgdb.Report{
			{Host: "b.example", WorkerID: 1, PID: 7, UpdatedAt: now, Stats: kgdb.WorkerStats{TotalProcessed: 9}},
			{Host: "a.example", WorkerID: 1, PID: 7, UpdatedAt: now, Stats: kgdb.WorkerStats{TotalProcessed: 3}, Service: kgdb.ServiceStatus{IsHealthy: true}},
		}, "a.example", now)
	if len(rows) != 2 || service == nil || !service.IsHealthy {
		t.Fatalf("rows %+v, service %+v", rows, service)
	}
	if r := rows[0]; r.Host != "a.example" || !r.Local || r.Stats.TotalProcessed != 3 {
		t.Errorf("this host's row = %+v", r)
	}
	if r := rows[1]; r.Host != "b.example" || r.Local || !r.Up || r.ActiveState != "remote" || r.Stats.TotalProcessed != 9 {
		t.Errorf("b.example's row = %+v", r)
	}
}

// TestGenerationBShowsNoZMQPort: a generation-B instance has no ZMQ port,
// and the fleet table and its page show none rather than a port 0.
func TestGenerationBShowsNoZMQPort(t *testing.T) {
	d, err := newDashboard(&supervisor.Manager{}, nil, nil, nil, dashboardOptions{listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	var s supervisor.InstanceSample
	s.ID, s.Name, s.APIPort = "web", "web", 8001
	for _, page := range []pageData{
		{Fleet: &supervisor.Sample{Instances: []supervisor.InstanceSample{s}}},
		{Instance: &s},
	} {
		name := "index"
		if page.Instance != nil {
			name = "instance"
		}
		var b strings.Builder
		if err := d.tmpl.ExecuteTemplate(&b, name+".html", page); err != nil {
			t.Fatal(err)
		}
		if html := b.String(); strings.Contains(html, "<td>8001</td><td>0</td>") || strings.Contains(html, "ZMQ 0") {
			t.Errorf("%s shows ZMQ port 0 for an instance without one:\n%s", name, html)
		}
	}
}
