package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// TestInstances drives kato-manager on one real systemd through the KATO multi-instance guide's
// scenarios. Each subtest leaves no instance behind.
func TestInstances(t *testing.T) {
	m := bootMachine(t)
	run := func(name string, f func(t *testing.T)) { m.subtest(t, name, f, nil) }

	run("three instances with the guide's flags", func(t *testing.T) {
		m.mustKM("start", "--id", "processor-1", "--name", "Main Processor", "--port", "8001")
		m.mustKM("start", "--id", "processor-2", "--name", "Secondary", "--port", "8002", "--max-predictions", "200")
		m.mustKM("start", "--id", "processor-3", "--name", "Auto Learner", "--port", "8003", "--max-seq-length", "10")
		for i := 1; i <= 3; i++ {
			id := fmt.Sprintf("processor-%d", i)
			if s := m.activeState("kato@" + id + ".service"); s != "active" {
				t.Fatalf("kato@%s.service is %s", id, s)
			}
			body, err := m.get(fmt.Sprintf("http://127.0.0.1:%d/health", 8000+i))
			if err != nil || !strings.Contains(body, `"processor_id":"`+id+`"`) {
				t.Fatalf("health of %s: %q %v", id, body, err)
			}
		}
		// What the processor (generation B, the default) received: one
		// variable per setting.
		var env map[string]string
		body, err := m.get("http://127.0.0.1:8002/env")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(body), &env); err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{"PROCESSOR_ID": "processor-2", "PROCESSOR_NAME": "Secondary", "MAX_PREDICTIONS": "200",
			"PORT": "8002", "INDEXER_TYPE": "VI", "RECALL_THRESHOLD": "0.1", "PERSISTENCE": "5", "QUIESCENCE": "3",
			"SMOOTHNESS": "3", "AUTO_ACT_METHOD": "none", "AUTO_ACT_THRESHOLD": "0.8", "ALWAYS_UPDATE_FREQUENCIES": "false",
			"SEARCH_DEPTH": "10", "SORT": "true", "PROCESS_PREDICTIONS": "true", "MAX_PATTERN_LENGTH": "0", "LOG_LEVEL": "INFO",
			"HOSTNAME": "kato-processor-2"} {
			if env[k] != want {
				t.Errorf("processor-2 got %s=%q, want %q", k, env[k], want)
			}
		}
		for _, k := range []string{"MANIFEST", "REST_PORT", "ZMQ_PORT"} {
			if v, ok := env[k]; ok {
				t.Errorf("generation B got %s=%q, which it does not read", k, v)
			}
		}
		// Operators look with plain systemctl and journalctl.
		cat := m.must("systemctl", "cat", "kato@processor-1.service")
		for _, want := range []string{"kato@.service", "kato-manager.conf", "ExecStart=\"/opt/kato-test/fakeprocessor\"", "DynamicUser=yes"} {
			if !strings.Contains(cat, want) {
				t.Errorf("systemctl cat lacks %q:\n%s", want, cat)
			}
		}
		m.waitFor("processor-1's start line in the journal", 10*time.Second, func() bool {
			return strings.Contains(m.exec("journalctl", "-u", "kato@processor-1.service", "--no-pager").stdout, "processor-1")
		})
		if logs := m.mustKM("logs", "processor-1", "-n", "20"); !strings.Contains(logs, "processor-1") {
			t.Errorf("kato-manager logs:\n%s", logs)
		}
		if user := strings.TrimSpace(m.must("systemctl", "show", "-P", "User", "kato@processor-1.service")); user != "kato-processor-1" {
			t.Errorf("runs as %q", user)
		}
		rows := m.listJSON()
		for i := 1; i <= 3; i++ {
			r := rows[fmt.Sprintf("processor-%d", i)]
			if r == nil || r["active_state"] != "active" || r["pid"].(float64) == 0 || r["api_port"] != float64(8000+i) || r["memory_bytes"].(float64) == 0 {
				t.Errorf("list row %d = %v", i, r)
			}
		}
		table := m.mustKM("list")
		if !strings.Contains(table, "Main Processor") || !strings.Contains(table, "running") {
			t.Errorf("list:\n%s", table)
		}
		if r := m.km("status"); r.code != 0 || !strings.Contains(r.stdout, "in step") {
			t.Errorf("status: %s", r)
		}
		// Starting a running instance is a no-op.
		if out := m.mustKM("start", "--id", "processor-1"); !strings.Contains(out, "already running") {
			t.Errorf("second start: %s", out)
		}
		// kato.target stops them all. Enabled instances come back with it
		// at boot, when systemd reads the .wants links: daemon-reload reads
		// them the same way.
		for i := 1; i <= 3; i++ {
			if !m.exists(fmt.Sprintf("/etc/systemd/system/kato.target.wants/kato@processor-%d.service", i)) {
				t.Errorf("processor-%d is not enabled", i)
			}
		}
		m.must("systemctl", "stop", "kato.target")
		// Generation B ignores SIGTERM: each stop ends with the kill after
		// the processor's stop_timeout, and counts as a clean one.
		for i := 1; i <= 3; i++ {
			unit := fmt.Sprintf("kato@processor-%d.service", i)
			m.waitFor(unit+" to stop with kato.target", 10*time.Second, func() bool { return m.activeState(unit) == "inactive" })
		}
		m.must("systemctl", "daemon-reload")
		m.must("systemctl", "start", "kato.target")
		for i := 1; i <= 3; i++ {
			if s := m.activeState(fmt.Sprintf("kato@processor-%d.service", i)); s != "active" {
				t.Errorf("after starting kato.target processor-%d is %s", i, s)
			}
		}
	})

	run("a single start, restart and stop say what they wait for", func(t *testing.T) {
		// Off a terminal: one log line per step, each with its time.
		stamped := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} \S`)
		check := func(what string, r result, want ...string) {
			t.Helper()
			if r.code != 0 {
				t.Fatalf("%s: %s", what, r)
			}
			t.Logf("%s:\n%s", what, r.stderr)
			for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if !stamped.MatchString(l) {
					t.Errorf("%s: line without its time: %q", what, l)
				}
			}
			for _, w := range want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("%s: stderr lacks %q:\n%s", what, w, r.stderr)
				}
			}
		}
		check("start", m.km("start", "--id", "waiter", "--port", "8005", "--timeout", "20s"),
			" unit waiting while systemd starts kato@waiter.service (", " of 20s)\n",
			" ready kato@waiter.service answered its health request (")
		check("restart", m.km("restart", "waiter"),
			" unit waiting while systemd restarts kato@waiter.service (",
			" ready kato@waiter.service answered its health request (")
		// Generation B ignores SIGTERM: the stop waits out its
		// stop_timeout (1s here), deactivating.
		check("stop", m.km("stop", "waiter"),
			" stopping waiting while systemd stops kato@waiter.service (0.0s, killed after 1s)\n",
			" stopping waiting while systemd stops kato@waiter.service (deactivating/",
			" stopped kato@waiter.service stopped (")
	})

	run("stop by id, by name, all", func(t *testing.T) {
		m.mustKM("start", "--id", "a", "--name", "Alpha")
		m.mustKM("start", "--id", "b", "--name", "Beta")
		m.mustKM("start", "--id", "c", "--name", "Gamma")
		m.mustKM("start", "--id", "d", "--name", "Gamma")
		m.mustKM("stop", "a")
		m.mustKM("stop", "--name", "Beta")
		if r := m.km("stop", "--name", "Gamma"); r.code != 2 || !strings.Contains(r.stderr, "c") || !strings.Contains(r.stderr, "d") {
			t.Errorf("ambiguous name: %s", r)
		}
		if r := m.km("stop", "nope"); r.code != 2 || !strings.Contains(r.stderr, "kato-manager list") {
			t.Errorf("unknown instance: %s", r)
		}
		rows := m.listJSON()
		if len(rows) != 2 || rows["c"] == nil || rows["d"] == nil {
			t.Fatalf("after two stops: %v", rows)
		}
		for _, id := range []string{"a", "b"} {
			if m.exists("/etc/systemd/system/kato@"+id+".service.d") || m.exists("/etc/kato/instances/"+id+".env") {
				t.Errorf("%s files left", id)
			}
			if s := m.activeState("kato@" + id + ".service"); s != "inactive" {
				t.Errorf("%s is %s", id, s)
			}
			if strings.Contains(m.exec("systemctl", "list-dependencies", "kato.target", "--plain").stdout, "kato@"+id) {
				t.Errorf("kato.target still wants %s", id)
			}
		}
		m.mustKM("stop", "--id", "c")
		out := m.mustKM("stop")
		if !strings.Contains(out, "stopped and removed d") {
			t.Errorf("stop with no arguments: %s", out)
		}
	})

	run("a part of a name selects its instance, as the guide's users type it", func(t *testing.T) {
		m.mustKM("start", "--id", "processor-1", "--name", "Main Processor")
		m.mustKM("start", "--id", "processor-2", "--name", "Secondary")
		if out := m.mustKM("stop", "--name", "Main"); !strings.Contains(out, "stopped and removed processor-1") {
			t.Errorf("stop --name Main: %s", out)
		}
		if s := m.activeState("kato@processor-1.service"); s != "inactive" {
			t.Errorf("processor-1 is %s", s)
		}
		m.mustKM("start", "--id", "processor-3", "--name", "Main Backup")
		m.mustKM("start", "--id", "processor-4", "--name", "Main Spare")
		if r := m.km("stop", "--name", "Main"); r.code != 2 || !strings.Contains(r.stderr, "processor-3 (Main Backup)") || !strings.Contains(r.stderr, "processor-4 (Main Spare)") {
			t.Errorf("stop of a part of two names: %s", r)
		}
		if rows := m.listJSON(); len(rows) != 3 || rows["processor-2"] == nil || rows["processor-3"] == nil || rows["processor-4"] == nil {
			t.Fatalf("after the refused stop: %v", rows)
		}
		if out := m.mustKM("restart", "spare"); !strings.Contains(out, "restarted processor-4") {
			t.Errorf("restart spare: %s", out)
		}
	})

	run("ports move past a foreign listener and a stopped instance", func(t *testing.T) {
		defer m.exec("systemctl", "stop", "foreign-listener.service")
		m.must("systemd-run", "--unit=foreign-listener", "--", "/usr/bin/python3", "-m", "http.server", "8000", "--bind", "127.0.0.1")
		m.waitFor("the foreign listener", 10*time.Second, func() bool {
			_, err := m.get("http://127.0.0.1:8000/")
			return err == nil
		})
		r := m.km("start", "--id", "auto")
		if r.code != 0 || !strings.Contains(r.stderr, "API port 8000 is in use; using 8001") {
			t.Fatalf("start past a busy port: %s", r)
		}
		m.mustKM("start", "--id", "sleeper", "--port", "8100")
		m.must("systemctl", "stop", "kato@sleeper.service")
		r = m.km("start", "--id", "late", "--port", "8100")
		if r.code != 0 || !strings.Contains(r.stderr, "reserved by instance sleeper; using 8101") {
			t.Fatalf("start on a reserved port: %s", r)
		}
		rows := m.listJSON()
		if rows["auto"]["api_port"] != float64(8001) || rows["late"]["api_port"] != float64(8101) || rows["sleeper"]["active_state"] != "inactive" {
			t.Fatalf("rows = %v", rows)
		}
		// The stopped instance comes back on its own port.
		m.mustKM("start", "--id", "sleeper")
		if _, err := m.get("http://127.0.0.1:8100/health"); err != nil {
			t.Fatal(err)
		}
	})

	run("twenty concurrent starts get twenty ports", func(t *testing.T) {
		var wg sync.WaitGroup
		results := make([]result, 20)
		for i := range results {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = m.km("start", "--id", fmt.Sprintf("c%02d", i))
			}(i)
		}
		wg.Wait()
		for i, r := range results {
			if r.code != 0 {
				t.Errorf("start c%02d: %s", i, r)
			}
		}
		rows := m.listJSON()
		ports := map[float64]string{}
		for id, r := range rows {
			for _, key := range []string{"api_port", "zmq_port"} {
				p := r[key].(float64)
				if p == 0 {
					// Generation B has no ZMQ port.
					if key == "api_port" {
						t.Errorf("%s has no API port", id)
					}
					continue
				}
				if other, dup := ports[p]; dup {
					t.Errorf("port %v given to %s and %s", p, other, id)
				}
				ports[p] = id
			}
			if r["active_state"] != "active" {
				t.Errorf("%s is %v", id, r["active_state"])
			}
		}
		if len(rows) != 20 {
			t.Fatalf("%d instances registered, want 20", len(rows))
		}
	})

	run("a crashed processor is restarted and status counts it", func(t *testing.T) {
		m.mustKM("start", "--id", "crashy", "--processor-command", fakeProcessor+" --crash-after 2s")
		// NRestarts counts the restart when it begins; the new process
		// listens a moment later.
		m.waitFor("systemd to restart crashy and it to listen again", 30*time.Second, func() bool {
			return strings.TrimSpace(m.exec("systemctl", "show", "-P", "NRestarts", "kato@crashy.service").stdout) != "0" &&
				m.km("status").code == 0
		})
		var st struct {
			Instances []struct {
				ID       string `json:"id"`
				Restarts int    `json:"restarts"`
			} `json:"instances"`
		}
		r := m.km("status", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r)
		}
		if len(st.Instances) != 1 || st.Instances[0].Restarts < 1 {
			t.Fatalf("status = %+v", st)
		}
		// A processor that crashes every two seconds may be caught between
		// a restart and its listen: status may then exit 1 for it.
		if r := m.km("status"); !strings.Contains(r.stdout, "crashy") || (r.code != 0 && !strings.Contains(r.stdout, "not listening")) {
			t.Fatalf("status does not show the instance: %s", r)
		}
	})

	run("a processor that never listens fails the start and is rolled back", func(t *testing.T) {
		r := m.km("start", "--id", "mute", "--processor-command", fakeProcessor+" --never-listen", "--timeout", "3s")
		if r.code != 1 || !strings.Contains(r.stderr, "did not listen on port") || !strings.Contains(r.stderr, "last log lines") {
			t.Fatalf("start: %s", r)
		}
		if rows := m.listJSON(); len(rows) != 0 {
			t.Fatalf("registry after rollback: %v", rows)
		}
		if m.exists("/etc/systemd/system/kato@mute.service.d") || m.exists("/etc/kato/instances/mute.env") {
			t.Fatal("unit files left after rollback")
		}
		if s := m.activeState("kato@mute.service"); s != "inactive" {
			t.Fatalf("unit is %s after rollback", s)
		}
	})

	run("learned memory survives restart and stop", func(t *testing.T) {
		m.mustKM("start", "--id", "learner", "--port", "8200")
		m.post("http://127.0.0.1:8200/learn", "{}")
		m.post("http://127.0.0.1:8200/learn", "{}")
		m.mustKM("restart", "learner")
		if body, err := m.get("http://127.0.0.1:8200/learned"); err != nil || !strings.Contains(body, `"learned":2`) {
			t.Fatalf("after restart: %q %v", body, err)
		}
		m.mustKM("stop", "learner")
		m.mustKM("start", "--id", "learner", "--port", "8200")
		if body, err := m.get("http://127.0.0.1:8200/learned"); err != nil || !strings.Contains(body, `"learned":2`) {
			t.Fatalf("after stop and start: %q %v", body, err)
		}
	})

	run("drift is reported and repaired", func(t *testing.T) {
		m.mustKM("start", "--id", "kept")
		m.mustKM("start", "--id", "vanished")
		m.mustKM("start", "--id", "orphan")
		m.must("rm", "-r", "/etc/systemd/system/kato@vanished.service.d", "/etc/kato/instances/vanished.env")
		m.must("sed", "-i", "/^\\[instances.orphan\\]/,/^sort/d", "/var/lib/kato/instances.toml")
		r := m.km("status")
		if r.code != 1 || !strings.Contains(r.stdout, "entries whose unit vanished: vanished") || !strings.Contains(r.stdout, "units with no entry: orphan") {
			t.Fatalf("status: %s\nregistry:\n%s", r, m.readFile("/var/lib/kato/instances.toml"))
		}
		m.mustKM("gc")
		if r := m.km("status"); r.code != 0 {
			t.Fatalf("status after gc: %s", r)
		}
		for _, id := range []string{"vanished", "orphan"} {
			if s := m.activeState("kato@" + id + ".service"); s != "inactive" {
				t.Errorf("%s is %s after gc", id, s)
			}
		}
		if rows := m.listJSON(); len(rows) != 1 || rows["kept"] == nil {
			t.Fatalf("after gc: %v", rows)
		}
	})

	run("bad input changes nothing", func(t *testing.T) {
		m.mustKM("start", "--id", "existing", "--port", "8300")
		before := m.readFile("/var/lib/kato/instances.toml")
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"start", "--id", "my processor"}, "invalid --id"},
			{[]string{"start", "--id", "a.b"}, "invalid --id"},
			{[]string{"start", "--id", strings.Repeat("x", 65)}, "invalid --id"},
			{[]string{"start", "--id", "x", "--recall-threshold", "1.5"}, "invalid --recall-threshold 1.5: must be between 0 and 1"},
			{[]string{"start", "--id", "x", "--indexer-type", "HNSW"}, "invalid --indexer-type"},
			{[]string{"start", "--id", "x", "--max-predictions", "0"}, "invalid --max-predictions 0"},
			{[]string{"start", "--id", "x", "--max-seq-length", "-1"}, "invalid --max-seq-length -1"},
			{[]string{"start", "--id", "x", "--persistence", "0"}, "invalid --persistence 0"},
			{[]string{"start", "--id", "x", "--quiescence", "-2"}, "invalid --quiescence -2"},
			{[]string{"start", "--id", "x", "--auto-act-threshold", "1.1"}, "invalid --auto-act-threshold 1.1: must be between 0 and 1"},
			{[]string{"start", "--id", "x", "-l", "TRACE"}, "invalid --log-level TRACE: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"},
			{[]string{"start", "--id", "x", "--network", "bridge"}, "invalid --network bridge: must be host or private"},
			{[]string{"start", "--id", "x", "--processor", "v9"}, "invalid --processor v9: must name a processor of kato.toml: default"},
			{[]string{"start", "--id", "x", "--search-depth", "0"}, "invalid --search-depth 0"},
			{[]string{"start", "--id", "x", "--port", "70000"}, "invalid --port 70000"},
			{[]string{"start", "--id", "x", "--port", "eighty"}, "invalid argument \"eighty\""},
			{[]string{"start", "--id", "x", "--name", "two\nlines"}, "invalid --name"},
			{[]string{"start", "--id", "x", "--processor-command", "python3 -m kato"}, "invalid --processor-command"},
			{[]string{"start", "--bogus"}, "unknown flag: --bogus"},
			{[]string{"frobnicate"}, "unknown command"},
			{[]string{"stop", "a", "b"}, "stop takes one instance"},
			{[]string{"stop", "--with-mongo", "--no-mongo"}, "exclude each other"},
			{[]string{"restart"}, "restart takes one instance"},
		} {
			r := m.km(tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%q: want exit 2 and %q, got %s", tc.args, tc.want, r)
			}
		}
		if after := m.readFile("/var/lib/kato/instances.toml"); after != before {
			t.Errorf("registry changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if m.exists("/etc/kato/instances/x.env") || m.activeState("kato@x.service") != "inactive" {
			t.Error("a rejected start left something behind")
		}
		// A malformed registry is reported with its line and never rewritten.
		m.must("sh", "-c", "printf '[instances.broken\\nname = 1\\n' >> /var/lib/kato/instances.toml")
		broken := m.readFile("/var/lib/kato/instances.toml")
		r := m.km("start", "--id", "y")
		if r.code != 1 || !strings.Contains(r.stderr, "/var/lib/kato/instances.toml") || !strings.Contains(r.stderr, "line") {
			t.Errorf("malformed registry: %s", r)
		}
		if m.readFile("/var/lib/kato/instances.toml") != broken {
			t.Error("malformed registry was rewritten")
		}
		m.must("sh", "-c", fmt.Sprintf("printf '%%s' %q > /var/lib/kato/instances.toml", before))
	})
}

// TestWhatRunsOnRealSystemd covers the faults where kato-manager judged by
// its files instead of by what runs: an apply killed (SIGKILL) or hung up on
// (SIGHUP) between its registry update and its restarts, a start of an id
// whose unit runs without a registry entry, a start whose port another
// process holds, and a generation-A processor that hangs on SIGTERM.
func TestWhatRunsOnRealSystemd(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.ConfigWithMongo + `
[processors.ahang]
command = ["/opt/kato-test/fakeprocessor", "--generation", "a", "--hang-on-sigterm"]
generation = "a"
stop_timeout = 2.0
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(name string, f func(t *testing.T)) { m.subtest(t, name, f, nil) }
	writeFleet := func(text string) {
		if err := m.WriteFile("/root/fleet.yaml", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// pausedApply runs apply as a transient unit that waits after its
	// registry update, and returns once it waits there.
	pausedApply := func(unit string) {
		m.must("systemd-run", "--unit="+unit, "--setenv=KATO_MANAGER_TEST_APPLY_PAUSE=registry", "--", katoManager, "apply", "-f", "/root/fleet.yaml")
		m.waitFor(unit+" to pause after the registry update", 60*time.Second, func() bool {
			return strings.Contains(m.exec("journalctl", "-u", unit, "--no-pager", "-o", "cat").stdout, "paused after the registry update")
		})
	}
	maxPredictions := func(port int) string {
		return m.envOf(fmt.Sprintf("http://127.0.0.1:%d/env", port))["MAX_PREDICTIONS"]
	}

	run("apply killed after its registry update converges on the next apply", func(t *testing.T) {
		writeFleet("instances:\n  - {id: k1, port: 8101}\n  - {id: k2, port: 8102}\n")
		m.mustKM("apply", "-f", "/root/fleet.yaml")
		writeFleet("instances:\n  - {id: k1, port: 8101, max_predictions: 7}\n  - {id: k2, port: 8102, max_predictions: 7}\n  - {id: k3, port: 8103, max_predictions: 7}\n")
		pausedApply("km-apply-kill")
		m.must("systemctl", "kill", "-s", "SIGKILL", "km-apply-kill.service")
		m.waitFor("the killed apply to end", 10*time.Second, func() bool { return !isActive(m.activeState("km-apply-kill.service")) })
		// The registry holds the new settings; the processes run the old.
		if reg := m.readFile("/var/lib/kato/instances.toml"); !strings.Contains(reg, "[instances.k3]") {
			t.Fatalf("registry after the kill:\n%s", reg)
		}
		if got := maxPredictions(8101); got != "100" {
			t.Fatalf("k1 runs MAX_PREDICTIONS=%s before the second apply", got)
		}
		r := m.km("status")
		if r.code != 1 || !strings.Contains(r.stdout, "running with other settings than their registry entries and kato.toml give them: k1, k2") || strings.Contains(r.stdout, "in step") {
			t.Errorf("status after the kill: %s", r)
		}
		if st := m.statusJSON(); strings.Join(st.Drift.StaleSettings, ",") != "k1,k2" {
			t.Errorf("status --json drift %+v", st.Drift)
		}
		if r := m.km("diff", "-f", "/root/fleet.yaml"); r.code != 1 || !strings.Contains(r.stdout, "^ k1\n    unit: started with other settings -> running the registered settings") ||
			!strings.Contains(r.stdout, "3 to restart") {
			t.Errorf("diff after the kill: %s", r)
		}
		out := m.mustKM("apply", "-f", "/root/fleet.yaml")
		if strings.Contains(out, "nothing to do") || !strings.Contains(out, "^ k1 restarted") || !strings.Contains(out, "^ k3 restarted") {
			t.Errorf("second apply:\n%s", out)
		}
		for _, port := range []int{8101, 8102, 8103} {
			if got := maxPredictions(port); got != "7" {
				t.Errorf("port %d runs MAX_PREDICTIONS=%s after the second apply", port, got)
			}
		}
		if r := m.km("status"); r.code != 0 || !strings.Contains(r.stdout, "in step") {
			t.Errorf("status after the second apply: %s", r)
		}
		if out := m.mustKM("apply", "-f", "/root/fleet.yaml"); !strings.Contains(out, "nothing to do") {
			t.Errorf("third apply:\n%s", out)
		}
	})

	run("a registry ahead of what runs is drift, and apply restarts it", func(t *testing.T) {
		// What an apply killed after its registry update leaves, made by
		// hand: the entry says 7, the process runs 100.
		writeFleet("instances:\n  - {id: r1, port: 8107}\n")
		m.mustKM("apply", "-f", "/root/fleet.yaml")
		m.must("sed", "-i", "s/^max_predictions = 100$/max_predictions = 7/", "/var/lib/kato/instances.toml")
		if reg := m.readFile("/var/lib/kato/instances.toml"); !strings.Contains(reg, "max_predictions = 7") {
			t.Fatalf("registry:\n%s", reg)
		}
		writeFleet("instances:\n  - {id: r1, port: 8107, max_predictions: 7}\n")
		if r := m.km("status"); r.code != 1 || strings.Contains(r.stdout, "in step") {
			t.Errorf("status with the registry ahead: %s", r)
		}
		if out := m.mustKM("apply", "-f", "/root/fleet.yaml"); strings.Contains(out, "nothing to do") || maxPredictions(8107) != "7" {
			t.Errorf("apply with the registry ahead:\n%s", out)
		}
	})

	run("SIGHUP stops apply where SIGTERM does", func(t *testing.T) {
		writeFleet("instances:\n  - {id: h1, port: 8105}\n")
		m.mustKM("apply", "-f", "/root/fleet.yaml")
		writeFleet("instances:\n  - {id: h1, port: 8105, max_predictions: 9}\n")
		pausedApply("km-apply-hup")
		m.must("systemctl", "kill", "-s", "SIGHUP", "km-apply-hup.service")
		m.waitFor("the hung-up apply to end", 10*time.Second, func() bool { return !isActive(m.activeState("km-apply-hup.service")) })
		// It ended by itself, with a message, not killed by the signal.
		if res := strings.TrimSpace(m.must("systemctl", "show", "-P", "Result", "km-apply-hup.service")); res != "exit-code" {
			t.Errorf("the apply ended with result %s, want exit-code", res)
		}
		if logs := m.exec("journalctl", "-u", "km-apply-hup.service", "--no-pager", "-o", "cat").stdout; !strings.Contains(logs, "interrupted after the registry was written") {
			t.Errorf("journal of the hung-up apply:\n%s", logs)
		}
		if s := m.activeState("kato@h1.service"); s != "active" {
			t.Errorf("h1 is %s", s)
		}
		if out := m.mustKM("apply", "-f", "/root/fleet.yaml"); !strings.Contains(out, "^ h1 restarted") || maxPredictions(8105) != "9" {
			t.Errorf("apply after the hang-up:\n%s", out)
		}
	})

	run("start leaves a running unit that lost its entry alone", func(t *testing.T) {
		m.mustKM("start", "--id", "lost", "--port", "8111")
		// The multi-instance guide's troubleshooting step.
		m.must("rm", "/var/lib/kato/instances.toml")
		began := time.Now()
		r := m.km("start", "--id", "lost")
		if r.code == 0 || !strings.Contains(r.stderr, "kato-manager stop lost") {
			t.Errorf("start of the lost instance: %s", r)
		}
		if took := time.Since(began); took > 10*time.Second {
			t.Errorf("the refusal took %s", took)
		}
		if s := m.activeState("kato@lost.service"); s != "active" {
			t.Fatalf("the running instance is %s", s)
		}
		if _, err := m.get("http://127.0.0.1:8111/health"); err != nil {
			t.Errorf("the running instance stopped answering: %v", err)
		}
	})

	run("start checks that the unit holds its port", func(t *testing.T) {
		m.mustKM("start", "--id", "held", "--port", "8121")
		m.must("systemctl", "stop", "kato@held.service")
		// Another process binds the port first and answers /health.
		m.must("systemd-run", "--unit=squatter", "-p", "StateDirectory=squatter", "--setenv=PORT=8121", "--setenv=PROCESSOR_ID=squatter", "--", fakeProcessor)
		t.Cleanup(func() { m.exec("systemctl", "kill", "-s", "SIGKILL", "squatter.service") })
		m.waitFor("the squatter to answer", 20*time.Second, func() bool { _, err := m.get("http://127.0.0.1:8121/health"); return err == nil })
		r := m.km("start", "--id", "held")
		if r.code == 0 || !strings.Contains(r.stderr, "API port 8121 is held by pid") {
			t.Errorf("start with the port held: %s", r)
		}
		if s := m.activeState("kato@held.service"); isActive(s) {
			t.Errorf("held is %s after the refused start", s)
		}
	})

	run("a generation-A processor hanging on SIGTERM stops clean", func(t *testing.T) {
		m.mustKM("start", "--processor", "ahang", "--id", "hang", "--port", "8131")
		began := time.Now()
		m.must("systemctl", "stop", "kato@hang.service")
		if took := time.Since(began); took > 8*time.Second {
			t.Errorf("the stop took %s, want about stop_timeout (2s)", took)
		}
		state := strings.TrimSpace(m.must("systemctl", "show", "-P", "ActiveState", "kato@hang.service"))
		result := strings.TrimSpace(m.must("systemctl", "show", "-P", "Result", "kato@hang.service"))
		if state != "inactive" || result != "success" {
			t.Errorf("after the stop: %s, result %s; want inactive, success", state, result)
		}
	})
}

func isActive(state string) bool {
	return state == "active" || state == "activating" || state == "deactivating" || state == "reloading"
}
