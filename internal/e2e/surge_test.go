package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// TestRollWithSurge: restart --group --surge 1 --max-unavailable 0 of a
// group of three replicas behind its front, under a steady load, keeps at
// least three members up in the front throughout (read from the front's
// stats all along), fails no request, restarts every replica, and leaves
// no extra member behind. A group without a template is refused.
func TestRollWithSurge(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.ConfigWithMongo + `
[templates.web]
max_predictions = 11

[groups.web]
front = 9000
balance = "roundrobin"
template = "web"

[groups.ab]
front = 9100
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m.mustKM("scale", "--group", "web", "3")
	m.waitAnsweredBy(t, "http://127.0.0.1:9000/status", "web-1", "web-2", "web-3")
	pids := map[string]string{}
	for _, id := range []string{"web-1", "web-2", "web-3"} {
		pids[id] = m.mainPID("kato@" + id + ".service")
	}

	// The front's members, read from its stats socket (through list) ten
	// times a second while the roll runs.
	m.exec("rm", "-f", "/run/kato-test-cap-stop")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var samples strings.Builder
	poll := m.Command(ctx, "sh", "-c", fmt.Sprintf(`while [ ! -e /run/kato-test-cap-stop ]; do %s list --fronts --json --group web; echo @@; sleep 0.1; done`, katoManager))
	poll.Stdout = &samples
	if err := poll.Start(); err != nil {
		t.Fatal(err)
	}
	l := m.startLoad(t, "http://127.0.0.1:9000/status")
	time.Sleep(time.Second)
	out := m.mustKM("restart", "--group", "web", "--surge", "1", "--max-unavailable", "0")
	ok, failed := l.stop()
	m.exec("touch", "/run/kato-test-cap-stop")
	poll.Wait()
	t.Logf("restart --group web --surge 1 --max-unavailable 0 under load: %d requests, %d failed\n%s", ok+failed, failed, out)
	if failed != 0 || ok < minLoad {
		t.Errorf("roll with a surge: %d of %d requests failed, want 0 of at least %d", failed, ok+failed, minLoad)
	}

	least, most, read, unanswered, sawSurge := 1<<30, 0, 0, 0, false
	var seq []string
	for _, s := range strings.Split(samples.String(), "@@\n") {
		var fronts []struct {
			Answering bool `json:"answering"`
			Members   []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"members"`
		}
		if json.Unmarshal([]byte(s), &fronts) != nil || len(fronts) != 1 {
			continue
		}
		if !fronts[0].Answering {
			// Read while the front reloads: its socket is the new
			// process's, not yet listening.
			unanswered++
			continue
		}
		up := 0
		for _, mb := range fronts[0].Members {
			if mb.State == "up" {
				up++
			}
			sawSurge = sawSurge || mb.ID == "web-surge-1"
		}
		read++
		least, most = min(least, up), max(most, up)
		seq = append(seq, fmt.Sprint(up))
	}
	t.Logf("%d reads of the front during the roll (%d more while it reloaded): between %d and %d members up: %s", read, unanswered, least, most, strings.Join(seq, " "))
	if read < 10 || least < 3 || !sawSurge {
		t.Errorf("%d reads of the front: at least %d members up (want 3 at every read), extra member seen %v", read, least, sawSurge)
	}
	for id, pid := range pids {
		if now := m.mainPID("kato@" + id + ".service"); now == pid || now == "0" {
			t.Errorf("%s was not restarted: pid %s, before %s", id, now, pid)
		}
	}
	if rows := m.listJSON(); len(rows) != 3 || rows["web-surge-1"] != nil {
		t.Errorf("instances after the roll: %v, want web-1 to web-3 alone", rows)
	}
	if s := m.activeState("kato@web-surge-1.service"); s != "inactive" {
		t.Errorf("kato@web-surge-1.service is %s after the roll", s)
	}
	if cfg := m.readFile("/etc/kato/fronts/web.cfg"); strings.Contains(cfg, "web-surge-1") {
		t.Errorf("the front still names the extra member:\n%s", cfg)
	}

	// A group without a template: refused, nothing started.
	m.mustKM("start", "--id", "ab-a", "--group", "ab")
	r := m.km("restart", "--group", "ab", "--surge", "1")
	if r.code != 2 || !strings.Contains(r.stderr, "--surge 1") || !strings.Contains(r.stderr, "names a template or processor") {
		t.Errorf("restart --surge of a group without a template: %s", r)
	}
	if rows := m.listJSON(); rows["ab-surge-1"] != nil {
		t.Errorf("a refused surge started %v", rows["ab-surge-1"])
	}
}
