package web

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/supervisor"
)

// frontsSample is a sample with two fronts: web answering with a member up
// and one draining, and stuck whose stats socket did not answer.
func frontsSample() *supervisor.Sample {
	return &supervisor.Sample{Fronts: []supervisor.FrontView{
		{Group: "web", Unit: "kato-front@web.service", ActiveState: "active", SubState: "running", Port: 8080, Balance: "leastconn",
			Answering: true, Requests: 1200, Errors: 7, Counts: supervisor.MemberCounts{Up: 1, Draining: 1},
			Members: []supervisor.FrontMember{
				{ID: "web-1", Backend: "members", State: front.Up, Sessions: 3, Weight: 1, Requests: 700},
				{ID: "web-2", Backend: "members", State: front.Draining, Sessions: 1, Weight: 1, Requests: 500},
			}},
		{Group: "stuck", Unit: "kato-front@stuck.service", ActiveState: "active", SubState: "running", Port: 8081, Balance: "roundrobin",
			Error: "context deadline exceeded", Members: []supervisor.FrontMember{}, Problem: "its stats socket does not answer (context deadline exceeded)"},
	}}
}

// TestFrontMetrics: /metrics carries each front's requests and errors and
// one series per member and state, 1 for the state it is in; a front not
// answering has kato_front_up 0 and no counters.
func TestFrontMetrics(t *testing.T) {
	q, err := kgworker.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	snap := takeSnapshot(t, func(context.Context) (*supervisor.Sample, error) { return frontsSample(), nil }, kgdb.NewLocal(q))
	fams := scrape(t, &fleetCollector{snap: snap, host: "h"})
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"kato_front_up", []string{"group", "web"}, 1},
		{"kato_front_up", []string{"group", "stuck"}, 0},
		{"kato_front_requests_total", []string{"group", "web"}, 1200},
		{"kato_front_errors_total", []string{"group", "web"}, 7},
		{"kato_front_member_up", []string{"group", "web", "member", "web-1", "state", "up"}, 1},
		{"kato_front_member_up", []string{"group", "web", "member", "web-1", "state", "draining"}, 0},
		{"kato_front_member_up", []string{"group", "web", "member", "web-2", "state", "draining"}, 1},
		{"kato_front_member_up", []string{"group", "web", "member", "web-2", "state", "down"}, 0},
		{"kato_front_member_sessions", []string{"group", "web", "member", "web-1"}, 3},
		{"kato_front_member_requests_total", []string{"group", "web", "member", "web-2"}, 500},
	} {
		if got := metricValue(t, fams, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	for _, m := range fams["kato_front_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetValue() == "stuck" {
				t.Error("a front not answering has a request counter")
			}
		}
	}
}

// TestDashboardShowsFronts: the main page shows each group's front with
// its port, balance and members' states and sessions, and a front not
// answering with why.
func TestDashboardShowsFronts(t *testing.T) {
	d, err := newDashboard(&supervisor.Manager{}, nil, nil, nil, dashboardOptions{listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := d.tmpl.ExecuteTemplate(&b, "index.html", pageData{Fleet: frontsSample()}); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	for _, want := range []string{
		`id="front-web"`, "port 8080, balance leastconn, 1 up, 1 draining, 0 down",
		`<tr data-member="web-1"><td>web-1</td><td class="state ok">up</td><td>3</td>`,
		`<tr data-member="web-2"><td>web-2</td><td class="state warn">draining</td><td>1</td>`,
		`id="front-stuck"`, "Not read: context deadline exceeded", "<strong>its stats socket does not answer",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("the main page has no %q:\n%s", want, html)
		}
	}
}
