package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestFrontWithMembersOnTwoHosts: a fleet file applied on alpha puts one
// member of group web on alpha and one on beta; the front runs on alpha
// and serves through both, list shows the member on beta, a rolling
// restart under a steady load drains and restarts beta's member over ssh
// with no request failed, and a stop from alpha drains it before beta
// stops it. A member on another host named by a loopback address is
// refused, nothing changed.
func TestFrontWithMembersOnTwoHosts(t *testing.T) {
	alpha, beta := twoHosts(t)

	fleet := `groups:
  web: {front: 9400, balance: roundrobin}
instances:
  - {id: web-a, port: 8101, group: web}
  - {id: web-b, port: 8101, group: web, host: beta}
`
	if err := alpha.WriteFile("/root/web.yaml", []byte(fleet), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := alpha.km("apply", "-f", "/root/web.yaml"); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	if cfg := alpha.readFile("/etc/kato/fronts/web.cfg"); !strings.Contains(cfg, "server web-b beta:8101 ") || !strings.Contains(cfg, "server web-a 127.0.0.1:8101 ") {
		t.Fatalf("alpha's front of web:\n%s", cfg)
	}
	if s := beta.activeState("kato-front@web.service"); s != "inactive" {
		t.Errorf("beta runs a front of its own for web: %s", s)
	}
	alpha.waitAnsweredBy(t, "http://127.0.0.1:9400/status", "web-a", "web-b")

	if out := alpha.mustKM("list", "--fronts"); !strings.Contains(out, "member web-b on beta") {
		t.Errorf("list --fronts on alpha:\n%s", out)
	}
	var fronts []struct {
		Members []struct{ ID, Host, State string } `json:"members"`
	}
	if err := json.Unmarshal([]byte(alpha.mustKM("list", "--fronts", "--json")), &fronts); err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, mb := range fronts[0].Members {
		hosts = append(hosts, mb.ID+"@"+mb.Host+"="+mb.State)
	}
	if got := strings.Join(hosts, " "); got != "web-a@=up web-b@beta=up" {
		t.Errorf("list --fronts --json members: %s", got)
	}
	if r := alpha.km("status"); !strings.Contains(r.stdout, "web-b on beta") {
		t.Errorf("status on alpha does not show web-b on beta: %s", r)
	}

	pidA, pidB := alpha.mainPID("kato@web-a.service"), beta.mainPID("kato@web-b.service")
	l := alpha.startLoad(t, "http://127.0.0.1:9400/status")
	time.Sleep(time.Second)
	out := alpha.mustKM("restart", "--group", "web")
	ok, failed := l.stop()
	t.Logf("restart --group web over two hosts under load: %d requests, %d failed\n%s", ok+failed, failed, out)
	if failed != 0 || ok < minLoad {
		t.Errorf("rolling restart over two hosts: %d of %d requests failed, want 0 of at least %d", failed, ok+failed, minLoad)
	}
	if now := alpha.mainPID("kato@web-a.service"); now == pidA || now == "0" {
		t.Errorf("web-a on alpha was not restarted: pid %s, before %s", now, pidA)
	}
	if now := beta.mainPID("kato@web-b.service"); now == pidB || now == "0" {
		t.Errorf("web-b on beta was not restarted: pid %s, before %s", now, pidB)
	}
	journal := beta.must("journalctl", "-q", "-o", "cat", "-u", "kato@web-b.service")
	if strings.Count(journal, "Started") < 2 {
		t.Logf("beta's journal of web-b:\n%s", journal)
	}

	// An apply that changes the member on beta: drained on alpha before
	// beta restarts it, put back after; the load sees no failure.
	pidB = beta.mainPID("kato@web-b.service")
	changed := strings.Replace(fleet, "host: beta}", "host: beta, max_predictions: 17}", 1)
	if err := alpha.WriteFile("/root/web.yaml", []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	l = alpha.startLoad(t, "http://127.0.0.1:9400/status")
	time.Sleep(time.Second)
	out = alpha.mustKM("apply", "-f", "/root/web.yaml")
	ok, failed = l.stop()
	t.Logf("apply changing web-b on beta under load: %d requests, %d failed\n%s", ok+failed, failed, out)
	if failed != 0 || !strings.Contains(out, "beta: ~ web-b changed and restarted") {
		t.Errorf("apply changing the member on beta: %d of %d requests failed, want 0; output:\n%s", failed, ok+failed, out)
	}
	if now := beta.mainPID("kato@web-b.service"); now == pidB || now == "0" {
		t.Errorf("web-b on beta was not restarted by the apply: pid %s, before %s", now, pidB)
	}
	alpha.waitAnsweredBy(t, "http://127.0.0.1:9400/status", "web-a", "web-b")

	// A member named by a loopback host: refused, nothing changed.
	bad := fleet + "  - {id: web-c, port: 8102, group: web, host: root@127.0.0.1}\n"
	if err := alpha.WriteFile("/root/bad.yaml", []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	before := alpha.readFile("/etc/kato/fronts/web.cfg")
	r := alpha.km("apply", "-f", "/root/bad.yaml")
	if r.code != 2 || !strings.Contains(r.stderr, "/root/bad.yaml:6") || !strings.Contains(r.stderr, "invalid host root@127.0.0.1") || !strings.Contains(r.stderr, "not a loopback one") {
		t.Errorf("apply with a loopback member: %s", r)
	}
	if after := alpha.readFile("/etc/kato/fronts/web.cfg"); after != before {
		t.Errorf("a refused apply changed the front:\n%s", after)
	}

	// Stopped from alpha: drained out of the front first, then stopped on
	// beta; the load sees no failure.
	l = alpha.startLoad(t, "http://127.0.0.1:9400/status")
	time.Sleep(time.Second)
	out = alpha.mustKM("stop", "web-b")
	ok, failed = l.stop()
	t.Logf("stop web-b from alpha under load: %d requests, %d failed: %s", ok+failed, failed, out)
	if failed != 0 {
		t.Errorf("stop of the member on beta: %d of %d requests failed, want 0", failed, ok+failed)
	}
	if _, ok := beta.listJSON()["web-b"]; ok {
		t.Error("web-b is still registered on beta after its stop")
	}
	if cfg := alpha.readFile("/etc/kato/fronts/web.cfg"); strings.Contains(cfg, "web-b") {
		t.Errorf("alpha's front still names web-b:\n%s", cfg)
	}
}
