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

// TestGroupsBehindFronts runs groups of processor doubles behind their
// fronts (HAProxy in kato-front@GROUP.service) on a real systemd: a
// rolling restart of three members under a steady load fails no request
// where a plain restart of the same members fails some; scale 3 → 5 → 2
// under load fails none; weights 90/10 split 1,000 requests 90/10; and
// balance path answers each of three generation-A instances, with its own
// engine, through one port.
func TestGroupsBehindFronts(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.ConfigWithMongo + `
[groups.web]
front = 9000
balance = "roundrobin"

[groups.ab]
front = 9100
balance = "roundrobin"

[groups.gw]
front = 9200
balance = "path"
processor = "a"

[processors.c]
command = ["/opt/kato-test/fakeprocessor", "--generation", "c"]
generation = "c"
ready_timeout = 20.0

[stores]
redis_url = "redis://:` + redisSecret + `@127.0.0.1:6391/0"

[groups.edge]
front = 9500
processor = "c"
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	leftovers := func(t *testing.T) {
		if left := m.exec("systemctl", "list-units", "--plain", "--no-legend", "--state=active", "kato-front@*").stdout; strings.TrimSpace(left) != "" {
			t.Fatalf("fronts left running after stop --all:\n%s", left)
		}
		if out := m.exec("ls", "/etc/kato/fronts").stdout; strings.TrimSpace(out) != "" {
			t.Fatalf("front configurations left after stop --all: %s", out)
		}
	}
	run := func(name string, f func(t *testing.T)) { m.subtest(t, name, f, leftovers) }

	run("a rolling restart fails no request, a plain restart fails some", func(t *testing.T) {
		m.mustKM("scale", "--group", "web", "3")
		// The front runs; it may still be taking the last member in (a
		// reload: HAProxy's master says READY again once its new worker
		// serves), which the load below does not notice.
		if s := m.activeState("kato-front@web.service"); s != "active" && s != "reloading" {
			t.Fatalf("front of web: %s", s)
		}
		m.waitAnsweredBy(t, "http://127.0.0.1:9000/status", "web-1", "web-2", "web-3")
		pids := map[string]string{}
		for _, id := range []string{"web-1", "web-2", "web-3"} {
			pids[id] = m.mainPID("kato@" + id + ".service")
		}
		l := m.startLoad(t, "http://127.0.0.1:9000/status")
		time.Sleep(time.Second)
		out := m.mustKM("restart", "--group", "web")
		ok, failed := l.stop()
		t.Logf("restart --group under load: %d requests, %d failed\n%s", ok+failed, failed, out)
		if failed != 0 || ok < minLoad {
			t.Errorf("rolling restart: %d of %d requests failed, want 0 of at least %d", failed, ok+failed, minLoad)
		}
		for id, pid := range pids {
			if now := m.mainPID("kato@" + id + ".service"); now == pid || now == "0" {
				t.Errorf("%s was not restarted: pid %s, before %s", id, now, pid)
			}
		}
		// The baseline: the same members restarted all at once.
		m.waitAnsweredBy(t, "http://127.0.0.1:9000/status", "web-1", "web-2", "web-3")
		l = m.startLoad(t, "http://127.0.0.1:9000/status")
		time.Sleep(time.Second)
		m.must("systemctl", "restart", "kato@web-1.service", "kato@web-2.service", "kato@web-3.service")
		time.Sleep(2 * time.Second)
		ok, failed = l.stop()
		t.Logf("plain restart of the members under load: %d requests, %d failed", ok+failed, failed)
		if failed == 0 {
			t.Errorf("a plain restart of every member failed no request of %d: the load does not see an outage", ok)
		}
		// A group without a front restarts as one batch, as before, and
		// --max-unavailable is refused there.
		if r := m.km("restart", "--group", "web", "--max-unavailable", "0"); r.code != 2 || !strings.Contains(r.stderr, "--max-unavailable 0: must be at least 1") {
			t.Errorf("restart --max-unavailable 0: %s", r)
		}
	})

	run("scale 3 → 5 → 2 under load fails no request", func(t *testing.T) {
		m.mustKM("scale", "--group", "web", "3")
		m.waitAnsweredBy(t, "http://127.0.0.1:9000/status", "web-1", "web-2", "web-3")
		l := m.startLoad(t, "http://127.0.0.1:9000/status")
		time.Sleep(time.Second)
		m.mustKM("scale", "--group", "web", "5")
		rows := m.listJSON()
		for _, id := range []string{"web-1", "web-2", "web-3", "web-4", "web-5"} {
			if rows[id] == nil {
				t.Errorf("%s missing after scale 5: %v", id, rows)
			}
		}
		m.waitAnsweredBy(t, "http://127.0.0.1:9000/status", "web-4", "web-5")
		m.mustKM("scale", "--group", "web", "2")
		time.Sleep(time.Second)
		ok, failed := l.stop()
		t.Logf("scale 3 → 5 → 2 under load: %d requests, %d failed", ok+failed, failed)
		if failed != 0 || ok < minLoad {
			t.Errorf("scale under load: %d of %d requests failed, want 0 of at least %d", failed, ok+failed, minLoad)
		}
		rows = m.listJSON()
		if len(rows) != 2 || rows["web-1"] == nil || rows["web-2"] == nil {
			t.Errorf("after scale 2: %v", rows)
		}
		cfg := m.readFile("/etc/kato/fronts/web.cfg")
		if !strings.Contains(cfg, "server web-2 ") || strings.Contains(cfg, "server web-3 ") {
			t.Errorf("front of web after scale 2:\n%s", cfg)
		}
		m.mustKM("scale", "--group", "web", "0")
		if s := m.activeState("kato-front@web.service"); s != "inactive" {
			t.Errorf("front of web after scale 0: %s, want inactive", s)
		}
	})

	run("a fleet file's group, its replicas and a rolling apply under load", func(t *testing.T) {
		fleetFile := `groups:
  api: {front: 9300, balance: leastconn}
instances:
  - {id: api, replicas: 3, persistence: PERSISTENCE}
`
		write := func(p string) {
			t.Helper()
			if err := m.WriteFile("/root/api.yaml", []byte(strings.ReplaceAll(fleetFile, "PERSISTENCE", p)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("5")
		m.mustKM("apply", "-f", "/root/api.yaml")
		m.waitAnsweredBy(t, "http://127.0.0.1:9300/status", "api-1", "api-2", "api-3")
		write("7")
		l := m.startLoad(t, "http://127.0.0.1:9300/status")
		time.Sleep(time.Second)
		out := m.mustKM("apply", "-f", "/root/api.yaml")
		ok, failed := l.stop()
		t.Logf("apply changing 3 members under load: %d requests, %d failed\n%s", ok+failed, failed, out)
		if failed != 0 || ok < minLoad || strings.Count(out, "changed and restarted") != 3 {
			t.Errorf("rolling apply: %d of %d requests failed, want 0 of at least %d; output:\n%s", failed, ok+failed, minLoad, out)
		}
		l = m.startLoad(t, "http://127.0.0.1:9300/status")
		time.Sleep(time.Second)
		m.mustKM("restart", "api-2")
		ok, failed = l.stop()
		t.Logf("restart of one member under load: %d requests, %d failed", ok+failed, failed)
		if failed != 0 {
			t.Errorf("restart api-2: %d of %d requests failed, want 0", failed, ok+failed)
		}
		exported := m.mustKM("export")
		if !strings.Contains(exported, "groups:") || !strings.Contains(exported, "front: 9300") {
			t.Errorf("export lacks the file's group:\n%s", exported)
		}
		if err := m.WriteFile("/root/export.yaml", []byte(exported), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := m.mustKM("apply", "-f", "/root/export.yaml"); !strings.Contains(out, "nothing to do") {
			t.Errorf("apply of the export: %s", out)
		}
	})

	run("generation C: sessions made through the front are served by every replica", func(t *testing.T) {
		m.must("systemd-run", "--unit=redis-groups", "--", "/usr/bin/redis-server", "--port", "6391", "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--requirepass", redisSecret)
		defer m.exec("systemctl", "stop", "redis-groups.service")
		m.waitFor("redis-server answering", 20*time.Second, func() bool {
			return strings.TrimSpace(m.exec("redis-cli", "-p", "6391", "--no-auth-warning", "-a", redisSecret, "ping").stdout) == "PONG"
		})
		m.mustKM("scale", "--group", "edge", "3")
		if cfg := m.readFile("/etc/kato/fronts/edge.cfg"); !strings.Contains(cfg, `http-check expect rstring '"status"\s*:\s*"healthy"'`) {
			t.Errorf("the front of a generation-C group does not read /health's body:\n%s", cfg)
		}
		m.waitAnsweredBy(t, "http://127.0.0.1:9500/status", "edge-1", "edge-2", "edge-3")
		var created struct {
			SessionID string `json:"session_id"`
		}
		out := m.must("curl", "-sS", "-f", "--max-time", "5", "-H", "Content-Type: application/json", "-d", `{"node_id": "guide"}`, "http://127.0.0.1:9500/sessions")
		if err := json.Unmarshal([]byte(out), &created); err != nil || created.SessionID == "" {
			t.Fatalf("POST /sessions through the front = %q, %v", out, err)
		}
		m.post("http://127.0.0.1:9500/sessions/"+created.SessionID+"/observe", `{"strings": ["hello"], "vectors": [], "emotives": {}}`)
		script := fmt.Sprintf(`for i in $(seq 30); do curl -s -f -m 5 -D /tmp/h -o /tmp/b http://127.0.0.1:9500/sessions/%s/stm && grep -q '"stm":\[\["hello"\]\]' /tmp/b && grep -i '^x-fake-engine' /tmp/h | tr -d '\r' || echo FAIL; done`, created.SessionID)
		answers := m.must("sh", "-c", script)
		if strings.Contains(answers, "FAIL") {
			t.Errorf("the session made through the front was lost on some requests:\n%s", answers)
		}
		for _, id := range []string{"edge-1", "edge-2", "edge-3"} {
			if !strings.Contains(answers, id) {
				t.Errorf("no request of the session was served by %s:\n%s", id, answers)
			}
		}
	})

	run("weights 90/10 split 1,000 requests", func(t *testing.T) {
		m.mustKM("start", "--id", "ab-a", "--group", "ab", "--weight", "90")
		m.mustKM("start", "--id", "ab-b", "--group", "ab", "--weight", "10")
		m.waitAnsweredBy(t, "http://127.0.0.1:9100/status", "ab-a", "ab-b")
		script := `for i in $(seq 1000); do curl -s -o /dev/null -m 5 -f -w '%header{x-fake-engine}\n' http://127.0.0.1:9100/status || echo FAIL; done`
		out := m.must("sh", "-c", script)
		a, b := strings.Count(out, "ab-a\n"), strings.Count(out, "ab-b\n")
		t.Logf("1,000 requests: ab-a %d, ab-b %d, failed %d", a, b, strings.Count(out, "FAIL"))
		if a+b != 1000 || a < 850 || a > 950 {
			t.Errorf("weights 90/10: ab-a %d, ab-b %d of 1,000, want 900±50 and 100±50 with none failed", a, b)
		}
		if r := m.km("start", "--id", "ab-c", "--group", "ab", "--weight", "300"); r.code != 2 || !strings.Contains(r.stderr, "--weight 300: must be between 1 and 256") {
			t.Errorf("start --weight 300: %s", r)
		}
	})

	run("balance path answers three generation-A instances through one port", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			m.mustKM("start", "--processor", "a", "--group", "gw", "--id", fmt.Sprintf("processor-%d", i), "--port", fmt.Sprint(8000+i))
		}
		for i := 1; i <= 3; i++ {
			id := fmt.Sprintf("processor-%d", i)
			url := "http://127.0.0.1:9200/" + id + "/ping"
			m.waitFor(id+" through the front", 30*time.Second, func() bool {
				return m.exec("curl", "-s", "-f", "-o", "/dev/null", "--max-time", "5", url).code == 0
			})
			for range 3 {
				if engine := m.header(url, "X-Fake-Engine"); engine != id {
					t.Errorf("%s answered by the engine of %q", url, engine)
				}
			}
		}
		if code := strings.TrimSpace(m.exec("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9200/processor-9/ping").stdout); code != "404" {
			t.Errorf("an id no member has: %s, want 404", code)
		}
	})
}

// waitAnsweredBy waits until requests to url are answered by each of ids.
func (m *machine) waitAnsweredBy(t *testing.T, url string, ids ...string) {
	t.Helper()
	script := fmt.Sprintf(`for i in $(seq 20); do curl -s -o /dev/null -m 5 -f -w '%%header{x-fake-engine}\n' %s || echo FAIL; done`, url)
	var out string
	m.waitFor("answers from "+strings.Join(ids, ", "), 60*time.Second, func() bool {
		out = m.exec("sh", "-c", script).stdout
		for _, id := range ids {
			if !strings.Contains(out, id+"\n") {
				return false
			}
		}
		return true
	})
}

// load is a steady, bounded load on one URL inside the machine: one
// request at a time, at most 50 a second.
// minLoad is the fewest requests a load must have sent through a change
// for its count of failures to mean something. The load is curl in a
// shell loop, whose pace follows the machine's: on a busy 2-core machine
// a roll of three members saw 45. Twenty requests over a change that keeps
// each member out for a second or more would meet an outage, as the plain
// restart beside each roll shows.
const minLoad = 20

type load struct {
	m      *machine
	cancel context.CancelFunc
	done   chan struct{}
	out    strings.Builder
}

func (m *machine) startLoad(t *testing.T, url string) *load {
	t.Helper()
	m.exec("rm", "-f", "/run/kato-test-load-stop")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	l := &load{m: m, cancel: cancel, done: make(chan struct{})}
	script := fmt.Sprintf(`while [ ! -e /run/kato-test-load-stop ]; do if curl -s -o /dev/null -m 10 -f %s; then echo OK; else echo FAIL; fi; sleep 0.02; done`, url)
	cmd := m.Command(ctx, "sh", "-c", script)
	cmd.Stdout = &l.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(l.done) }()
	return l
}

// stop ends the load and counts its answered and failed requests.
func (l *load) stop() (ok, failed int) {
	l.m.exec("touch", "/run/kato-test-load-stop")
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
		l.cancel()
		<-l.done
	}
	l.cancel()
	return strings.Count(l.out.String(), "OK\n"), strings.Count(l.out.String(), "FAIL\n")
}
