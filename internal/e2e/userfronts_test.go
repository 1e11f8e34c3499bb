package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
	"github.com/kato-manager/kato-manager/units"
)

// TestUserFronts runs a group with a front on an unprivileged user's
// systemd user manager (kato-manager --user): kato-front@web runs there as
// the user, with no capability, its sockets in the user's runtime
// directory; requests through it reach the three members; a rolling
// restart through its admin socket fails no request under load; list
// shows the front; a front on a port below net.ipv4.ip_unprivileged_port_start
// is refused before anything starts; stopping the members stops the front.
func TestUserFronts(t *testing.T) {
	m := bootMachine(t)
	u := newUserSession(t, m)
	conf := testbed.Config + `
[groups.web]
front = 9000
balance = "roundrobin"

[groups.low]
front = 80
`
	u.mustRun("mkdir", "-p", u.home+"/.config/kato")
	u.mustRun("sh", "-c", "cat > \"$HOME/.config/kato/kato.toml\" <<'EOF'\n"+conf+"\nEOF\n")
	if out := u.km("install-units"); !strings.Contains(out, "wrote "+u.home+"/.local/share/systemd/user/"+units.FrontTemplate+"\n") {
		t.Errorf("install-units --user did not write %s:\n%s", units.FrontTemplate, out)
	}
	front := units.FrontUnit("web")
	runtimeDir := "/run/user/" + u.uid + "/kato-front/web"

	u.km("scale", "--group", "web", "3")
	if s := u.userProp(front, "ActiveState"); s != "active" && s != "reloading" {
		t.Fatalf("%s in the user manager is %s", front, s)
	}
	if s := m.activeState(front); s == "active" {
		t.Errorf("%s is active in the system manager", front)
	}
	m.waitAnsweredBy(t, "http://127.0.0.1:9000/status", "web-1", "web-2", "web-3")
	if cfg := m.readFile(u.home + "/.config/kato/fronts/web.cfg"); !strings.Contains(cfg, "stats socket '"+runtimeDir+"/admin.sock'") {
		t.Errorf("the user's front configuration does not name its socket in %s:\n%s", runtimeDir, cfg)
	}
	// As the user, with nothing more: no capability, no new privileges;
	// the sockets and the saved states are the user's alone.
	pid := u.userProp(front, "MainPID")
	status := m.must("cat", "/proc/"+pid+"/status")
	if uid := strings.Fields(statusField(status, "Uid:")); len(uid) == 0 || uid[0] != u.uid {
		t.Errorf("haproxy runs as uid %v, want %s", uid, u.uid)
	}
	if eff, nnp := statusField(status, "CapEff:"), statusField(status, "NoNewPrivs:"); eff != "0000000000000000" || nnp != "1" {
		t.Errorf("haproxy CapEff %s NoNewPrivs %s, want none and 1", eff, nnp)
	}
	// The saved states are written by the front at start (0600) and by
	// kato-manager --user before a reload (0644, in the 0700 directory).
	if out := strings.TrimSpace(m.must("stat", "-c", "%a %u", runtimeDir, runtimeDir+"/admin.sock", runtimeDir+"/servers.state")); out != "700 "+u.uid+"\n600 "+u.uid+"\n644 "+u.uid && out != "700 "+u.uid+"\n600 "+u.uid+"\n600 "+u.uid {
		t.Errorf("the front's runtime directory, admin socket and saved states: %q", out)
	}

	// A rolling restart goes through the user's admin socket.
	l := m.startLoad(t, "http://127.0.0.1:9000/status")
	time.Sleep(time.Second)
	out := u.km("restart", "--group", "web")
	ok, failed := l.stop()
	t.Logf("restart --group under load in the user scope: %d requests, %d failed\n%s", ok+failed, failed, out)
	if failed != 0 || ok < minLoad {
		t.Errorf("rolling restart: %d of %d requests failed, want 0 of at least %d", failed, ok+failed, minLoad)
	}
	var fronts []map[string]any
	if err := json.Unmarshal([]byte(u.km("list", "--fronts", "--json")), &fronts); err != nil {
		t.Fatal(err)
	}
	if len(fronts) != 1 || fronts[0]["group"] != "web" || fronts[0]["answering"] != true || fronts[0]["port"] != 9000.0 {
		t.Errorf("list --fronts --json: %v", fronts)
	}

	// Port 80 needs a privilege a user's front does not have.
	r := u.run(katoManager, "--user", "start", "--id", "low-1", "--group", "low", "--port", "8201")
	if r.code == 0 || !strings.Contains(r.stderr, "groups.low.front") || !strings.Contains(r.stderr, "80") || !strings.Contains(r.stderr, "ip_unprivileged_port_start") {
		t.Errorf("a user's front on port 80: %s", r)
	}
	if strings.Contains(u.km("list"), "low-1") || m.exists(u.home+"/.config/kato/fronts/low.cfg") {
		t.Errorf("the refused start left low-1 or its front behind")
	}

	u.km("stop", "--all")
	if s := u.userProp(front, "ActiveState"); s != "inactive" {
		t.Errorf("%s after stop --all: %s", front, s)
	}
	if m.exists(u.home + "/.config/kato/fronts/web.cfg") {
		t.Error("the front's configuration is left after stop --all")
	}
}

// statusField is the value of a line of /proc/PID/status.
func statusField(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
