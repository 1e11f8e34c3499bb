package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/front"
)

// fakeRuntime is a front's runtime API in memory: Stats answers stats, or
// hangs until its context ends when hang is set.
type fakeRuntime struct {
	mu    sync.Mutex
	stats front.Stats
	hang  bool
	reads int
}

func (r *fakeRuntime) Stats(ctx context.Context) (front.Stats, error) {
	r.mu.Lock()
	r.reads++
	hang, s := r.hang, r.stats
	r.mu.Unlock()
	if hang {
		<-ctx.Done()
		return front.Stats{}, ctx.Err()
	}
	return s, nil
}

func (r *fakeRuntime) SetState(ctx context.Context, backend, server string, s front.AdminState) error {
	return nil
}

func (r *fakeRuntime) set(members ...front.MemberStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats = front.Stats{Requests: 120, Errors: 3, Members: members}
}

// withFronts gives e fronts for the groups of runtimes, each with a
// configuration rendered for port and balance and its unit active.
func withFronts(t *testing.T, e *testEnv, runtimes map[string]*fakeRuntime) {
	t.Helper()
	dir := t.TempDir()
	e.m.FrontDir = dir
	e.m.FrontRuntime = func(group string) front.Runtime { return runtimes[group] }
	port := 8100
	for group := range runtimes {
		port++
		g := front.Group{Name: group, Port: port, Balance: front.RoundRobin, Ready: front.ReadyCheck{Path: "/health"},
			Members: []front.Member{{ID: "a", Address: "127.0.0.1", Port: 8001}, {ID: "b", Address: "127.0.0.1", Port: 8002}}}
		cfg, err := front.Render(g, front.SocketPath(group))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, group+".cfg"), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		e.sd.set("kato-front@"+group+".service", func(u *UnitState) {
			u.LoadState, u.ActiveState, u.SubState = "loaded", "active", "running"
		})
	}
}

func member(id string, s front.State, sessions int) front.MemberStats {
	return front.MemberStats{Backend: "members", ID: id, State: s, Status: strings.ToUpper(string(s)), Sessions: sessions, Weight: 1, Requests: 60}
}

// TestFrontsInListAndStatus: list and status show each front with its
// port, balance and members from one listing, each socket read once; a
// member down or no member up is a problem of status; a front whose socket
// does not answer is shown as such within the timeout, not an error.
func TestFrontsInListAndStatus(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a", Group: "web"})
	web, stuck := &fakeRuntime{}, &fakeRuntime{hang: true}
	web.set(member("a", front.Up, 2), member("b", front.Draining, 1))
	withFronts(t, e, map[string]*fakeRuntime{"web": web, "stuck": stuck})

	lists := e.sd.listCalls
	began := time.Now()
	l, err := e.m.ListAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > FrontTimeout+time.Second {
		t.Errorf("ListAll took %v with a front not answering, want at most about %v", took, FrontTimeout)
	}
	if n := e.sd.listCalls - lists; n != 1 {
		t.Errorf("ListAll listed units %d times, want once", n)
	}
	if web.reads != 1 {
		t.Errorf("the web front's socket was read %d times, want once", web.reads)
	}
	if len(l.Fronts) != 2 || l.Fronts[0].Group != "stuck" || l.Fronts[1].Group != "web" {
		t.Fatalf("fronts: %+v", l.Fronts)
	}
	s, w := l.Fronts[0], l.Fronts[1]
	if w.Port == 0 || w.Balance != front.RoundRobin || !w.Answering || w.Requests != 120 || w.Errors != 3 ||
		w.Counts != (MemberCounts{Up: 1, Draining: 1}) || len(w.Members) != 2 || w.Members[1].State != front.Draining || w.Members[0].Sessions != 2 || w.Problem != "" {
		t.Errorf("web front: %+v", w)
	}
	if s.Answering || !strings.Contains(s.Error, "deadline") || !strings.Contains(s.Problem, "does not answer") {
		t.Errorf("front not answering: %+v", s)
	}
	if len(l.Instances) != 1 || l.Instances[0].Front == nil || l.Instances[0].Front.Group != "web" || l.Instances[0].Front.State != front.Up {
		t.Errorf("instance a's place in the front: %+v", l.Instances)
	}

	e.sd.set("mongod.service", func(u *UnitState) { u.LoadState, u.ActiveState, u.SubState = "loaded", "active", "running" })
	stuck.mu.Lock()
	stuck.hang = false
	stuck.mu.Unlock()
	stuck.set(member("a", front.Up, 0), member("b", front.Up, 0))
	for _, tc := range []struct {
		name    string
		members []front.MemberStats
		problem string
	}{
		{"draining is no problem", []front.MemberStats{member("a", front.Up, 0), member("b", front.Draining, 0)}, ""},
		{"a member down", []front.MemberStats{member("a", front.Up, 0), member("b", front.Down, 0)}, "member b down"},
		{"no member up", []front.MemberStats{member("a", front.Maintenance, 0), member("b", front.Draining, 0)}, "no member up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			web.set(tc.members...)
			st, err := e.m.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Fronts) != 2 || st.Fronts[1].Problem != tc.problem {
				t.Fatalf("status fronts: %+v, want web's problem %q", st.Fronts, tc.problem)
			}
			if st.Healthy() != (tc.problem == "") {
				t.Errorf("healthy %v with web's problem %q", st.Healthy(), tc.problem)
			}
		})
	}

	e.sd.set("kato-front@web.service", func(u *UnitState) { u.ActiveState, u.SubState = "failed", "failed" })
	st, err := e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Fronts[1].Problem != "not running" || st.Healthy() {
		t.Errorf("failed front: %+v", st.Fronts[1])
	}
}

// TestFrontsInSample: the dashboard's and /metrics' sample carries the
// fronts from its one listing.
func TestFrontsInSample(t *testing.T) {
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a", Group: "web"})
	web := &fakeRuntime{}
	web.set(member("a", front.Up, 4), member("b", front.Down, 0))
	withFronts(t, e, map[string]*fakeRuntime{"web": web})
	lists := e.sd.listCalls
	s, err := e.m.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := e.sd.listCalls - lists; n != 1 {
		t.Errorf("Sample listed units %d times, want once", n)
	}
	if len(s.Fronts) != 1 || s.Fronts[0].Counts != (MemberCounts{Up: 1, Down: 1}) || s.Fronts[0].Problem != "member b down" {
		t.Fatalf("sample fronts: %+v", s.Fronts)
	}
	if len(s.Instances) != 1 || s.Instances[0].Front == nil || s.Instances[0].Front.Sessions != 4 {
		t.Errorf("sample instance a: %+v", s.Instances)
	}
}
