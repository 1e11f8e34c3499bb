package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// Secrets of the stores in TestGenerationC: they must reach the processors
// and nothing else.
const (
	redisSecret      = "redis-pw-4f1c"
	clickhouseSecret = "clickhouse-pw-9a2e"
)

// TestGenerationC runs three generation-C replicas of one group (the
// processor double) on a real systemd, sharing one real Redis: a session
// made through one is served by each of the others; start waits until
// /health's body says healthy, not for its 200; the stores' passwords are
// in no unit property, no command line, and out of another instance's
// reach; the stop is bounded and clean.
func TestGenerationC(t *testing.T) {
	m := bootMachine(t)
	m.must("systemd-run", "--unit=redis-test", "--", "/usr/bin/redis-server", "--port", "6390", "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--requirepass", redisSecret)
	m.waitFor("redis-server answering", 20*time.Second, func() bool {
		return strings.TrimSpace(m.exec("redis-cli", "-p", "6390", "--no-auth-warning", "-a", redisSecret, "ping").stdout) == "PONG"
	})
	conf := testbed.Config + `
[processors.c]
command = ["/opt/kato-test/fakeprocessor", "--generation", "c", "--unhealthy-for", "3s"]
generation = "c"
workers = 2
ready_timeout = 20.0

[stores]
redis_url = "redis://:` + redisSecret + `@127.0.0.1:6390/0"
clickhouse_url = "http://kato:` + clickhouseSecret + `@127.0.0.1:8123/kato"
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ids := []string{"edge-1", "edge-2", "edge-3"}
	for i, id := range ids {
		port := strconv.Itoa(8101 + i)
		began := time.Now()
		m.mustKM("start", "--processor", "c", "--id", id, "--port", port, "--group", "edge")
		took := time.Since(began)
		// The double answers /health with 200 at once, saying
		// "unhealthy" for its first 3 s: start must wait for "healthy".
		if took < 3*time.Second {
			t.Errorf("start %s returned after %s, before /health said healthy (3s)", id, took)
		}
		if body, err := m.get("http://127.0.0.1:" + port + "/health"); err != nil || !strings.Contains(body, `"status":"healthy"`) {
			t.Errorf("%s health right after start = %q, %v", id, body, err)
		}
	}
	for i, id := range ids {
		env := m.envOf("http://127.0.0.1:" + strconv.Itoa(8101+i) + "/env")
		for k, want := range map[string]string{"SERVICE_NAME": "edge", "KATO_WORKERS": "2", "PORT": strconv.Itoa(8101 + i),
			"REDIS_ENABLED": "true", "CLICKHOUSE_PASSWORD": clickhouseSecret, "KATO_ARCHITECTURE_MODE": "hybrid", "MONGO_BASE_URL": ""} {
			if env[k] != want {
				t.Errorf("%s got %s=%q, want %q", id, k, env[k], want)
			}
		}
	}

	// A session made through edge-1 is served by every replica, each of
	// its workers too.
	var created struct {
		SessionID string `json:"session_id"`
	}
	out := m.must("curl", "-sS", "-f", "--max-time", "5", "-H", "Content-Type: application/json", "-d", `{"node_id": "guide"}`, "http://127.0.0.1:8101/sessions")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.SessionID == "" {
		t.Fatalf("POST /sessions = %q, %v", out, err)
	}
	m.post("http://127.0.0.1:8101/sessions/"+created.SessionID+"/observe", `{"strings": ["hello"], "vectors": [], "emotives": {}}`)
	for i, id := range ids {
		for range 3 {
			url := "http://127.0.0.1:" + strconv.Itoa(8101+i) + "/sessions/" + created.SessionID + "/stm"
			if engine := m.header(url, "X-Fake-Engine"); engine != id {
				t.Errorf("GET %s answered by %q, want %s", url, engine, id)
			}
			if body, err := m.get(url); err != nil || !strings.Contains(body, `"stm":[["hello"]]`) {
				t.Errorf("%s: session of edge-1: %q, %v", id, body, err)
			}
		}
	}

	// The passwords: in the processor's environment (control), nowhere
	// systemctl show prints, on no command line, and another instance
	// cannot read them.
	pid := m.mainPID("kato@edge-1.service")
	if environ := m.must("cat", "/proc/"+pid+"/environ"); !strings.Contains(environ, redisSecret) || !strings.Contains(environ, clickhouseSecret) {
		t.Fatal("edge-1's environment lacks the store passwords: the control of this test is broken")
	}
	for _, secret := range []string{redisSecret, clickhouseSecret} {
		if show := m.must("systemctl", "show", "kato@edge-1.service"); strings.Contains(show, secret) {
			t.Errorf("systemctl show kato@edge-1.service shows a store password")
		}
		if args := m.must("ps", "-eo", "args"); strings.Contains(args, secret) {
			t.Errorf("a command line holds a store password:\n%s", args)
		}
	}
	asOther := func(args ...string) result {
		return m.exec(append([]string{"systemd-run", "--wait", "--pipe", "--quiet", "-p", "DynamicUser=yes", "-p", "User=kato-edge-2", "--"}, args...)...)
	}
	if r := asOther("id", "-un"); strings.TrimSpace(r.stdout) != "kato-edge-2" {
		t.Fatalf("the probe as edge-2's user: %s", r)
	}
	for _, path := range []string{"/etc/kato/instances/edge-1.env", "/proc/" + pid + "/environ", "/etc/kato/kato.toml"} {
		if r := asOther("cat", path); r.code == 0 || strings.Contains(r.stdout, redisSecret) {
			t.Errorf("edge-2's user read %s: %s", path, r)
		}
	}

	// The stop is bounded (stop_timeout 35 s, then SIGKILL) and ends
	// clean.
	if dropIn := m.readFile("/etc/systemd/system/kato@edge-1.service.d/kato-manager.conf"); !strings.Contains(dropIn, "timeout 35 tail") ||
		!strings.Contains(dropIn, `"--port" "8101" "--workers" "2"`) {
		t.Errorf("edge-1's drop-in:\n%s", dropIn)
	}
	m.mustKM("stop", "--id", "edge-1")
	if s := m.activeState("kato@edge-1.service"); s != "inactive" {
		t.Errorf("edge-1 after stop is %s, want inactive", s)
	}
	// The others still serve the session.
	if body, err := m.get("http://127.0.0.1:8103/sessions/" + created.SessionID); err != nil || !strings.Contains(body, "guide") {
		t.Errorf("edge-3 after edge-1 stopped: %q, %v", body, err)
	}
	m.mustKM("stop", "--all")
}
