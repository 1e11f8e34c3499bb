package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/front"
)

// fakeFront is a front's runtime API in memory: the states it was asked
// to set, and every member up with no connection.
type fakeFront struct {
	mu    sync.Mutex
	calls []string
	up    []string
}

func (f *fakeFront) SetState(ctx context.Context, backend, server string, s front.AdminState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, string(s)+" "+server)
	return nil
}

// Stats shows every member registered in up as up, with no connection.
func (f *fakeFront) Stats(ctx context.Context) (front.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s front.Stats
	for _, id := range f.up {
		s.Members = append(s.Members, front.MemberStats{ID: id, State: front.Up})
	}
	return s, nil
}

func newFrontEnv(t *testing.T) (*testEnv, *fakeFront) {
	t.Helper()
	e := newTestEnv(t)
	e.m.FrontDir = filepath.Join(t.TempDir(), "fronts")
	e.m.Config.Groups = map[string]config.Group{"ab": {Front: 9000, Balance: "roundrobin"}}
	ff := &fakeFront{}
	e.m.FrontAdmin = func(string) front.Runtime { return ff }
	return e, ff
}

func (e *testEnv) callsOf(unit string) []string {
	e.sd.mu.Lock()
	defer e.sd.mu.Unlock()
	var out []string
	for _, c := range e.sd.calls {
		if strings.HasSuffix(c, " "+unit) {
			out = append(out, strings.Fields(c)[0])
		}
	}
	return out
}

// TestFrontFollowsMembers: the first member of a fronted group starts the
// front on a configuration naming it; the next reloads it with both and
// their weights; stopping one drains it first and reloads without it;
// stopping the last stops the front and removes its configuration.
func TestFrontFollowsMembers(t *testing.T) {
	e, ff := newFrontEnv(t)
	ctx := context.Background()
	cfgPath := filepath.Join(e.m.FrontDir, "ab.cfg")
	unit := "kato-front@ab.service"
	if _, err := e.m.Start(ctx, StartRequest{ID: "a", Group: "ab", Weight: 90, Parameters: config.DefaultParameters()}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "server a 127.0.0.1:8000 weight 90 check") || !strings.Contains(string(data), "bind :9000") {
		t.Errorf("front after the first member:\n%s", data)
	}
	if got := e.callsOf(unit); !slices.Equal(got, []string{"start"}) {
		t.Errorf("front unit calls %v, want [start]", got)
	}
	if _, err := e.m.Start(ctx, StartRequest{ID: "b", Group: "ab", Weight: 10, Parameters: config.DefaultParameters()}); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(cfgPath)
	if !strings.Contains(string(data), "server a 127.0.0.1:8000 weight 90") || !strings.Contains(string(data), "server b 127.0.0.1:8001 weight 10") {
		t.Errorf("front after the second member:\n%s", data)
	}
	if got := e.callsOf(unit); !slices.Equal(got, []string{"start", "reload"}) {
		t.Errorf("front unit calls %v, want [start reload]", got)
	}
	// An instance outside the group leaves the front alone.
	if _, err := e.m.Start(ctx, StartRequest{ID: "c", Parameters: config.DefaultParameters()}); err != nil {
		t.Fatal(err)
	}
	if got := e.callsOf(unit); len(got) != 2 {
		t.Errorf("front unit calls %v after an instance of no group", got)
	}
	if _, err := e.m.Stop(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ff.calls, []string{"drain a"}) {
		t.Errorf("runtime calls %v, want [drain a]", ff.calls)
	}
	data, _ = os.ReadFile(cfgPath)
	if strings.Contains(string(data), "server a ") || !strings.Contains(string(data), "server b ") {
		t.Errorf("front after stopping a:\n%s", data)
	}
	if got := e.callsOf(unit); !slices.Equal(got, []string{"start", "reload", "reload"}) {
		t.Errorf("front unit calls %v, want [start reload reload]", got)
	}
	if _, err := e.m.Stop(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := e.callsOf(unit); got[len(got)-1] != "stop" {
		t.Errorf("front unit calls %v, want a stop last", got)
	}
	if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
		t.Errorf("front configuration left after its last member: %v", err)
	}
}

// TestFrontOfGroupWithoutFront: a group kato.toml gives no front has none.
func TestFrontOfGroupWithoutFront(t *testing.T) {
	e, _ := newFrontEnv(t)
	ctx := context.Background()
	if _, err := e.m.Start(ctx, StartRequest{ID: "x", Group: "other", Parameters: config.DefaultParameters()}); err != nil {
		t.Fatal(err)
	}
	if got := e.callsOf("kato-front@other.service"); len(got) != 0 {
		t.Errorf("front of a group without one: %v", got)
	}
	if _, err := os.Stat(filepath.Join(e.m.FrontDir, "other.cfg")); !os.IsNotExist(err) {
		t.Errorf("configuration written for a group without a front: %v", err)
	}
	if _, err := e.m.RollGroup(ctx, "other", RollOptions{}); err == nil || !strings.Contains(err.Error(), "group has no front") {
		t.Errorf("RollGroup of a group without a front: %v", err)
	}
}

func TestPlanScale(t *testing.T) {
	reg := &config.Registry{Instances: map[string]*config.Instance{}}
	for _, id := range []string{"web-1", "web-2", "web-3", "web-10", "web-x", "other-1"} {
		g := "web"
		if id == "other-1" {
			g = "other"
		}
		reg.Instances[id] = &config.Instance{ID: id, Group: g}
	}
	for _, tc := range []struct {
		name              string
		n                 int
		start, stop, keep []string
	}{
		{"up to 5", 5, []string{"web-4", "web-5"}, []string{"web-10"}, []string{"web-1", "web-2", "web-3"}},
		{"down to 2", 2, nil, []string{"web-3", "web-10"}, []string{"web-1", "web-2"}},
		{"to 0", 0, nil, []string{"web-1", "web-2", "web-3", "web-10"}, nil},
		{"to 10", 10, []string{"web-4", "web-5", "web-6", "web-7", "web-8", "web-9"}, nil, []string{"web-1", "web-2", "web-3", "web-10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanScale(reg, "web", tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Start, tc.start) || !slices.Equal(p.Stop, tc.stop) || !slices.Equal(p.Keep, tc.keep) {
				t.Errorf("PlanScale(%d) = %+v, want start %v stop %v keep %v", tc.n, p, tc.start, tc.stop, tc.keep)
			}
		})
	}
	if _, err := PlanScale(reg, "web", 257); err == nil || !strings.Contains(err.Error(), "invalid replicas 257: must be between 0 and 256") {
		t.Errorf("PlanScale(257): %v", err)
	}
	reg.Instances["web-4"] = &config.Instance{ID: "web-4", Group: "other"}
	if _, err := PlanScale(reg, "web", 5); err == nil || !strings.Contains(err.Error(), "instance web-4 has the name of a replica of group web but is in group \"other\"") {
		t.Errorf("PlanScale with a foreign web-4: %v", err)
	}
}

// TestScaleGroup: scale makes exactly the replicas asked for from the
// group's template, and drains those it stops out of the front first.
func TestScaleGroup(t *testing.T) {
	e, ff := newFrontEnv(t)
	ctx := context.Background()
	e.m.Config.Templates = map[string]*config.Entry{"t": {Name: "Replica", Parameters: map[string]any{"persistence": 9}, Set: map[string]bool{"name": true, "persistence": true}}}
	e.m.Config.Groups["ab"] = config.Group{Front: 9000, Template: "t"}
	if _, err := e.m.ScaleGroup(ctx, "ab", 3, ScaleOptions{}); err != nil {
		t.Fatal(err)
	}
	reg, _ := e.m.Registry.Load()
	var ids []string
	for _, in := range reg.Sorted() {
		ids = append(ids, in.ID)
		if in.Group != "ab" || in.Name != "Replica" || in.Parameters["persistence"] != 9 {
			t.Errorf("replica %s: group %q name %q persistence %v", in.ID, in.Group, in.Name, in.Parameters["persistence"])
		}
	}
	if !slices.Equal(ids, []string{"ab-1", "ab-2", "ab-3"}) {
		t.Errorf("after scale 3: %v", ids)
	}
	res, err := e.m.ScaleGroup(ctx, "ab", 1, ScaleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Stopped, []string{"ab-2", "ab-3"}) {
		t.Errorf("scale 1 stopped %v", res.Stopped)
	}
	if !slices.Equal(ff.calls, []string{"drain ab-2", "drain ab-3"}) {
		t.Errorf("runtime calls %v, want both drained", ff.calls)
	}
	data, _ := os.ReadFile(filepath.Join(e.m.FrontDir, "ab.cfg"))
	if strings.Contains(string(data), "server ab-2") || !strings.Contains(string(data), "server ab-1") {
		t.Errorf("front after scale 1:\n%s", data)
	}
	if _, err := e.m.ScaleGroup(ctx, "nogroup", 1, ScaleOptions{}); err == nil || !strings.Contains(err.Error(), "must name a [groups.NAME] of kato.toml") {
		t.Errorf("scale of a group kato.toml does not have: %v", err)
	}
}

// TestRollGroup: a rolling restart drains, restarts and readies each member
// in turn; one that does not come back stops the roll, is reported as
// failed and left out of the rotation, and those after it are not touched.
func TestRollGroup(t *testing.T) {
	e, ff := newFrontEnv(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := e.m.Start(ctx, StartRequest{ID: id, Group: "ab", Parameters: config.DefaultParameters(), Timeout: 200 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	ff.up = []string{"a", "b", "c"}
	res, err := e.m.RollGroup(ctx, "ab", RollOptions{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Done, []string{"a", "b", "c"}) {
		t.Errorf("rolled %v", res.Done)
	}
	want := []string{"drain a", "ready a", "drain b", "ready b", "drain c", "ready c"}
	if !slices.Equal(ff.calls, want) {
		t.Errorf("runtime calls %v, want %v", ff.calls, want)
	}
	if got := e.callsOf("kato@b.service"); !slices.Contains(got, "restart") {
		t.Errorf("b's unit calls %v, want a restart", got)
	}

	ff.calls = nil
	e.behavior["b"] = "silent"
	res, err = e.m.RollGroup(ctx, "ab", RollOptions{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrBatchFailed) {
		t.Fatalf("roll with b not coming back: %v", err)
	}
	if !slices.Equal(res.Done, []string{"a"}) || len(res.Failed) != 1 || res.Failed[0].ID != "b" {
		t.Errorf("done %v, failed %+v; want a done and b failed", res.Done, res.Failed)
	}
	want = []string{"drain a", "ready a", "drain b", "maint b"}
	if !slices.Equal(ff.calls, want) {
		t.Errorf("runtime calls %v, want %v", ff.calls, want)
	}
}

// TestApplyRollsFrontedMembers: an apply that changes members of a group
// whose front runs restarts them one at a time through the front; a change
// of weight alone reloads the front and restarts nothing.
func TestApplyRollsFrontedMembers(t *testing.T) {
	e, ff := newFrontEnv(t)
	e.sd.files["kato-group@.target"] = true
	file := "instances:\n  - {id: a, port: 8001, group: ab}\n  - {id: b, port: 8002, group: ab}\n  - {id: c, port: 8003, group: ab}\n"
	if _, err := e.applyFile(t, file, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := e.callsOf("kato-front@ab.service"); len(got) == 0 || got[0] != "start" {
		t.Fatalf("front calls after the first apply: %v", got)
	}
	ff.up = []string{"a", "b", "c"}
	changed := strings.ReplaceAll(file, "group: ab}", "group: ab, persistence: 9}")
	res, err := e.applyFile(t, changed, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 3 {
		t.Errorf("apply result %+v", res)
	}
	want := []string{"drain a", "ready a", "drain b", "ready b", "drain c", "ready c"}
	if !slices.Equal(ff.calls, want) {
		t.Errorf("runtime calls %v, want %v", ff.calls, want)
	}
	restartsBefore := len(e.callsLike("restart kato@"))
	reloadsBefore := len(e.callsLike("reload kato-front@ab.service"))
	weighted := strings.Replace(changed, "{id: a, port: 8001, group: ab, persistence: 9}", "{id: a, port: 8001, group: ab, persistence: 9, weight: 50}", 1)
	if _, err := e.applyFile(t, weighted, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.callsLike("restart kato@")); n != restartsBefore {
		t.Errorf("a weight change restarted %d instances", n-restartsBefore)
	}
	if n := len(e.callsLike("reload kato-front@ab.service")); n != reloadsBefore+1 {
		t.Errorf("a weight change reloaded the front %d times, want once", n-reloadsBefore)
	}
	data, _ := os.ReadFile(filepath.Join(e.m.FrontDir, "ab.cfg"))
	if !strings.Contains(string(data), "server a 127.0.0.1:8001 weight 50 check") {
		t.Errorf("front after the weight change:\n%s", data)
	}
}

// TestApplyStoresFleetGroups: a fleet file's groups are stored and make
// fronts as kato.toml's do, winning over kato.toml's of the same name; an
// apply of the same groups changes nothing.
func TestApplyStoresFleetGroups(t *testing.T) {
	e, _ := newFrontEnv(t)
	e.sd.files["kato-group@.target"] = true
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "f.yaml")
	content := "groups:\n  ab: {front: 9300}\n  cd: {front: 9400}\ninstances:\n  - {id: a, port: 8001, group: ab}\n  - {id: c, port: 8003, group: cd}\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	want, f, err := fleet.LoadFleet(e.m.Config, path, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.m.Apply(ctx, path, want, ApplyOptions{Groups: f.Groups, SetGroups: f.HasGroups})
	if err != nil || !res.GroupsChanged {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	for name, bind := range map[string]string{"ab": "bind :9300", "cd": "bind :9400"} {
		data, err := os.ReadFile(filepath.Join(e.m.FrontDir, name+".cfg"))
		if err != nil || !strings.Contains(string(data), bind) {
			t.Errorf("front of %s: %v\n%s", name, err, data)
		}
	}
	reg, _ := e.m.Registry.Load()
	if g, _ := reg.Group(e.m.Config, "ab"); g.Front != 9300 {
		t.Errorf("group ab %+v: the file's must win over kato.toml's", g)
	}
	res, err = e.m.Apply(ctx, path, want, ApplyOptions{Groups: f.Groups, SetGroups: f.HasGroups})
	if err != nil || res.GroupsChanged || res.Plan.Pending() {
		t.Errorf("second apply: %+v, %v; want nothing to do", res, err)
	}
}

// TestRestartMemberThroughFront: restart of one member of a running front
// drains it first and readies it after; gc brings a front stopped by hand
// back.
func TestRestartMemberThroughFront(t *testing.T) {
	e, ff := newFrontEnv(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := e.m.Start(ctx, StartRequest{ID: id, Group: "ab", Parameters: config.DefaultParameters()}); err != nil {
			t.Fatal(err)
		}
	}
	ff.up = []string{"a", "b"}
	if _, err := e.m.Restart(ctx, "a", 0); err != nil {
		t.Fatal(err)
	}
	if want := []string{"drain a", "ready a"}; !slices.Equal(ff.calls, want) {
		t.Errorf("runtime calls %v, want %v", ff.calls, want)
	}
	if got := e.callsOf("kato@a.service"); !slices.Contains(got, "restart") {
		t.Errorf("a's unit calls %v, want a restart", got)
	}
	if err := e.sd.StopUnit(ctx, "kato-front@ab.service"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.sd.Unit(ctx, "kato-front@ab.service"); !u.Active() {
		t.Errorf("front after gc: %s, want active", u.ActiveState)
	}
}
func TestFrontRestarterRestartsTheMember(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "g-1"})
	e.start(t, StartRequest{ID: "g-2"})
	r := e.m.FrontRestarter(time.Second)
	if err := r.RestartMember(ctx, "g-2"); err != nil {
		t.Fatal(err)
	}
	calls := e.sd.callLog()
	if !slices.Contains(calls, "restart kato@g-2.service") || slices.Contains(calls, "restart kato@g-1.service") {
		t.Errorf("calls = %q, want a restart of kato@g-2.service alone", calls)
	}
	if err := r.RestartMember(ctx, "g-9"); err == nil {
		t.Error("restarting a member that is no instance succeeded")
	}
}

// TestUserFrontRefusesPrivilegedPort: in the user scope a member of a
// group whose front is on a port the user may not bind is refused before
// anything changes, with the field, the value and the rule; the same group
// on a higher port starts its front from the user's directories.
func TestUserFrontRefusesPrivilegedPort(t *testing.T) {
	e, _ := newFrontEnv(t)
	e.m.Paths.User = true
	e.m.FrontDir = ""
	e.m.Paths.FrontDir = filepath.Join(t.TempDir(), "fronts")
	e.m.Paths.FrontRuntimeDir = "/run/user/1000/kato-front"
	home := t.TempDir()
	e.m.Paths.WorkerEnvDir, e.m.Paths.StateDir = filepath.Join(home, ".config/kato"), filepath.Join(home, ".local/state/kato/instances")
	e.m.Paths.ConfigHome, e.m.Paths.StateHome, e.m.Paths.MakeStateDir = filepath.Join(home, ".config"), filepath.Join(home, ".local/state"), true
	ctx := context.Background()
	start := unprivilegedPortStart()
	if start == 0 {
		t.Fatal("net.ipv4.ip_unprivileged_port_start is 0 here: every port is a user's, nothing to refuse")
	}
	e.m.Config.Groups = map[string]config.Group{"ab": {Front: start - 1}}
	_, err := e.m.Start(ctx, StartRequest{ID: "a", Group: "ab", Parameters: config.DefaultParameters()})
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "groups.ab.front" || fe.Value != strconv.Itoa(start-1) || !strings.Contains(fe.Rule, "--user") {
		t.Fatalf("Start with a front on port %d under --user: %v, want a FieldError on groups.ab.front", start-1, err)
	}
	if reg, _ := e.m.Registry.Load(); len(reg.Instances) != 0 {
		t.Errorf("registry after the refusal: %v", reg.Instances)
	}
	if got := e.callsOf("kato@a.service"); len(got) != 0 {
		t.Errorf("systemd calls after the refusal: %v", got)
	}
	e.m.Config.Groups = map[string]config.Group{"ab": {Front: 9000}}
	if _, err := e.m.Start(ctx, StartRequest{ID: "a", Group: "ab", Parameters: config.DefaultParameters()}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(e.m.Paths.FrontDir, "ab.cfg"))
	if err != nil || !strings.Contains(string(data), "stats socket '/run/user/1000/kato-front/ab/admin.sock'") ||
		!strings.Contains(string(data), "server-state-file '/run/user/1000/kato-front/ab/servers.state'") {
		t.Errorf("user front's configuration (%v):\n%s", err, data)
	}
}

// TestUserApplyRefusesPrivilegedFront: under --user an apply whose fleet
// file puts a member in a group with a front on a port the user may not
// bind is refused before anything changes.
func TestUserApplyRefusesPrivilegedFront(t *testing.T) {
	e, _ := newFrontEnv(t)
	e.m.Paths.User = true
	start := unprivilegedPortStart()
	if start == 0 {
		t.Fatal("net.ipv4.ip_unprivileged_port_start is 0 here: every port is a user's, nothing to refuse")
	}
	path := filepath.Join(t.TempDir(), "f.yaml")
	content := fmt.Sprintf("groups:\n  low: {front: %d}\ninstances:\n  - {id: a, port: 8001, group: low}\n", start-1)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	want, f, err := fleet.LoadFleet(e.m.Config, path, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.m.Apply(context.Background(), path, want, ApplyOptions{Groups: f.Groups, SetGroups: f.HasGroups})
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "groups.low.front" {
		t.Fatalf("apply of a user's front on port %d: %v, want a FieldError on groups.low.front", start-1, err)
	}
	if reg, _ := e.m.Registry.Load(); len(reg.Instances) != 0 || len(reg.Groups) != 0 {
		t.Errorf("registry after the refusal: %v %v", reg.Instances, reg.Groups)
	}
	if calls := e.callsLike("start"); len(calls) != 0 {
		t.Errorf("systemd calls after the refusal: %v", calls)
	}
}

// TestRollGroupSurge: a roll with a surge starts the extra member from the
// group's template before any member goes out, rolls only the group's own
// members, and drains, stops and removes the extra one after; a group
// without a template or processor is refused, nothing started.
func TestRollGroupSurge(t *testing.T) {
	e, ff := newFrontEnv(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := e.m.Start(ctx, StartRequest{ID: id, Group: "ab", Parameters: config.DefaultParameters(), Timeout: 200 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	ff.up = []string{"a", "b", "c", "ab-surge-1"}
	_, err := e.m.RollGroup(ctx, "ab", RollOptions{Surge: 1, Timeout: 200 * time.Millisecond})
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "--surge" || fe.Value != "1" || !strings.Contains(fe.Rule, "[groups.ab] names a template or processor") {
		t.Fatalf("surge of a group without a template: %v", err)
	}
	if reg, _ := e.m.Registry.Load(); reg.Instances["ab-surge-1"] != nil || len(ff.calls) != 0 || len(e.callsOf("kato@ab-surge-1.service")) != 0 {
		t.Fatalf("a refused surge changed something: registry %v, runtime calls %v", reg.Instances, ff.calls)
	}

	e.m.Config.Templates = map[string]*config.Entry{"t": {Name: "Extra", Set: map[string]bool{"name": true}}}
	e.m.Config.Groups["ab"] = config.Group{Front: 9000, Template: "t"}
	// The extra member must be up in the front before the first drain.
	var registeredAtFirstDrain bool
	e.m.FrontAdmin = func(string) front.Runtime {
		return drainHook{fakeFront: ff, first: func() {
			reg, _ := e.m.Registry.Load()
			registeredAtFirstDrain = reg.Instances["ab-surge-1"] != nil
		}}
	}
	res, err := e.m.RollGroup(ctx, "ab", RollOptions{Surge: 1, MaxUnavailable: 0, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Done, []string{"a", "b", "c"}) {
		t.Errorf("rolled %v, want a, b, c without the extra member", res.Done)
	}
	if !registeredAtFirstDrain {
		t.Error("the extra member was not started before the first member went out")
	}
	want := []string{"drain a", "ready a", "drain b", "ready b", "drain c", "ready c", "drain ab-surge-1"}
	if !slices.Equal(ff.calls, want) {
		t.Errorf("runtime calls %v, want %v", ff.calls, want)
	}
	if got := e.callsOf("kato@ab-surge-1.service"); !slices.Contains(got, "start") || !slices.Contains(got, "stop") {
		t.Errorf("the extra member's unit calls %v, want a start and a stop", got)
	}
	if reg, _ := e.m.Registry.Load(); reg.Instances["ab-surge-1"] != nil {
		t.Error("the extra member is still registered after the roll")
	}
}

// drainHook calls first before the first drain it is asked for.
type drainHook struct {
	*fakeFront
	first func()
}

func (d drainHook) SetState(ctx context.Context, backend, server string, s front.AdminState) error {
	if s == front.Drain && d.first != nil && len(d.calls) == 0 {
		d.first()
	}
	return d.fakeFront.SetState(ctx, backend, server, s)
}
