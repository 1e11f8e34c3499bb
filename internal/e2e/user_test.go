package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kato-manager/kato-manager/internal/testkit/promtest"
	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
	"github.com/kato-manager/kato-manager/units"
)

// userName is the unprivileged user TestUserMode runs kato-manager --user
// as.
const userName = "katouser"

// userSession is an unprivileged user with a lingering systemd user
// manager inside a machine.
type userSession struct {
	*machine
	uid  string
	home string
}

// newUserSession creates the user, lets its manager run without a login
// (loginctl enable-linger) and waits for user@UID.service.
func newUserSession(t *testing.T, m *machine) *userSession {
	t.Helper()
	m.must("useradd", "--create-home", "--shell", "/bin/sh", userName)
	u := &userSession{machine: m, uid: strings.TrimSpace(m.must("id", "-u", userName)), home: "/home/" + userName}
	m.must("loginctl", "enable-linger", userName)
	m.waitFor("user@"+u.uid+".service", 30*time.Second, func() bool {
		return m.activeState("user@"+u.uid+".service") == "active" && m.exists("/run/user/"+u.uid+"/bus")
	})
	return u
}

// run runs a command as the user, in the environment a login session
// gives: its home, its runtime directory and its session bus.
func (u *userSession) run(args ...string) result {
	u.t.Helper()
	return u.runEnv(map[string]string{}, args...)
}

// runEnv runs a command as the user with some of the session's variables
// changed; an empty value leaves the variable out.
func (u *userSession) runEnv(change map[string]string, args ...string) result {
	u.t.Helper()
	vars := map[string]string{"HOME": u.home, "USER": userName, "LOGNAME": userName, "PATH": "/usr/local/bin:/usr/bin:/bin",
		"LANG": "C.UTF-8", "XDG_RUNTIME_DIR": "/run/user/" + u.uid, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/" + u.uid + "/bus"}
	for k, v := range change {
		vars[k] = v
	}
	cmd := []string{"runuser", "-u", userName, "--", "env", "-i"}
	for k, v := range vars {
		if v != "" {
			cmd = append(cmd, k+"="+v)
		}
	}
	return u.exec(append(cmd, args...)...)
}

// mustRun runs a command as the user and requires success.
func (u *userSession) mustRun(args ...string) string {
	u.t.Helper()
	r := u.run(args...)
	if r.code != 0 {
		u.t.Fatalf("%q as %s failed: %s", args, userName, r)
	}
	return r.stdout
}

// km runs kato-manager --user as the user and requires success.
func (u *userSession) km(args ...string) string {
	u.t.Helper()
	return u.mustRun(append([]string{katoManager, "--user"}, args...)...)
}

// userProp reads a property of a unit of the user's manager.
func (u *userSession) userProp(unit, name string) string {
	u.t.Helper()
	return strings.TrimSpace(u.mustRun("systemctl", "--user", "show", "-P", name, unit))
}

// TestUserMode runs instances and KG workers on an unprivileged user's
// systemd user manager with kato-manager --user, and checks they run there,
// as the user, with every file under the user's home.
func TestUserMode(t *testing.T) {
	m := bootMachine(t)
	u := newUserSession(t, m)
	// Everything the test changes from here on must be the user's: a
	// marker to find files written under /etc after it.
	m.must("touch", "/run/kato-user-mode-marker")
	// The user's configuration: the processor double, no shared services
	// (mongod.service is no unit of the user's manager), and the KG
	// service double. The queue stays at its default place.
	conf := testbed.Config + "\n[kg]\nservice_url = \"" + kgService + "\"\npoll_interval = 0.2\n"
	u.mustRun("mkdir", "-p", u.home+"/.config/kato")
	u.mustRun("sh", "-c", "cat > \"$HOME/.config/kato/kato.toml\" <<'EOF'\n"+conf+"\nEOF\n")

	out := u.km("install-units")
	// The unit files go to the user's vendor directory, the drop-ins and
	// .wants links to the user's configuration.
	vendorDir := u.home + "/.local/share/systemd/user"
	unitDir := u.home + "/.config/systemd/user"
	for _, name := range []string{"kato@.service", "kato.target", "kg-worker@.service", "kg-workers.target"} {
		if !strings.Contains(out, "wrote "+vendorDir+"/"+name+"\n") {
			t.Errorf("install-units did not write %s:\n%s", name, out)
		}
	}
	if strings.Contains(out, "sysusers") || strings.Contains(out, "tmpfiles") || strings.Contains(out, "0640") {
		t.Errorf("install-units --user did root's work:\n%s", out)
	}
	for _, target := range []string{units.InstanceTarget, units.WorkerTarget} {
		if s := u.userProp(target, "UnitFileState"); s != "enabled" {
			t.Errorf("%s in the user manager is %s, want enabled", target, s)
		}
		if !m.exists(unitDir + "/default.target.wants/" + target) {
			t.Errorf("no %s/default.target.wants/%s", unitDir, target)
		}
	}
	unit := m.readFile(vendorDir + "/kato@.service")
	for _, directive := range units.UserLeftOut {
		if strings.Contains(unit, "\n"+directive+"=") {
			t.Errorf("the user's kato@.service sets %s=:\n%s", directive, unit)
		}
	}

	t.Run("instances", func(t *testing.T) {
		u.t = t
		for i := 1; i <= 2; i++ {
			u.km("start", "--id", fmt.Sprintf("user-%d", i), "--name", fmt.Sprintf("User %d", i), "--port", strconv.Itoa(8100+i))
		}
		for i := 1; i <= 2; i++ {
			id := fmt.Sprintf("user-%d", i)
			unit := units.InstanceUnit(id)
			if s := u.userProp(unit, "ActiveState"); s != "active" {
				t.Fatalf("%s in the user manager is %s", unit, s)
			}
			// Not a unit of the system manager: it runs in the user's
			// manager's cgroup, as the user.
			if s := m.activeState(unit); s == "active" {
				t.Errorf("%s is active in the system manager", unit)
			}
			if cg := u.userProp(unit, "ControlGroup"); !strings.Contains(cg, "/user@"+u.uid+".service/") {
				t.Errorf("%s runs in cgroup %q, not under user@%s.service", unit, cg, u.uid)
			}
			pid := u.userProp(unit, "MainPID")
			if owner := strings.TrimSpace(m.must("stat", "-c", "%u", "/proc/"+pid)); owner != u.uid {
				t.Errorf("%s's process %s runs as uid %s, want %s", unit, pid, owner, u.uid)
			}
			// Generation B, the default: /health names the instance.
			body, err := m.get(fmt.Sprintf("http://127.0.0.1:%d/health", 8100+i))
			if err != nil || !strings.Contains(body, `"processor_id":"`+id+`"`) {
				t.Fatalf("ping %s: %q %v", id, body, err)
			}
		}
		var rows []map[string]any
		if err := json.Unmarshal([]byte(u.km("list", "--json")), &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || rows[0]["id"] != "user-1" || rows[0]["active_state"] != "active" || rows[1]["api_port"] != 8102.0 {
			t.Errorf("list --json: %v", rows)
		}
		// Both ways to the user's manager that systemctl --user knows: its
		// private socket in XDG_RUNTIME_DIR, which needs no session bus,
		// and the session bus.
		for _, tc := range []struct {
			name   string
			change map[string]string
		}{
			{"the private socket, with no session bus", map[string]string{"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}},
			{"the session bus, with no runtime directory", map[string]string{"XDG_RUNTIME_DIR": ""}},
		} {
			if r := u.runEnv(tc.change, katoManager, "--user", "list"); r.code != 0 || !strings.Contains(r.stdout, "user-2") {
				t.Errorf("list --user through %s: %s", tc.name, r)
			}
		}
		if r := u.runEnv(map[string]string{"XDG_RUNTIME_DIR": "", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}, katoManager, "--user", "list"); r.code != 1 || !strings.Contains(r.stderr, "connect to your systemd user manager") {
			t.Errorf("list --user with no way to the manager: %s", r)
		}
		if r := u.run(katoManager, "--user", "status"); r.code != 0 || !strings.Contains(r.stdout, "registry: in step with systemd") {
			t.Errorf("status --user: %s", r)
		}
		// The files are the user's, at the XDG places.
		for _, path := range []string{
			u.home + "/.local/state/kato/instances.toml",
			u.home + "/.config/kato/instances/user-1.env",
			unitDir + "/kato@user-1.service.d/kato-manager.conf",
			u.home + "/.local/state/kato/instances/user-1",
		} {
			if owner := strings.TrimSpace(m.must("stat", "-c", "%u", path)); owner != u.uid {
				t.Errorf("%s belongs to uid %s, want %s", path, owner, u.uid)
			}
		}
		if wd := u.userProp("kato@user-1.service", "WorkingDirectory"); wd != u.home+"/.local/state/kato/instances/user-1" {
			t.Errorf("WorkingDirectory=%s", wd)
		}
		m.waitFor("user-1's start line in the user's journal", 20*time.Second, func() bool {
			return strings.Contains(u.run(katoManager, "--user", "logs", "user-1", "-n", "50").stdout, "user-1")
		})

		before := u.userProp("kato@user-2.service", "MainPID")
		if out := u.km("restart", "user-2"); !strings.Contains(out, "restarted user-2 (User 2): API port 8102") {
			t.Errorf("restart:\n%s", out)
		}
		if after := u.userProp("kato@user-2.service", "MainPID"); after == before || u.userProp("kato@user-2.service", "ActiveState") != "active" {
			t.Errorf("restart: MainPID %s before, %s after", before, after)
		}
		// serve --user's /metrics: the user's instances as the user's
		// manager has them, memory from their cgroups under
		// user@UID.service, and a restart followed from the manager's
		// signals.
		u.mustRun("systemd-run", "--user", "--unit=kato-serve", "--", katoManager, "--user", "serve", "--listen", "127.0.0.1:9191", "--public-reads")
		const metricsURL = "http://127.0.0.1:9191/metrics"
		scrape := func() map[string]*dto.MetricFamily {
			t.Helper()
			body, err := m.get(metricsURL)
			if err != nil {
				return nil
			}
			fams, err := promtest.Parse(strings.NewReader(body))
			if err != nil {
				t.Fatalf("parse /metrics: %v\n%s", err, body)
			}
			return fams
		}
		userStart := func(unit string) float64 {
			t.Helper()
			out := strings.TrimSpace(u.mustRun("systemctl", "--user", "show", "-P", "ExecMainStartTimestamp", "--timestamp=unix", unit))
			sec, err := strconv.ParseFloat(strings.TrimPrefix(out, "@"), 64)
			if err != nil {
				t.Fatalf("ExecMainStartTimestamp of %s: %q", unit, out)
			}
			return sec
		}
		matches := func(id string) bool {
			fams := scrape()
			unit := units.InstanceUnit(id)
			up, _ := promtest.Value(fams, "kato_instance_up", "id", id)
			ready, _ := promtest.Value(fams, "kato_instance_ready", "id", id)
			start, _ := promtest.Value(fams, "kato_instance_start_time_seconds", "id", id)
			restarts, ok := promtest.Value(fams, "kato_instance_restarts_total", "id", id)
			return ok && up == 1 && ready == 1 && math.Floor(start) == userStart(unit) && strconv.Itoa(int(restarts)) == u.userProp(unit, "NRestarts")
		}
		for _, id := range []string{"user-1", "user-2"} {
			m.waitFor("serve --user's metrics of "+id, 20*time.Second, func() bool { return matches(id) })
			if mem, _ := promtest.Value(scrape(), "kato_instance_memory_bytes", "id", id); mem < 1<<20 || mem > 1<<30 {
				t.Errorf("%s memory %v bytes (the user's manager: %s)", id, mem, u.userProp(units.InstanceUnit(id), "MemoryCurrent"))
			}
		}
		before = u.userProp("kato@user-2.service", "ExecMainStartTimestamp")
		u.mustRun("systemctl", "--user", "restart", "kato@user-2.service")
		m.waitFor("serve --user's metrics to follow user-2's restart", 30*time.Second, func() bool {
			return u.userProp("kato@user-2.service", "ExecMainStartTimestamp") != before && matches("user-2")
		})
		if log := u.run("journalctl", "--user", "--user-unit=kato-serve.service", "--no-pager", "-o", "cat").stdout; strings.Contains(log, "watch units") {
			t.Errorf("serve --user lost its watch of the units:\n%s", log)
		}
		u.mustRun("systemctl", "--user", "stop", "kato-serve.service")

		// Drift in the user's files is repaired in the user's scope.
		u.mustRun("rm", "-r", u.home+"/.config/kato/instances/user-2.env", unitDir+"/kato@user-2.service.d")
		u.mustRun("systemctl", "--user", "daemon-reload")
		u.mustRun("systemctl", "--user", "stop", "kato@user-2.service")
		if out := u.km("gc"); !strings.Contains(out, "removed registry entry user-2") {
			t.Errorf("gc:\n%s", out)
		}
		if out := u.km("gc"); !strings.Contains(out, "nothing to repair") {
			t.Errorf("second gc:\n%s", out)
		}
		u.km("start", "--id", "user-2", "--port", "8102")

		u.km("stop", "user-1")
		if s := u.userProp("kato@user-1.service", "ActiveState"); s != "inactive" {
			t.Errorf("kato@user-1.service after stop: %s", s)
		}
		out := u.km("stop", "--all", "--no-mongo")
		if !strings.Contains(out, "stopped and removed user-2") {
			t.Errorf("stop --all:\n%s", out)
		}
		if out := u.km("list"); !strings.Contains(out, "no instances") {
			t.Errorf("list after stop --all:\n%s", out)
		}
	})

	t.Run("workers", func(t *testing.T) {
		u.t = t
		m.must("systemd-run", "--unit=kgservice", "--", kgServiceFake, "--listen", "127.0.0.1:8088")
		m.waitFor("the KG service test double", 10*time.Second, func() bool {
			_, err := m.get(kgService + "/health")
			return err == nil
		})
		// The CLI makes the queue database at the user's default place.
		if out := u.km("queue", "stats"); !strings.Contains(out, "total 0") {
			t.Fatalf("queue stats on a new database: %s", out)
		}
		db := u.home + "/.local/state/kato/kg/kg.db"
		u.mustRun("sqlite3", "-cmd", ".timeout 10000", db, `
INSERT INTO crawled_content(id, url, title, markdown, metadata)
SELECT i, 'https://example.com/' || i, 'Document ' || i,
	'# Document ' || i || char(10) || 'Body of document ' || i || ', long enough for the KG service''s limits.', '{}'
FROM (SELECT 1 AS i UNION ALL SELECT 2 UNION ALL SELECT 3);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES
	(1, 0, 'Chunk of one', 0, 12, 3), (2, 0, 'Chunk of two', 0, 12, 3), (3, 0, 'Chunk of three', 0, 14, 3);`)
		u.km("queue", "enqueue", "1", "2", "3")

		out := u.km("workers", "start", "-n", "2")
		if !strings.Contains(out, "2 KG worker(s) running") {
			t.Fatalf("workers start:\n%s", out)
		}
		for _, w := range []string{units.WorkerUnit(1), units.WorkerUnit(2)} {
			if s := u.userProp(w, "ActiveState"); s != "active" {
				t.Fatalf("%s in the user manager is %s", w, s)
			}
			if s := m.activeState(w); s == "active" {
				t.Errorf("%s is active in the system manager", w)
			}
		}
		err := sdharness.WaitFor(t.Context(), 60*time.Second, "the user's workers to complete the queue", func() (bool, error) {
			return strings.Contains(u.km("queue", "stats"), "total 3: pending 0, processing 0, completed 3"), nil
		})
		if err != nil {
			t.Fatalf("%v\nqueue:\n%s\nworker 1's journal:\n%s", err, u.km("queue", "list"), u.run("journalctl", "--user", "--user-unit=kg-worker@1.service", "-n", "30", "--no-pager").stdout)
		}
		if r := u.run(katoManager, "--user", "workers", "health"); r.code != 0 || !strings.Contains(r.stdout, "2 total, 2 healthy") {
			t.Errorf("workers health: %s", r)
		}
		// The workers write their counters into the queue once a second.
		m.waitFor("workers stats to count the 3 documents", 10*time.Second, func() bool {
			return strings.Contains(u.km("workers", "stats"), "processed: 3 (success 3, failed 0, skipped 0)")
		})
		var health struct {
			Total   int `json:"total_workers"`
			Healthy int `json:"healthy_workers"`
		}
		if err := json.Unmarshal([]byte(u.km("workers", "health", "--json", "--restart-unhealthy")), &health); err != nil || health.Total != 2 || health.Healthy != 2 {
			t.Errorf("workers health --json: %+v (%v)", health, err)
		}
		var items []map[string]any
		if err := json.Unmarshal([]byte(u.km("queue", "list", "--status", "completed", "--json")), &items); err != nil || len(items) != 3 {
			t.Errorf("queue list --status completed: %v (%v)", items, err)
		}
		if out := u.km("queue", "retry-failed"); !strings.Contains(out, "0 failed item(s) queued again") {
			t.Errorf("queue retry-failed:\n%s", out)
		}
		// serve answers from the user's pool and queue.
		serve := u.run("sh", "-c", katoManager+" --user serve --listen 127.0.0.1:9191 --public-reads & pid=$!; "+
			"for i in $(seq 50); do curl -sf http://127.0.0.1:9191/stats && break; sleep 0.1; done; kill $pid")
		if !strings.Contains(serve.stdout, `"total_workers": 2`) || !strings.Contains(serve.stdout, `"completed": 3`) {
			t.Errorf("serve /stats: %s", serve)
		}
		before := u.userProp(units.WorkerUnit(1), "MainPID")
		if out := u.km("workers", "restart"); !strings.Contains(out, "restarted "+units.WorkerUnit(1)) {
			t.Errorf("workers restart:\n%s", out)
		}
		if after := u.userProp(units.WorkerUnit(1), "MainPID"); after == before {
			t.Errorf("workers restart: %s kept MainPID %s", units.WorkerUnit(1), after)
		}
		if out := u.km("workers", "scale", "1"); !strings.Contains(out, "1 worker(s) running; stopped 1") {
			t.Errorf("workers scale 1:\n%s", out)
		}
		u.km("workers", "stop")
		if s := u.userProp(units.WorkerUnit(1), "ActiveState"); s != "inactive" {
			t.Errorf("%s after workers stop: %s", units.WorkerUnit(1), s)
		}
	})

	// The README's --user section, as written, with its default
	// configuration (no shared services) and stand-in processor.
	t.Run("README", func(t *testing.T) {
		u.t = t
		scripts := readmeScripts(t, "Without root: `--user`")
		if len(scripts) != 1 {
			t.Fatalf("found %d sh blocks in the README's --user section, want 1", len(scripts))
		}
		out := u.mustRun("/bin/sh", "-ec", scripts[0])
		for _, want := range []string{"started mine-1", "started mine-2", "stopped and removed mine-1", "stopped and removed mine-2"} {
			if !strings.Contains(out, want) {
				t.Errorf("the README's --user block did not print %q:\n%s", want, out)
			}
		}
		if s := u.userProp("kato@mine-1.service", "ActiveState"); s != "inactive" {
			t.Errorf("kato@mine-1.service after the README's stop: %s", s)
		}
	})
	u.t = t

	// Nothing of kato-manager's went to the system's places.
	if out := strings.TrimSpace(m.must("find", "/etc", "/usr/local/lib", "-newer", "/run/kato-user-mode-marker", "-not", "-type", "d")); out != "" {
		t.Errorf("files written under /etc or /usr/local/lib in --user mode:\n%s", out)
	}
	for _, path := range []string{"/var/lib/kato", "/etc/kato/instances", "/etc/systemd/system/kato@.service"} {
		if m.exists(path) {
			t.Errorf("%s exists after --user mode", path)
		}
	}
}
