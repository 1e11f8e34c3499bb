package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// killLoadWorkers is the load's concurrency in TestKillMemberUnderLoad:
// that many shell loops, each with one request in flight at a time, so at
// most that many requests are in flight anywhere, on the killed member
// included.
const killLoadWorkers = 4

// TestKillMemberUnderLoad: a group of three behind its front under a
// bounded steady load (GET, loopback); one member's main process is killed
// with SIGKILL. At most the requests in flight on it fail (bounded by the
// load's concurrency), systemd restarts it (Restart=on-failure), the front
// sees it up and sends it requests again, and the load goes on. Then a
// member drained through the admin socket stays drained, with its weight,
// through the reload a scale makes.
func TestKillMemberUnderLoad(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.ConfigWithMongo + `
[groups.web]
front = 9000
balance = "roundrobin"
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	const url = "http://127.0.0.1:9000/status"
	m.mustKM("scale", "--group", "web", "3")
	m.waitAnsweredBy(t, url, "web-1", "web-2", "web-3")
	pid := m.mainPID("kato@web-2.service")

	l := m.startPhasedLoad(t, url, killLoadWorkers)
	time.Sleep(time.Second)
	m.must("kill", "-9", pid)
	m.waitFor("web-2 restarted by systemd", 30*time.Second, func() bool {
		now := m.mainPID("kato@web-2.service")
		return now != "0" && now != pid && m.activeState("kato@web-2.service") == "active"
	})
	if n := strings.TrimSpace(m.must("systemctl", "show", "-P", "NRestarts", "kato@web-2.service")); n != "1" {
		t.Errorf("NRestarts of kato@web-2 after the kill: %s, want 1", n)
	}
	m.waitFor("web-2 up in the front again", 30*time.Second, func() bool {
		return memberStates(m.frontsJSON()["web"])["web-2"] == "up"
	})
	m.waitAnsweredBy(t, url, "web-2")
	// The same load goes on with web-2 back in the rotation.
	m.must("sh", "-c", "echo after >/run/kato-test-load-phase")
	time.Sleep(4 * time.Second)
	out := l.stopPhased()
	failed := strings.Count(out, "FAIL")
	ok, after := strings.Count(out, "OK "), strings.Count(out, "OK after")
	t.Logf("kill -9 of a member under load: %d requests, %d failed, %d answered once it was back", ok+failed, failed, after)
	if failed > killLoadWorkers {
		t.Errorf("%d requests failed, more than the %d that can be in flight on the killed member:\n%s", failed, killLoadWorkers, grepLines(out, "FAIL"))
	}
	if ok < minLoad || after < minLoad {
		t.Errorf("the load did not go on: %d answered, %d after the member came back; want at least %d of each", ok, after, minLoad)
	}

	// A drain made through the admin socket survives the reload
	// kato-manager makes when the members change (scale 3 → 4), weight
	// included.
	admin := front.NewClient(m.Root() + front.SocketPath("web"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := admin.SetState(ctx, "members", "web-1", front.Drain); err != nil {
		t.Fatal(err)
	}
	if out, err := admin.Do(ctx, "set weight members/web-1 7"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("set weight: %v %s", err, out)
	}
	m.mustKM("scale", "--group", "web", "4")
	m.waitAnsweredBy(t, url, "web-4")
	row := m.frontsJSON()["web"]
	if st := memberStates(row); st["web-1"] != "draining" || st["web-4"] != "up" {
		t.Errorf("members after scale 4 with web-1 drained: %v", st)
	}
	for _, mb := range row["members"].([]any) {
		if mb := mb.(map[string]any); mb["id"] == "web-1" && mb["weight"] != 7.0 {
			t.Errorf("web-1's weight after the reload: %v, want 7", mb["weight"])
		}
	}
	if out := strings.TrimSpace(m.must("cat", front.StateFilePath("web"))); out != "1" {
		t.Errorf("saved states after the reload: %q, want emptied", out)
	}
}

// startPhasedLoad is a load of n shell loops on url inside the machine,
// each one request at a time; each line is OK or FAIL and the phase read
// from /run/kato-test-load-phase when the request ended.
func (m *machine) startPhasedLoad(t *testing.T, url string, n int) *load {
	t.Helper()
	m.exec("rm", "-f", "/run/kato-test-load-stop", "/run/kato-test-load-phase")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	l := &load{m: m, cancel: cancel, done: make(chan struct{})}
	loop := fmt.Sprintf(`while [ ! -e /run/kato-test-load-stop ]; do if curl -s -o /dev/null -m 10 -f %s; then r=OK; else r=FAIL; fi; echo "$r $(cat /run/kato-test-load-phase 2>/dev/null || echo before)"; sleep 0.02; done`, url)
	script := fmt.Sprintf(`for w in $(seq %d); do ( %s ) & done; wait`, n, loop)
	cmd := m.Command(ctx, "sh", "-c", script)
	cmd.Stdout = &l.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(l.done) }()
	return l
}

// stopPhasedLoad ends the load and returns its lines.
func (l *load) stopPhased() string {
	l.stop()
	return l.out.String()
}
