package front

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const savedStates = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 members 1 a 127.0.0.1 2 0 1 1 20 15 3 4 6 0 0 0 - 9001 - 0 0 - - 0
3 members 2 b 127.0.0.1 2 8 5 1 20 15 3 4 6 0 0 0 - 9002 - 0 0 - - 0
3 members 3 gone 127.0.0.1 2 1 1 1 20 15 3 4 6 0 0 0 - 9003 - 0 0 - - 0
3 members 4 moved 127.0.0.1 2 8 1 1 20 15 3 4 6 0 0 0 - 9004 - 0 0 - - 0
3 members 5 rehosted 127.0.0.1 2 8 1 1 20 15 3 4 6 0 0 0 - 9005 - 0 0 - - 0
3 members 6 named 10.0.0.7 2 8 1 1 20 15 3 4 6 0 0 0 - 9006 - 0 0 - - 0
`

// TestKeepStates: the saved states keep the members of the new
// configuration at the same address and port, and leave out those gone or
// moved (HAProxy would put them back at their old port).
func TestKeepStates(t *testing.T) {
	g := Group{Name: "g", Members: []Member{
		{ID: "a", Address: "127.0.0.1", Port: 9001},
		{ID: "b", Address: "127.0.0.1", Port: 9002, Weight: 3},
		{ID: "moved", Address: "127.0.0.1", Port: 9104},
		{ID: "rehosted", Address: "127.0.0.2", Port: 9005},
		{ID: "named", Address: "db2.example", Port: 9006},
		{ID: "new", Address: "127.0.0.1", Port: 9007},
	}}
	got, err := KeepStates(savedStates, g)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(got)), "\n")[2:] {
		names = append(names, strings.Fields(line)[3])
	}
	if strings.Join(names, " ") != "a b named" || !strings.HasPrefix(string(got), "1\n# be_id ") {
		t.Errorf("KeepStates kept %v, want a b named:\n%s", names, got)
	}
	// With balance path each member has its backend: the saved line of
	// the one backend matches none.
	g.Balance = Path
	if got, _ := KeepStates(savedStates, g); strings.Count(string(got), "\n") != 2 {
		t.Errorf("KeepStates with per-member backends kept:\n%s", got)
	}
	for name, bad := range map[string]string{
		"empty":      "",
		"version":    "2\n",
		"no header":  "1\n3 members 1 a 127.0.0.1 2 0 1 1\n",
		"no columns": "1\n# be_id be_name\n",
	} {
		if _, err := KeepStates(bad, g); err == nil {
			t.Errorf("KeepStates accepted %s: %q", name, bad)
		}
	}
}

// TestFrontKeepsStatesAcrossReload runs HAProxy: a member drained and
// given a weight through the admin socket keeps both across a reload that
// adds a member; a member moved to another port is reached there, from its
// configuration; after the reload the saved file is emptied again.
func TestFrontKeepsStatesAcrossReload(t *testing.T) {
	needHAProxy(t)
	a, b, c := startProcessor(t, "a"), startProcessor(t, "b"), startProcessor(t, "c")
	g := group(LeastConn, a.member(0), b.member(0))
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := h.client()
	if err := admin.SetState(ctx, "members", "b", Drain); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"set weight members/b 5", "set weight members/a 9"} {
		if out, err := admin.Do(ctx, cmd); err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("%s: %v %s", cmd, err, out)
		}
	}
	// a moves: another process of id a, on a port of its own.
	a2 := startProcessor(t, "a")
	g.Members = []Member{a2.member(0), b.member(0), c.member(0)}
	h.write(g)
	statePath := StateFileFor(h.socket)
	reload := func(context.Context) error { return h.cmd.Process.Signal(syscall.SIGUSR2) }
	if err := ReloadKeepingState(ctx, admin, g, statePath, 30*time.Second, reload); err != nil {
		t.Fatal(err)
	}
	waitStates(t, admin, map[string]State{"a": Up, "b": Draining, "c": Up})
	s, err := admin.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mb, _ := s.Member("b"); mb.Weight != 5 {
		t.Errorf("b's weight after the reload: %d, want 5 as set before it", mb.Weight)
	}
	if ma, _ := s.Member("a"); ma.Weight != 1 {
		t.Errorf("a moved, weight after the reload: %d, want 1 from its configuration", ma.Weight)
	}
	states, err := admin.Do(ctx, "show servers state members")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(states, " a 127.0.0.1 ") || !strings.Contains(states, " "+strconv.Itoa(a2.port)+" ") {
		t.Errorf("a is not reached at its new port %d:\n%s", a2.port, states)
	}
	for range 10 {
		if got := engine(t, g.Port, "/status", nil); got == "b" {
			t.Fatal("a request reached b, drained before the reload")
		}
	}
	if data, err := os.ReadFile(statePath); err != nil || string(data) != "1\n" {
		t.Errorf("state file after the reload: %q (%v), want it emptied", data, err)
	}
	if fi, err := os.Stat(statePath); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("state file mode: %v (%v), want 0644", fi.Mode(), err)
	}
}
