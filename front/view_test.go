package front

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestReadRendered reads back what Render wrote: the port, the address and
// the balance of every kind, and the read-only socket beside the admin one.
func TestReadRendered(t *testing.T) {
	members := []Member{{ID: "a", Address: "127.0.0.1", Port: 9001}, {ID: "b", Address: "127.0.0.1", Port: 9002}}
	for _, tc := range []struct {
		name string
		g    Group
		want Listening
	}{
		{"default balance", Group{Name: "g", Port: 8080, Members: members, Ready: ReadyCheck{Path: "/health"}}, Listening{Port: 8080, Balance: LeastConn}},
		{"roundrobin on an address", Group{Name: "g", Address: "10.0.0.5", Port: 80, Balance: RoundRobin, Members: members, Ready: ReadyCheck{Path: "/health"}}, Listening{Address: "10.0.0.5", Port: 80, Balance: RoundRobin}},
		{"path on ipv6", Group{Name: "g", Address: "::1", Port: 8443, Balance: Path, Members: members, Ready: ReadyCheck{Path: "/{id}/health"}}, Listening{Address: "::1", Port: 8443, Balance: Path}},
		{"hash", Group{Name: "g", Port: 81, Balance: "hash:X-Session", Members: members, Ready: ReadyCheck{Path: "/health"}, MetricsPort: 9100}, Listening{Port: 81, Balance: "hash:X-Session"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Render(tc.g, SocketPath(tc.g.Name))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := ReadRendered(cfg)
			if !ok || got != tc.want {
				t.Errorf("ReadRendered = %+v, %v; want %+v", got, ok, tc.want)
			}
			if want := "stats socket '/run/kato-front/g/stats.sock' mode 666 level user\n"; !strings.Contains(string(cfg), want) {
				t.Errorf("no read-only socket %q in\n%s", want, cfg)
			}
		})
	}
	if _, ok := ReadRendered([]byte("global\n    daemon\n")); ok {
		t.Error("a configuration with no front's bind was read as one")
	}
}

// TestStatsSocketReadOnly: the read-only socket beside the admin socket
// answers `show stat` with the members' states and refuses to change one,
// before and after a reload.
func TestStatsSocketReadOnly(t *testing.T) {
	needHAProxy(t)
	a, b := startProcessor(t, "a"), startProcessor(t, "b")
	g := group(RoundRobin, a.member(0), b.member(0))
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))
	ro := NewClient(StatsSocketFor(h.socket))
	waitStates(t, ro, allUp(g))
	err := ro.SetState(context.Background(), "members", "a", Drain)
	if err == nil {
		t.Fatal("the read-only socket drained a member")
	}
	if s, _ := h.client().Stats(context.Background()); func() State { m, _ := s.Member("a"); return m.State }() != Up {
		t.Errorf("a after a refused drain: %+v", s.Members)
	}
	if fi, err := os.Stat(StatsSocketFor(h.socket)); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("read-only socket mode: %v %v, want 0666", fi, err)
	}
	// A reload (a member's weight changed) hands the socket to the new
	// process: it still answers there. HAProxy 2.6 run by hand as here
	// (-W -db, SIGUSR2 at once) was seen to miss a reload signalled within
	// milliseconds of a connection to this socket; the unit's reload (which
	// checks the file first) right after one is tested on real systemd in
	// internal/e2e (TestFrontsSeenEverywhere).
	time.Sleep(200 * time.Millisecond)
	g.Members[1].Weight = 3
	h.reload(g)
	waitStates(t, ro, allUp(g))
	if s, err := ro.Stats(context.Background()); err != nil {
		t.Fatal(err)
	} else if m, _ := s.Member("b"); m.Weight != 3 {
		t.Errorf("b's weight through the read-only socket after the reload: %d, want 3", m.Weight)
	}
	if fi, err := os.Stat(StatsSocketFor(h.socket)); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("read-only socket mode after a reload: %v %v, want 0666", fi, err)
	}
}
