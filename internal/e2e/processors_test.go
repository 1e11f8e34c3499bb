package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// TestProcessors drives both generations of the KATO processor (the test
// double, following the processor contract) on one real systemd: several
// generation-A instances, each in its own network namespace and answered
// by its own engine; the refusal of a second one on the host network;
// named processors side by side; readiness; stop timeouts; learned state
// across restarts. Each subtest leaves no instance behind.
func TestProcessors(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.ConfigWithMongo + `
[processors.v2]
command = ["/opt/kato-test/fakeprocessor"]
generation = "b"
stop_timeout = 2.0

[processors.deaf]
command = ["/opt/kato-test/fakeprocessor"]
generation = "b"
ready = "GET /nothing-here"
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	leftovers := func(t *testing.T) {
		if left := m.exec("systemctl", "list-units", "--all", "--plain", "--no-legend", "kato-proxy@*", "kato-link@*").stdout; strings.TrimSpace(left) != "" {
			t.Fatalf("network units left after stop --all:\n%s", left)
		}
	}
	run := func(name string, f func(t *testing.T)) { m.subtest(t, name, f, leftovers) }

	run("the guide's three generation-A instances, each with its own engine", func(t *testing.T) {
		m.mustKM("start", "--processor", "a", "--id", "processor-1", "--name", "Main Processor", "--port", "8001")
		m.mustKM("start", "--tag", "a", "--id", "processor-2", "--name", "Secondary", "-p", "8002", "--max-predictions", "200", "--no-sort")
		m.mustKM("start", "-t", "a", "--id", "processor-3", "--name", "Auto Learner", "--port", "8003", "--max-seq-length", "10",
			"--smoothness", "5", "--auto-act-method", "threshold", "--auto-act-threshold", "0.5", "--update-frequencies",
			"--search-depth", "4", "--no-predictions", "-l", "DEBUG")
		want := map[string]map[string]any{
			"processor-1": {"name": "Main Processor"},
			"processor-2": {"name": "Secondary", "max_predictions": 200.0, "sort": false},
			"processor-3": {"name": "Auto Learner", "max_pattern_length": 10.0, "smoothness": 5.0, "auto_act_method": "threshold",
				"auto_act_threshold": 0.5, "always_update_frequencies": true, "search_depth": 4.0, "process_predictions": false},
		}
		for i := 1; i <= 3; i++ {
			id := fmt.Sprintf("processor-%d", i)
			base := fmt.Sprintf("http://127.0.0.1:%d/%s", 8000+i, id)
			// The ping answers for any id: the engine header says whose
			// engine it really was.
			if engine := m.header(base+"/ping", "X-Fake-Engine"); engine != id {
				t.Errorf("%s's ping was answered by the engine of %q", id, engine)
			}
			body, err := m.get(base + "/status")
			if err != nil {
				t.Fatal(err)
			}
			var status struct {
				Engine   string         `json:"engine"`
				Manifest map[string]any `json:"manifest"`
			}
			if err := json.Unmarshal([]byte(body), &status); err != nil {
				t.Fatalf("%s status %q: %v", id, body, err)
			}
			if len(status.Manifest) != 15 || status.Manifest["id"] != id || status.Engine != id {
				t.Errorf("%s: engine %s with MANIFEST of %d keys: %v", id, status.Engine, len(status.Manifest), status.Manifest)
			}
			defaults := map[string]any{"indexer_type": "VI", "max_pattern_length": 0.0, "persistence": 5.0, "smoothness": 3.0,
				"auto_act_method": "none", "auto_act_threshold": 0.8, "always_update_frequencies": false, "max_predictions": 100.0,
				"recall_threshold": 0.1, "quiescence": 3.0, "search_depth": 10.0, "sort": true, "process_predictions": true}
			for k, v := range want[id] {
				defaults[k] = v
			}
			for k, v := range defaults {
				if status.Manifest[k] != v {
					t.Errorf("%s MANIFEST %s = %v, want %v", id, k, status.Manifest[k], v)
				}
			}
			if s := strings.TrimSpace(m.must("systemctl", "show", "-P", "PrivateNetwork", "kato@"+id+".service")); s != "yes" {
				t.Errorf("%s PrivateNetwork=%s", id, s)
			}
		}
		// Each learns into its own store.
		m.post("http://127.0.0.1:8002/processor-2/learn", "{}")
		m.post("http://127.0.0.1:8002/processor-2/learn", "{}")
		m.post("http://127.0.0.1:8003/processor-3/learn", "{}")
		for port, want := range map[int]string{8001: `"learned":0`, 8002: `"learned":2`, 8003: `"learned":1`} {
			if body, _ := m.get(fmt.Sprintf("http://127.0.0.1:%d/processor-%d/learned", port, port-8000)); !strings.Contains(body, want) {
				t.Errorf("port %d learned %q, want %s", port, body, want)
			}
		}
		// Inside its namespace the processor has the container-era ports
		// and reaches MongoDB at 127.0.0.1:27017, through a socket bound
		// there.
		env := m.envOf("http://127.0.0.1:8002/env")
		for k, want := range map[string]string{"REST_PORT": "8000", "ZMQ_PORT": "5555", "MONGO_BASE_URL": "mongodb://127.0.0.1:27017",
			"HOSTNAME": "kato-processor-2", "LOG_LEVEL": "INFO", "SOURCES": "[]", "KATO_ZMQ_IMPLEMENTATION": "improved"} {
			if env[k] != want {
				t.Errorf("processor-2 got %s=%q, want %q", k, env[k], want)
			}
		}
		if env3 := m.envOf("http://127.0.0.1:8003/env"); env3["LOG_LEVEL"] != "DEBUG" || env3["MAX_PREDICTIONS"] != "" {
			t.Errorf("processor-3 LOG_LEVEL=%q MAX_PREDICTIONS=%q", env3["LOG_LEVEL"], env3["MAX_PREDICTIONS"])
		}
		if s := m.activeState("kato-link@processor-2.mongo.socket"); s != "active" {
			t.Errorf("MongoDB socket in processor-2's namespace is %s", s)
		}
		// The forwarders that carried those requests run as started
		// services, not stuck activating until systemd's start timeout
		// kills them.
		for _, u := range []string{"kato-proxy@processor-2.api.service", "kato-link@processor-2.mongo.service"} {
			if s := m.activeState(u); s != "active" {
				t.Errorf("%s is %s, want active", u, s)
			}
		}
		if !strings.Contains(m.exec("journalctl", "-u", testbed.MongoUnit, "--no-pager").stdout, "connection from 127.0.0.1") {
			t.Error("the MongoDB stand-in saw no connection")
		}
		// The ZMQ port is forwarded too.
		if s := m.activeState("kato-proxy@processor-2.zmq.socket"); s != "active" {
			t.Errorf("ZMQ socket of processor-2 is %s", s)
		}
		// list and status show the processor and the network.
		rows := m.listJSON()
		if r := rows["processor-2"]; r["processor"] != "a" || r["generation"] != "a" || r["network"] != "private" {
			t.Errorf("list row = %v", r)
		}
		if params, _ := rows["processor-2"]["parameters"].(map[string]any); params["sort"] != false || params["max_predictions"] != 200.0 {
			t.Errorf("list parameters = %v", rows["processor-2"]["parameters"])
		}
		st := m.km("status", "--json")
		if st.code != 0 {
			t.Errorf("status: %s", st)
		}
		var status struct {
			Instances []struct {
				ID           string `json:"id"`
				APIListening bool   `json:"api_listening"`
				Answering    bool   `json:"answering"`
			} `json:"instances"`
		}
		json.Unmarshal([]byte(st.stdout), &status)
		for _, i := range status.Instances {
			if !i.APIListening || !i.Answering {
				t.Errorf("status of %s: listening %v, answering %v", i.ID, i.APIListening, i.Answering)
			}
		}
		if table := m.mustKM("status"); !strings.Contains(table, "ANSWERING") || !strings.Contains(table, "a (a)") {
			t.Errorf("status:\n%s", table)
		}
		// stop removes the instance's sockets and proxies with it.
		m.mustKM("stop", "processor-2")
		if left := m.exec("systemctl", "list-units", "--all", "--plain", "--no-legend", "kato-proxy@processor-2.*", "kato-link@processor-2.*").stdout; strings.TrimSpace(left) != "" {
			t.Errorf("units left after stop:\n%s", left)
		}
		for _, d := range []string{"kato-proxy@processor-2.api.socket.d", "kato-proxy@processor-2.api.service.d", "kato-link@processor-2.mongo.socket.d"} {
			if m.exists("/etc/systemd/system/" + d) {
				t.Errorf("%s left after stop", d)
			}
		}
		if _, err := m.get("http://127.0.0.1:8002/processor-2/ping"); err == nil {
			t.Error("port 8002 still answers after stop")
		}
		if engine := m.header("http://127.0.0.1:8001/processor-1/ping", "X-Fake-Engine"); engine != "processor-1" {
			t.Errorf("after stopping processor-2, processor-1 is answered by %q", engine)
		}
	})

	run("a second generation-A instance on the host network is refused", func(t *testing.T) {
		m.mustKM("start", "--processor", "a", "--network", "host", "--id", "h1", "--port", "8011")
		if engine := m.header("http://127.0.0.1:8011/h1/ping", "X-Fake-Engine"); engine != "h1" {
			t.Fatalf("h1 answered by %q", engine)
		}
		r := m.km("start", "--processor", "a", "--network", "host", "--id", "h2", "--port", "8012")
		if r.code != 1 || !strings.Contains(r.stderr, "instance h1 already runs a generation-A processor on the host network") ||
			!strings.Contains(r.stderr, "--network private") {
			t.Fatalf("second generation-A instance on the host network: %s", r)
		}
		if rows := m.listJSON(); rows["h2"] != nil || m.activeState("kato@h2.service") != "inactive" {
			t.Fatalf("the refused instance was registered or started: %v", rows["h2"])
		}
		// On a network of its own it works beside h1, with its own engine.
		m.mustKM("start", "--processor", "a", "--network", "private", "--id", "h2", "--port", "8012")
		if engine := m.header("http://127.0.0.1:8012/h2/ping", "X-Fake-Engine"); engine != "h2" {
			t.Fatalf("h2 answered by %q", engine)
		}
	})

	run("readiness says what it saw", func(t *testing.T) {
		r := m.km("start", "--processor", "deaf", "--id", "deaf", "--timeout", "3s")
		if r.code != 1 || !strings.Contains(r.stderr, "listens on port") || !strings.Contains(r.stderr, "GET /nothing-here did not answer 200 within 3s (last: HTTP 404)") {
			t.Errorf("a processor that does not answer its health request: %s", r)
		}
		// Without MongoDB a generation-A processor exits.
		// The instance wants MongoDB's unit: take the unit away.
		m.must("systemctl", "stop", testbed.MongoUnit)
		m.must("mv", "/etc/systemd/system/"+testbed.MongoUnit, "/root/")
		m.must("systemctl", "daemon-reload")
		defer m.must("systemctl", "daemon-reload")
		defer m.must("mv", "/root/"+testbed.MongoUnit, "/etc/systemd/system/")
		r = m.km("start", "--processor", "a", "--id", "nomongo", "--processor-command", fakeProcessor+" --generation a --mongo-timeout 1s")
		if r.code != 1 || !strings.Contains(r.stderr, "kato@nomongo.service exited") || !strings.Contains(r.stderr, "before answering GET /nomongo/ping") ||
			!strings.Contains(r.stderr, "did not accept a connection") {
			t.Errorf("generation A without MongoDB: %s", r)
		}
		if rows := m.listJSON(); len(rows) != 0 {
			t.Errorf("failed starts were not rolled back: %v", rows)
		}
	})

	run("two named processors side by side, generation B stops within stop_timeout", func(t *testing.T) {
		m.mustKM("start", "--processor", "a", "--id", "old", "--port", "8021")
		m.mustKM("start", "--processor", "v2", "--id", "new", "--port", "8022")
		rows := m.listJSON()
		if rows["old"]["processor"] != "a" || rows["old"]["generation"] != "a" || rows["new"]["processor"] != "v2" || rows["new"]["generation"] != "b" || rows["new"]["network"] != "host" {
			t.Fatalf("rows = %v", rows)
		}
		if table := m.mustKM("list"); !strings.Contains(table, "v2 (b)") || !strings.Contains(table, "a (a)") {
			t.Errorf("list:\n%s", table)
		}
		if _, err := m.get("http://127.0.0.1:8022/health"); err != nil {
			t.Fatal(err)
		}
		if engine := m.header("http://127.0.0.1:8021/old/ping", "X-Fake-Engine"); engine != "old" {
			t.Errorf("old answered by %q", engine)
		}
		// The stop command kills it after 2s; the unit's own timeout is
		// only a backstop.
		if got := strings.TrimSpace(m.must("systemctl", "show", "-P", "TimeoutStopUSec", "kato@new.service")); got != "7s" {
			t.Errorf("TimeoutStopUSec = %s, want 7s", got)
		}
		if got := m.must("systemctl", "show", "-P", "ExecStop", "kato@new.service"); !strings.Contains(got, "timeout 2 tail --pid=") {
			t.Errorf("ExecStop = %s", got)
		}
		// Generation B ignores SIGTERM: the stop ends with the kill at
		// stop_timeout, not at the unit's 30 seconds.
		began := time.Now()
		m.mustKM("stop", "new")
		if took := time.Since(began); took < 1500*time.Millisecond || took > 8*time.Second {
			t.Errorf("stop of a generation-B instance took %s, want about its stop_timeout of 2s", took)
		}
		if s := m.activeState("kato@new.service"); s != "inactive" {
			t.Errorf("after stop: %s", s)
		}
		// A stop by systemctl leaves the unit inactive, not failed.
		m.mustKM("start", "--processor", "v2", "--id", "new", "--port", "8022")
		m.must("systemctl", "stop", "kato@new.service")
		if s := m.activeState("kato@new.service"); s != "inactive" {
			t.Errorf("after systemctl stop: %s (result %s)", s, m.exec("systemctl", "show", "-P", "Result", "kato@new.service").stdout)
		}
	})

	run("generation B on a private network", func(t *testing.T) {
		m.mustKM("start", "--network", "private", "--id", "bp", "--port", "8041")
		if body, err := m.get("http://127.0.0.1:8041/health"); err != nil || !strings.Contains(body, `"processor_id":"bp"`) {
			t.Fatalf("health through the host port: %q %v", body, err)
		}
		env := m.envOf("http://127.0.0.1:8041/env")
		if env["PORT"] != "8000" || env["MONGO_BASE_URL"] != "mongodb://127.0.0.1:27017" || env["ZMQ_PORT"] != "" {
			t.Errorf("generation B inside its namespace got %v", env)
		}
		// Generation B has no ZMQ port to forward.
		if m.exists("/etc/systemd/system/kato-proxy@bp.zmq.socket.d") {
			t.Error("a ZMQ forwarder for generation B")
		}
		if r := m.km("status"); r.code != 0 || !strings.Contains(r.stdout, "private") {
			t.Errorf("status: %s", r)
		}
		// The forwarder that answered and the processor each run as a user
		// systemd allocated, neither kato.
		for unit, want := range map[string]string{"kato-proxy@bp.api.service": "kato_proxy", "kato@bp.service": "kato-bp"} {
			if o := m.owner(unit); o != want {
				t.Errorf("%s runs as %s, want %s", unit, o, want)
			}
		}
	})

	run("restart keeps learned state in both generations", func(t *testing.T) {
		m.mustKM("start", "--processor", "a", "--id", "la", "--port", "8031")
		m.mustKM("start", "--id", "lb", "--port", "8032")
		m.post("http://127.0.0.1:8031/la/learn", "{}")
		m.post("http://127.0.0.1:8031/la/learn", "{}")
		m.post("http://127.0.0.1:8032/learn", "{}")
		m.mustKM("restart", "la")
		m.mustKM("restart", "lb")
		if body, _ := m.get("http://127.0.0.1:8031/la/learned"); !strings.Contains(body, `"learned":2`) {
			t.Errorf("generation A after restart: %q", body)
		}
		if body, _ := m.get("http://127.0.0.1:8032/learned"); !strings.Contains(body, `"learned":1`) {
			t.Errorf("generation B after restart: %q", body)
		}
		if engine := m.header("http://127.0.0.1:8031/la/ping", "X-Fake-Engine"); engine != "la" {
			t.Errorf("after restart la is answered by %q", engine)
		}
	})
}

// header returns one response header of a GET inside the machine's network.
func (m *machine) header(url, name string) string {
	m.t.Helper()
	r := m.exec("curl", "-sS", "--max-time", "20", "-f", "-o", "/dev/null", "-D", "-", url)
	if r.code != 0 {
		m.t.Errorf("GET %s: %s", url, r)
		return ""
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// envOf returns the variables a processor reports at url (GET /env).
func (m *machine) envOf(url string) map[string]string {
	m.t.Helper()
	body, err := m.get(url)
	if err != nil {
		m.t.Fatal(err)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		m.t.Fatalf("GET %s: %q: %v", url, body, err)
	}
	return env
}
