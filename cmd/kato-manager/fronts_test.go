package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/supervisor"
)

// TestStatusPrintsFronts: status prints each front with its port, balance
// and members' counts, a line per member, and the front's PROBLEM; a front
// not answering says so instead of counts.
func TestStatusPrintsFronts(t *testing.T) {
	st := &supervisor.Status{SystemdReachable: true, SystemdVersion: "252", Fronts: []supervisor.FrontView{
		{Group: "web", ActiveState: "active", SubState: "running", Port: 8080, Balance: "leastconn", Answering: true, Requests: 40, Errors: 2,
			Counts: supervisor.MemberCounts{Up: 1, Down: 1}, Problem: "member web-2 down",
			Members: []supervisor.FrontMember{{ID: "web-1", State: front.Up, Sessions: 3, Weight: 1}, {ID: "web-2", State: front.Down, Weight: 1}}},
		{Group: "api", ActiveState: "active", SubState: "running", Address: "10.0.0.5", Port: 8081, Balance: "roundrobin",
			Problem: "its stats socket does not answer (context deadline exceeded)"},
	}}
	var b strings.Builder
	printStatus(&app{stdout: &b, noColor: true}, st)
	out := b.String()
	for _, re := range []string{
		`(?m)^fronts:$`,
		`GROUP\s+STATE\s+ADDRESS\s+PORT\s+BALANCE\s+MEMBERS\s+REQUESTS\s+ERRORS\s+PROBLEM`,
		`web\s+running\s+-\s+8080\s+leastconn\s+1 up, 0 draining, 1 down\s+40\s+2\s+member web-2 down`,
		`member web-1\s+up\s+sessions 3`,
		`member web-2\s+down\s+sessions 0`,
		`api\s+running\s+10\.0\.0\.5\s+8081\s+roundrobin\s+not answering\s+0\s+0\s+its stats socket does not answer`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status has no %q:\n%s", re, out)
		}
	}
	if st.Healthy() {
		t.Error("a status with front problems is healthy")
	}
}
