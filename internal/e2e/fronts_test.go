package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/units"
)

// frontsJSON is `kato-manager list --fronts --json` by group.
func (m *machine) frontsJSON() map[string]map[string]any {
	m.t.Helper()
	var rows []map[string]any
	if err := json.Unmarshal([]byte(m.mustKM("list", "--fronts", "--json")), &rows); err != nil {
		m.t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, r := range rows {
		out[r["group"].(string)] = r
	}
	return out
}

// memberStates is the state of each member of a front row of the JSON.
func memberStates(row map[string]any) map[string]string {
	out := map[string]string{}
	members, _ := row["members"].([]any)
	for _, m := range members {
		mm := m.(map[string]any)
		out[mm["id"].(string)] = mm["state"].(string)
	}
	return out
}

// TestFrontsSeenEverywhere: a front started by hand (front.Render and
// systemctl start kato-front@web) over two processor doubles is in list,
// list --json, status and status --json with its port, balance and
// members; a member drained through the admin socket shows draining; a
// member down is a PROBLEM of status; serve under kato-manager.service,
// without CAP_DAC_OVERRIDE, reads the front's read-only stats socket for
// /metrics and the dashboard, which an unprivileged user cannot reach.
func TestFrontsSeenEverywhere(t *testing.T) {
	if _, err := exec.LookPath("/usr/sbin/haproxy"); err != nil {
		t.Fatal("haproxy is not installed: run packaging/deps.sh test")
	}
	p := bootKGPool(t, "", 0)
	p.mustKM("start", "--id", "web-1", "--port", "8001", "--group", "web")
	p.mustKM("start", "--id", "web-2", "--port", "8002", "--group", "web")
	g := front.Group{Name: "web", Port: 8080, Balance: front.LeastConn, CheckInterval: 200 * time.Millisecond,
		Ready:   front.ReadyCheck{Path: "/health", Body: front.HealthyBody},
		Members: []front.Member{{ID: "web-1", Address: "127.0.0.1", Port: 8001}, {ID: "web-2", Address: "127.0.0.1", Port: 8002}}}
	cfg, err := front.Render(g, front.SocketPath(g.Name))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteFile(front.ConfigPath(g.Name), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("systemctl", "start", units.FrontUnit("web"))
	p.waitFor("both members up in list --fronts --json", 30*time.Second, func() bool {
		st := memberStates(p.frontsJSON()["web"])
		return st["web-1"] == "up" && st["web-2"] == "up"
	})
	for range 10 {
		p.must("curl", "-sS", "-f", "--max-time", "5", "-o", "/dev/null", "http://127.0.0.1:8080/status")
	}
	row := p.frontsJSON()["web"]
	if row["port"] != float64(8080) || row["balance"] != "leastconn" || row["answering"] != true || row["requests"].(float64) < 10 {
		t.Errorf("list --fronts --json: %v", row)
	}
	if out := p.mustKM("list"); !strings.Contains(out, "fronts:") || !regexpMatch(`web\s+running\s+-\s+8080\s+leastconn\s+2 up, 0 draining, 0 down`, out) || !strings.Contains(out, "member web-1") {
		t.Errorf("list does not show the front:\n%s", out)
	}
	if rows := p.listJSON(); rows["web-1"]["front"] == nil || rows["web-1"]["front"].(map[string]any)["state"] != "up" {
		t.Errorf("list --json: web-1 has no place in the front: %v", rows["web-1"])
	}

	// Drained through the admin socket, reached from the host through the
	// machine's root.
	admin := front.NewClient(fmt.Sprintf("/proc/%d/root%s", p.PID(), front.SocketPath("web")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.SetState(ctx, g.Backend("web-2"), "web-2", front.Drain); err != nil {
		t.Fatal(err)
	}
	if st := memberStates(p.frontsJSON()["web"]); st["web-2"] != "draining" || st["web-1"] != "up" {
		t.Errorf("after draining web-2: %v", st)
	}
	// Reloads right after the stats socket is read: each hands the front
	// to a new worker, and the socket still answers.
	workerPID := func() string {
		out, err := admin.Do(ctx, "show info")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(line, "Pid: "); ok {
				return v
			}
		}
		return ""
	}
	for i := range 3 {
		before := workerPID()
		p.mustKM("list", "--fronts")
		p.must("systemctl", "reload", units.FrontUnit("web"))
		p.waitFor(fmt.Sprintf("a new worker after reload %d", i+1), 15*time.Second, func() bool {
			pid := workerPID()
			return pid != "" && pid != before
		})
	}
	// A reload by hand starts from the configuration: the drain is gone
	// (only kato-manager saves the members' states before a reload), and
	// is made again.
	p.waitFor("both members up after the reloads", 15*time.Second, func() bool {
		st := memberStates(p.frontsJSON()["web"])
		return st["web-2"] == "up" && st["web-1"] == "up"
	})
	if err := admin.SetState(ctx, g.Backend("web-2"), "web-2", front.Drain); err != nil {
		t.Fatal(err)
	}
	// The new worker counts from zero.
	for range 5 {
		p.must("curl", "-sS", "-f", "--max-time", "5", "-o", "/dev/null", "http://127.0.0.1:8080/status")
	}
	status := p.km("status")
	if status.code != 0 || !regexpMatch(`web\s+running\s+-\s+8080\s+leastconn\s+1 up, 1 draining, 0 down\s+\d+\s+\d+\s+-`, status.stdout) || !regexpMatch(`member web-2\s+draining`, status.stdout) {
		t.Errorf("status with a member draining:\n%s", status)
	}

	// serve as its unit runs it: root without CAP_DAC_OVERRIDE.
	if err := p.WriteFile("/etc/kato/serve.token", []byte(dashboardToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.must("systemctl", "start", "kato-manager.service")
	const base = "http://127.0.0.1:9090"
	var metrics string
	p.waitFor("kato-manager.service's /metrics", 15*time.Second, func() bool {
		metrics, err = p.getWithToken(base + "/metrics")
		return err == nil
	})
	if st := p.must("cat", "/proc/"+p.mainPID("kato-manager.service")+"/status"); !strings.Contains(st, "\nCapBnd:\t0000000000080004\n") {
		t.Errorf("serve's capabilities are not dac_read_search and sys_ptrace alone:\n%s", st)
	}
	for _, want := range []string{
		`kato_front_up{group="web"} 1`,
		`kato_front_member_up{group="web",member="web-1",state="up"} 1`,
		`kato_front_member_up{group="web",member="web-2",state="draining"} 1`,
		`kato_front_errors_total{group="web"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics under kato-manager.service has no %s:\n%s", want, grepLines(metrics, "kato_front"))
		}
	}
	if !regexpMatch(`kato_front_requests_total\{group="web"\} [1-9]\d*`, metrics) {
		t.Errorf("/metrics: no requests counted by the front:\n%s", grepLines(metrics, "kato_front"))
	}
	page, err := p.getWithToken(base + "/")
	if err != nil || !strings.Contains(page, `id="front-web"`) || !strings.Contains(page, `<tr data-member="web-2"><td>web-2</td><td class="state warn">draining</td>`) {
		t.Errorf("the dashboard does not show the front: %v\n%s", err, page)
	}
	// Only root's DAC_READ_SEARCH reaches the read-only socket: the
	// runtime directory is the front's alone.
	if r := p.exec("runuser", "-u", "nobody", "--", "ls", "/run/kato-front/web/"); r.code == 0 {
		t.Errorf("an unprivileged user lists the front's runtime directory: %s", r)
	}

	// A member down: a PROBLEM of status, and of the front's JSON.
	if err := admin.SetState(ctx, g.Backend("web-2"), "web-2", front.Ready); err != nil {
		t.Fatal(err)
	}
	p.must("systemctl", "stop", "kato@web-1.service")
	p.waitFor("web-1 down in the front", 15*time.Second, func() bool { return memberStates(p.frontsJSON()["web"])["web-1"] == "down" })
	status = p.km("status", "--json")
	var st struct {
		Fronts []struct {
			Group, Problem string
		} `json:"fronts"`
	}
	if err := json.Unmarshal([]byte(status.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, status)
	}
	if status.code != 1 || len(st.Fronts) != 1 || st.Fronts[0].Problem != "member web-1 down" {
		t.Errorf("status --json with a member down: %s", status)
	}
	if out := p.km("status").stdout; !strings.Contains(out, "member web-1 down") {
		t.Errorf("status with a member down:\n%s", out)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
