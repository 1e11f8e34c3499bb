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

// TestScaleOnAnotherHost: a fleet file applied on alpha puts web-a on alpha
// and one replica web-b-1 on beta, the front on alpha. Under a steady load
// through the front, scale --on-host beta to 3 has beta start web-b-2 and
// web-b-3, which the front then serves through, and back to 1 drains them
// on alpha before beta stops them: no request fails either way. An unknown
// host, a negative count and a host without a member of the group are
// refused, nothing changed; scale without --on-host scales alpha's replicas
// and says the members on beta are left as they are.
func TestScaleOnAnotherHost(t *testing.T) {
	alpha, beta := twoHosts(t)
	fleet := `groups:
  web: {front: 9400, balance: roundrobin}
instances:
  - {id: web-a, port: 8101, group: web}
  - {id: web-b, replicas: 1, group: web, host: beta}
`
	if err := alpha.WriteFile("/root/web.yaml", []byte(fleet), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := alpha.km("apply", "-f", "/root/web.yaml"); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	alpha.waitAnsweredBy(t, "http://127.0.0.1:9400/status", "web-a", "web-b-1")

	// Bad input: refused, exit 2, nothing changed on either host.
	before := alpha.readFile("/etc/kato/fronts/web.cfg")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"scale", "--group", "web", "3", "--on-host", "gamma"}, "invalid --on-host gamma: must be a host running members of a front of this host: beta"},
		{[]string{"scale", "--group", "web", "--on-host", "beta", "--", "-1"}, "invalid N -1: must be a whole number between 0 and 256"},
		{[]string{"scale", "--group", "nope", "3", "--on-host", "beta"}, "invalid --group nope: must name a group whose front runs on this host"},
	} {
		r := alpha.km(tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: %s; want exit 2 and %q", strings.Join(tc.args, " "), r, tc.want)
		}
	}
	if after := alpha.readFile("/etc/kato/fronts/web.cfg"); after != before {
		t.Errorf("a refused scale changed the front:\n%s", after)
	}
	if rows := beta.listJSON(); len(rows) != 1 || rows["web-b-1"] == nil {
		t.Errorf("a refused scale changed beta's instances: %v", rows)
	}

	// Up on beta, under load through the front.
	l := alpha.startLoad(t, "http://127.0.0.1:9400/status")
	time.Sleep(time.Second)
	out := alpha.mustKM("scale", "--group", "web", "3", "--on-host", "beta")
	ok, failed := l.stop()
	t.Logf("scale --group web 3 --on-host beta under load: %d requests, %d failed\n%s", ok+failed, failed, out)
	if failed != 0 || ok < minLoad || !strings.Contains(out, "started web-b-2\nstarted web-b-3\n") || !strings.Contains(out, "group web: 3 replica(s) on beta; started 2, stopped 0") {
		t.Errorf("scale up on beta: %d of %d requests failed, want 0 of at least %d; output:\n%s", failed, ok+failed, minLoad, out)
	}
	if rows := beta.listJSON(); len(rows) != 3 || rows["web-b-3"] == nil {
		t.Errorf("beta's instances after scale to 3: %v", rows)
	}
	if cfg := alpha.readFile("/etc/kato/fronts/web.cfg"); !strings.Contains(cfg, "server web-b-3 beta:") {
		t.Errorf("alpha's front after scale to 3 on beta:\n%s", cfg)
	}
	alpha.waitAnsweredBy(t, "http://127.0.0.1:9400/status", "web-a", "web-b-1", "web-b-2", "web-b-3")

	// Down on beta: drained on alpha first, then stopped there.
	l = alpha.startLoad(t, "http://127.0.0.1:9400/status")
	time.Sleep(time.Second)
	out = alpha.mustKM("scale", "--group", "web", "1", "--on-host", "root@beta")
	ok, failed = l.stop()
	t.Logf("scale --group web 1 --on-host root@beta under load: %d requests, %d failed\n%s", ok+failed, failed, out)
	if failed != 0 || ok < minLoad || !strings.Contains(out, "stopped web-b-2\nstopped web-b-3\n") {
		t.Errorf("scale down on beta: %d of %d requests failed, want 0 of at least %d; output:\n%s", failed, ok+failed, minLoad, out)
	}
	if rows := beta.listJSON(); len(rows) != 1 || rows["web-b-1"] == nil {
		t.Errorf("beta's instances after scale to 1: %v", rows)
	}
	for _, unit := range []string{"kato@web-b-2.service", "kato@web-b-3.service"} {
		if s := beta.activeState(unit); s != "inactive" {
			t.Errorf("%s on beta is %s after scale to 1", unit, s)
		}
	}
	if cfg := alpha.readFile("/etc/kato/fronts/web.cfg"); strings.Contains(cfg, "web-b-2") || !strings.Contains(cfg, "server web-b-1 beta:") {
		t.Errorf("alpha's front after scale to 1 on beta:\n%s", cfg)
	}

	// Without --on-host: alpha's own replicas, beta's left alone.
	out = alpha.mustKM("scale", "--group", "web", "1")
	if !strings.Contains(out, "started web-1") || !strings.Contains(out, "its members on other hosts are unchanged; scale them with --on-host HOST") {
		t.Errorf("scale without --on-host:\n%s", out)
	}
	if rows := beta.listJSON(); len(rows) != 1 {
		t.Errorf("scale without --on-host changed beta: %v", rows)
	}
}

// TestApplyWithSurge: an apply --surge 1 that changes the three replicas of
// a group behind its front, under a steady load, starts web-surge-1 first,
// keeps at least three members up in the front throughout, fails no
// request, restarts every replica with its new settings and removes the
// extra member after. A group with surge = 1 in kato.toml rolls the same
// without --surge.
func TestApplyWithSurge(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.ConfigWithMongo + `
[templates.web]
max_predictions = 11

[groups.web]
front = 9000
balance = "roundrobin"
template = "web"
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	file := "instances:\n  - {id: web, replicas: 3, template: web}\n"
	if err := m.WriteFile("/root/web.yaml", []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	m.mustKM("apply", "-f", "/root/web.yaml")
	m.waitAnsweredBy(t, "http://127.0.0.1:9000/status", "web-1", "web-2", "web-3")
	pids := map[string]string{}
	for _, id := range []string{"web-1", "web-2", "web-3"} {
		pids[id] = m.mainPID("kato@" + id + ".service")
	}
	changed := strings.Replace(file, "template: web}", "template: web, max_predictions: 12}", 1)
	if err := m.WriteFile("/root/web.yaml", []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}

	samples := m.sampleFront(t, "web")
	l := m.startLoad(t, "http://127.0.0.1:9000/status")
	time.Sleep(time.Second)
	out := m.mustKM("apply", "-f", "/root/web.yaml", "--surge", "1")
	ok, failed := l.stop()
	least, read, sawSurge := samples()
	t.Logf("apply --surge 1 under load: %d requests, %d failed; %d reads of the front, at least %d members up\n%s", ok+failed, failed, read, least, out)
	if failed != 0 || ok < minLoad {
		t.Errorf("apply with a surge: %d of %d requests failed, want 0 of at least %d", failed, ok+failed, minLoad)
	}
	if read < 10 || least < 3 || !sawSurge {
		t.Errorf("%d reads of the front: at least %d members up (want 3 at every read), extra member seen %v", read, least, sawSurge)
	}
	for id, pid := range pids {
		if now := m.mainPID("kato@" + id + ".service"); now == pid || now == "0" {
			t.Errorf("%s was not restarted: pid %s, before %s", id, now, pid)
		}
	}
	rows := m.listJSON()
	if len(rows) != 3 || rows["web-surge-1"] != nil {
		t.Errorf("instances after the apply: %v, want web-1 to web-3 alone", rows)
	}
	if s := m.activeState("kato@web-surge-1.service"); s != "inactive" {
		t.Errorf("kato@web-surge-1.service is %s after the apply", s)
	}
	if cfg := m.readFile("/etc/kato/fronts/web.cfg"); strings.Contains(cfg, "web-surge-1") {
		t.Errorf("the front still names the extra member:\n%s", cfg)
	}
	if r := m.km("diff", "-f", "/root/web.yaml"); r.code != 0 {
		t.Errorf("diff after the apply finds changes: %s", r)
	}

	// The group's own surge, without --surge: the same roll.
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(strings.Replace(conf, "template = \"web\"\n", "template = \"web\"\nsurge = 1\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFile("/root/web.yaml", []byte(strings.Replace(changed, "max_predictions: 12", "max_predictions: 13", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	samples = m.sampleFront(t, "web")
	l = m.startLoad(t, "http://127.0.0.1:9000/status")
	time.Sleep(time.Second)
	out = m.mustKM("apply", "-f", "/root/web.yaml")
	ok, failed = l.stop()
	least, read, sawSurge = samples()
	t.Logf("apply with the group's surge = 1 under load: %d requests, %d failed; %d reads of the front, at least %d members up\n%s", ok+failed, failed, read, least, out)
	if failed != 0 || ok < minLoad || read < 10 || least < 3 || !sawSurge {
		t.Errorf("apply with the group's surge: %d of %d requests failed (want 0 of at least %d); %d reads, at least %d up (want 3), extra member seen %v", failed, ok+failed, minLoad, read, least, sawSurge)
	}
	if rows := m.listJSON(); len(rows) != 3 || rows["web-surge-1"] != nil {
		t.Errorf("instances after the apply with the group's surge: %v", rows)
	}
}

// sampleFront reads the members of group's front (list --fronts --json)
// ten times a second until the function it returns is called, which
// returns the fewest members up in a read, how many reads the front
// answered, and whether a surge member was seen.
func (m *machine) sampleFront(t *testing.T, group string) func() (least, read int, sawSurge bool) {
	t.Helper()
	m.exec("rm", "-f", "/run/kato-test-cap-stop")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	var samples strings.Builder
	poll := m.Command(ctx, "sh", "-c", fmt.Sprintf(`while [ ! -e /run/kato-test-cap-stop ]; do %s list --fronts --json --group %s; echo @@; sleep 0.1; done`, katoManager, group))
	poll.Stdout = &samples
	if err := poll.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	return func() (int, int, bool) {
		defer cancel()
		m.exec("touch", "/run/kato-test-cap-stop")
		poll.Wait()
		least, read, sawSurge := 1<<30, 0, false
		for _, s := range strings.Split(samples.String(), "@@\n") {
			var fronts []struct {
				Answering bool `json:"answering"`
				Members   []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"members"`
			}
			if json.Unmarshal([]byte(s), &fronts) != nil || len(fronts) != 1 || !fronts[0].Answering {
				// A read while the front reloads finds its socket not
				// yet listening.
				continue
			}
			up := 0
			for _, mb := range fronts[0].Members {
				if mb.State == "up" {
					up++
				}
				sawSurge = sawSurge || strings.HasPrefix(mb.ID, group+"-surge-")
			}
			read++
			least = min(least, up)
		}
		return least, read, sawSurge
	}
}
