package front

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRuntime is a front in memory: members go down while restarting and
// come back up when set ready, unless listed in never.
type fakeRuntime struct {
	mu        sync.Mutex
	states    map[string]State
	sessions  map[string]int
	log       []string
	out, most int // members out of the rotation now, and at most
	never     map[string]bool
}

func newFakeRuntime(ids ...string) *fakeRuntime {
	f := &fakeRuntime{states: map[string]State{}, sessions: map[string]int{}, never: map[string]bool{}}
	for _, id := range ids {
		f.states[id] = Up
	}
	return f
}

func (f *fakeRuntime) SetState(_ context.Context, backend, server string, s AdminState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, server+" "+string(s))
	switch s {
	case Drain:
		f.states[server] = Draining
		f.out++
		f.most = max(f.most, f.out)
	case Ready:
		if !f.never[server] {
			f.states[server] = Up
			f.out--
		}
	case Maint:
		f.states[server] = Maintenance
	}
	return nil
}

func (f *fakeRuntime) Stats(context.Context) (Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s Stats
	for id, st := range f.states {
		s.Members = append(s.Members, MemberStats{Backend: "members", ID: id, State: st, Sessions: f.sessions[id]})
		if f.sessions[id] > 0 && st == Draining {
			f.sessions[id]-- // connections end one poll at a time
		}
	}
	return s, nil
}

func (f *fakeRuntime) RestartMember(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessions[id] != 0 {
		return fmt.Errorf("%s restarted with %d connections open", id, f.sessions[id])
	}
	f.log = append(f.log, id+" restart")
	return nil
}

func rollGroup(ids ...string) Group {
	g := Group{Name: "g", Port: 8080, Ready: ReadyCheck{Path: "/health"}}
	for i, id := range ids {
		g.Members = append(g.Members, Member{ID: id, Address: "127.0.0.1", Port: 9000 + i})
	}
	return g
}

func TestRollMaxUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members int
		max     int
		surge   int
		most    int
	}{
		{"default is one at a time", 3, 0, 0, 1},
		{"two at a time", 5, 2, 0, 2},
		{"never all: 3 of 3 becomes 2", 3, 3, 0, 2},
		{"never all: 10 of 3 becomes 2", 3, 10, 0, 2},
		{"a lone member is restarted all the same", 1, 0, 0, 1},
		{"surge 1, max-unavailable 0: one out while the extra serves", 3, 0, 1, 1},
		{"surge 1, max-unavailable 1: two out", 3, 1, 1, 2},
		{"surge 2 of a lone member: it goes out while the extras serve", 1, 0, 2, 1},
		{"surge past the members: all of them at once", 3, 2, 5, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			for i := range tc.members {
				ids = append(ids, fmt.Sprintf("m%d", i+1))
			}
			f := newFakeRuntime(ids...)
			for _, id := range ids {
				f.sessions[id] = 2
			}
			done, err := Roll(context.Background(), rollGroup(ids...), f, f, RollOptions{MaxUnavailable: tc.max, Surge: tc.surge, Poll: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(done, ids) {
				t.Errorf("restarted %v, want %v", done, ids)
			}
			if f.most != tc.most {
				t.Errorf("at most %d members out at once, want %d", f.most, tc.most)
			}
			for _, id := range ids {
				if f.states[id] != Up {
					t.Errorf("%s ends %s, want up", id, f.states[id])
				}
			}
		})
	}
}

func TestRollOrderPerMember(t *testing.T) {
	f := newFakeRuntime("a", "b")
	if _, err := Roll(context.Background(), rollGroup("a", "b"), f, f, RollOptions{Poll: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	want := "a drain,a restart,a ready,b drain,b restart,b ready"
	if got := strings.Join(f.log, ","); got != want {
		t.Errorf("steps %s, want %s", got, want)
	}
}

func TestRollStopsAtFirstNotReady(t *testing.T) {
	f := newFakeRuntime("a", "b", "c")
	f.never["b"] = true
	done, err := Roll(context.Background(), rollGroup("a", "b", "c"), f, f, RollOptions{ReadyTimeout: 50 * time.Millisecond, Poll: time.Millisecond})
	var re *RollError
	if !errors.As(err, &re) || re.Member != "b" || !errors.Is(err, ErrNotReady) {
		t.Fatalf("Roll: %v, want a RollError at b wrapping ErrNotReady", err)
	}
	if !slices.Equal(done, []string{"a"}) {
		t.Errorf("restarted %v, want [a]", done)
	}
	if f.states["b"] != Maintenance || f.states["c"] != Up {
		t.Errorf("after the stop: b %s, c %s; want maintenance, up (c never touched)", f.states["b"], f.states["c"])
	}
	if strings.Contains(strings.Join(f.log, ","), "c ") {
		t.Errorf("c was touched after b failed: %v", f.log)
	}
}

func TestRollRefusesInvalidGroup(t *testing.T) {
	f := newFakeRuntime()
	if _, err := Roll(context.Background(), Group{Name: "g"}, f, f, RollOptions{}); err == nil || len(f.log) != 0 {
		t.Errorf("Roll of an invalid group: %v, steps %v", err, f.log)
	}
}

func TestParseStats(t *testing.T) {
	const out = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,req_tot,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,\n" +
		"front,FRONTEND,,,3,9,,120,0,0,0,0,2,,,,,OPEN,,,,118,0,110,0,2,6,0,\n" +
		"members,a,0,0,2,4,,60,0,0,,0,,,1,0,0,UP,90,1,0,,,,,,,,\n" +
		"members,b,0,0,0,4,,50,0,0,,0,,3,0,0,0,DRAIN,10,1,0,,,,,,,,\n" +
		"members,c,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/2,1,1,0,,,,,,,,\n" +
		"members,d,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,,,,,,,,\n" +
		"members,e,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2,1,1,0,,,,,,,,\n" +
		"members,BACKEND,0,0,2,4,,110,0,0,0,0,,3,1,0,0,UP,102,3,0,,,,,,,,\n\n"
	s, err := parseStats(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests != 118 || s.Errors != 8 || s.Responses["5xx"] != 6 {
		t.Errorf("front: %d requests, %d errors, %d 5xx; want 118, 8 (2 bad requests + 6 5xx), 6", s.Requests, s.Errors, s.Responses["5xx"])
	}
	want := map[string]State{"a": Up, "b": Draining, "c": Down, "d": Maintenance, "e": Up}
	if len(s.Members) != len(want) {
		t.Fatalf("members %+v, want %d", s.Members, len(want))
	}
	for id, st := range want {
		if m, _ := s.Member(id); m.State != st {
			t.Errorf("%s: %s (%q), want %s", id, m.State, m.Status, st)
		}
	}
	if a, _ := s.Member("a"); a.Sessions != 2 || a.Weight != 90 || a.Requests != 60 || a.Errors != 1 {
		t.Errorf("a: %+v, want 2 sessions, weight 90, 60 requests, 1 error", a)
	}
	if _, err := parseStats("Unknown command\n"); err == nil {
		t.Error("parseStats accepted an answer without the stats header")
	}
}
