package front

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
	"github.com/kato-manager/kato-manager/units"
)

// TestFrontUnit runs kato-front@.service in a real systemd before processor
// doubles run as transient units: it starts, serves through its members,
// reloads with a new member while a load runs with no failed request, and
// runs confined (a user of its own, the one capability, the socket 0600).
func TestFrontUnit(t *testing.T) {
	needHAProxy(t)
	bin := fakeProcessor(t)
	m := sdharness.ForTest(t, sdharness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := m.Run(ctx, args[0], args[1:]...)
		if err != nil {
			t.Fatalf("%q: %v\n%s%s", args, err, stdout, stderr)
		}
		return stdout
	}
	if err := m.CopyFile(bin, "/opt/kato-test/fakeprocessor", 0o755); err != nil {
		t.Fatal(err)
	}
	var tmpl []byte
	for _, u := range units.Templates() {
		if u.Name == units.FrontTemplate {
			tmpl = u.Content
		}
	}
	if err := m.WriteFile("/etc/systemd/system/"+units.FrontTemplate, tmpl, 0o644); err != nil {
		t.Fatal(err)
	}
	run("systemctl", "daemon-reload")
	var members []Member
	for i, id := range []string{"a", "b", "c"} {
		port := 9001 + i
		run("systemd-run", "--unit", "fp-"+id, "-p", "StateDirectory=fp-"+id, "-E", "PROCESSOR_ID="+id, "-E", "PORT="+strconv.Itoa(port),
			"/opt/kato-test/fakeprocessor", "--generation", "b")
		members = append(members, Member{ID: id, Address: "127.0.0.1", Port: port})
	}
	g := Group{Name: "g", Port: 80, Balance: RoundRobin, CheckInterval: 100 * time.Millisecond,
		Ready: ReadyCheck{Path: "/health", Body: HealthyBody}, Members: members[:2]}
	write := func(g Group) {
		t.Helper()
		cfg, err := Render(g, SocketPath(g.Name))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.WriteFile(ConfigPath(g.Name), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(g)
	run("systemctl", "start", units.FrontUnit("g"))

	// engines answers n requests through the front and says which member
	// answered each, or FAIL.
	engines := func(n int) string {
		t.Helper()
		script := fmt.Sprintf(`for i in $(seq %d); do curl -s -o /dev/null -m 5 -f -w '%%header{x-fake-engine}\n' http://127.0.0.1:80/status || echo FAIL; done`, n)
		return run("sh", "-c", script)
	}
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		var out string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if out = engines(20); ok(out) {
				return
			}
		}
		t.Fatalf("%s: last answers %q", what, out)
	}
	waitFor("a and b answering through the front", func(out string) bool {
		return strings.Contains(out, "a\n") && strings.Contains(out, "b\n") && !strings.Contains(out, "FAIL")
	})

	// A load inside the machine through two reloads: the second adds c.
	load := m.Command(ctx, "sh", "-c", `for i in $(seq 600); do curl -s -o /dev/null -m 5 -f http://127.0.0.1:80/status || echo FAIL; done; echo DONE`)
	var loadOut strings.Builder
	load.Stdout = &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	run("systemctl", "reload", units.FrontUnit("g"))
	// b drained and given a weight through the admin socket, reached
	// from the host through the machine's root, as kato-manager does
	// before it reloads (front.ReloadKeepingState): the reload that adds
	// c keeps both.
	inMachine := func(path string) string { return m.Root() + path }
	admin := NewClient(inMachine(SocketPath("g")))
	if out := run("cat", StateFilePath("g")); out != "1\n" {
		t.Errorf("saved states at start: %q, want HAProxy's version line alone", out)
	}
	if err := admin.SetState(ctx, "members", "b", Drain); err != nil {
		t.Fatal(err)
	}
	if out, err := admin.Do(ctx, "set weight members/b 7"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("set weight: %v %s", err, out)
	}
	g.Members = members
	write(g)
	time.Sleep(500 * time.Millisecond)
	reload := func(ctx context.Context) error {
		_, stderr, err := m.Run(ctx, "systemctl", "reload", units.FrontUnit("g"))
		if err != nil {
			return fmt.Errorf("systemctl reload: %v: %s", err, stderr)
		}
		return nil
	}
	if err := ReloadKeepingState(ctx, admin, g, inMachine(StateFilePath("g")), 30*time.Second, reload); err != nil {
		t.Fatal(err)
	}
	if err := load.Wait(); err != nil {
		t.Fatalf("load: %v", err)
	}
	if out := loadOut.String(); strings.Contains(out, "FAIL") || !strings.Contains(out, "DONE") {
		t.Errorf("two reloads under load: %d failed requests of 600", strings.Count(out, "FAIL"))
	}
	waitFor("c answering after the reload, b still drained", func(out string) bool {
		return strings.Contains(out, "c\n") && strings.Contains(out, "a\n") && !strings.Contains(out, "b\n")
	})
	if s, err := admin.Stats(ctx); err != nil {
		t.Fatal(err)
	} else if mb, _ := s.Member("b"); mb.State != Draining || mb.Weight != 7 {
		t.Errorf("b after the reload: %s with weight %d, want draining with weight 7 as set before it", mb.Status, mb.Weight)
	}
	// Only the front's user and root write the saved states: the file is
	// root's, 0644, in the front's 0700 runtime directory.
	if out := strings.TrimSpace(run("stat", "-c", "%a %U", StateFilePath("g"), RuntimeDir+"/g")); out != "644 root\n700 kato_front" {
		t.Errorf("saved states and their directory: %q, want 644 root and 700 kato_front", out)
	}
	if state := strings.TrimSpace(run("systemctl", "show", "-P", "ActiveState", units.FrontUnit("g"))); state != "active" {
		t.Errorf("front after reloads: %s, want active", state)
	}

	// Confined: every HAProxy process runs as the unit's own user, with no
	// capability but binding a low port, and the admin socket is the
	// user's alone.
	cgroup := strings.TrimSpace(run("systemctl", "show", "-P", "ControlGroup", units.FrontUnit("g")))
	pids := strings.Fields(run("cat", "/sys/fs/cgroup"+cgroup+"/cgroup.procs"))
	if len(pids) < 2 {
		t.Fatalf("front processes: %v, want the master and a worker", pids)
	}
	for _, pid := range pids {
		status := run("cat", "/proc/"+pid+"/status")
		uid := field(status, "Uid:")
		if uid == "" || strings.HasPrefix(uid, "0\t") || strings.HasPrefix(uid, "0 ") {
			t.Errorf("haproxy %s runs as uid %q, want the unit's own user", pid, uid)
		}
		if bnd := field(status, "CapBnd:"); bnd != "0000000000000400" {
			t.Errorf("haproxy %s bounding set %s, want CAP_NET_BIND_SERVICE alone (0400)", pid, bnd)
		}
		if nnp := field(status, "NoNewPrivs:"); nnp != "1" {
			t.Errorf("haproxy %s NoNewPrivs %q, want 1", pid, nnp)
		}
	}
	if mode := strings.TrimSpace(run("stat", "-c", "%a %U", SocketPath("g"))); mode != "600 kato_front" {
		t.Errorf("admin socket: %s, want 600 kato_front", mode)
	}
	if out, _, err := m.Run(ctx, "runuser", "-u", "nobody", "--", "cat", ConfigPath("g")); err != nil || !strings.Contains(out, "server c ") {
		t.Errorf("the configuration is not readable as it should be (%v)", err)
	}
}

func field(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
