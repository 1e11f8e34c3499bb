package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/kato-manager/kato-manager/config"
)

func TestClassifyMapsDBusNamesToSentinels(t *testing.T) {
	for _, tc := range []struct {
		name string
		want error
	}{
		{"org.freedesktop.systemd1.NoSuchUnit", ErrNoSuchUnit},
		{"org.freedesktop.systemd1.UnitMasked", ErrUnitMasked},
		{"org.freedesktop.systemd1.LoadFailed", ErrLoadFailed},
		{"org.freedesktop.systemd1.BadUnitSetting", ErrLoadFailed},
		{"org.freedesktop.DBus.Error.AccessDenied", ErrAccessDenied},
		{"org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", ErrAccessDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := dbus.Error{Name: tc.name, Body: []any{"Unit x.service not loaded."}}
			err := fmt.Errorf("stop x.service: %w", classify(raw))
			if !errors.Is(err, tc.want) {
				t.Fatalf("errors.Is(%v, %v) = false", err, tc.want)
			}
			for _, other := range []error{ErrNoSuchUnit, ErrUnitMasked, ErrLoadFailed, ErrAccessDenied} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("%v also matches %v", err, other)
				}
			}
			var be *BusError
			if !errors.As(err, &be) || be.Name != tc.name || be.Message != "Unit x.service not loaded." {
				t.Errorf("BusError = %+v, want name %s and systemd's message", be, tc.name)
			}
		})
	}
	// A name the supervisor does not branch on matches no sentinel, and a
	// message that merely mentions one is not classified by its text.
	err := classify(dbus.Error{Name: "org.freedesktop.systemd1.JobFailed", Body: []any{"NoSuchUnit not loaded does not exist"}})
	for _, s := range []error{ErrNoSuchUnit, ErrUnitMasked, ErrLoadFailed, ErrAccessDenied} {
		if errors.Is(err, s) {
			t.Errorf("%v matches %v", err, s)
		}
	}
	plain := errors.New("Unit kato@x.service not loaded.")
	if errors.Is(classify(plain), ErrNoSuchUnit) {
		t.Error("an error that is not a D-Bus error was classified by its text")
	}
}

func TestTeardownToleratesNoSuchUnitOnly(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	// Never loaded: the fake answers stop with NoSuchUnit, as systemd does,
	// and teardown treats the unit as already gone.
	if err := e.m.teardown(ctx, "never"); err != nil {
		t.Fatalf("teardown of a unit systemd does not know: %v", err)
	}
	e.start(t, StartRequest{ID: "a"})
	e.sd.fail = map[string]error{
		"stop kato@a.service": fmt.Errorf("stop kato@a.service: %w", busError("org.freedesktop.DBus.Error.AccessDenied", "Access denied")),
	}
	err := e.m.teardown(ctx, "a")
	if !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("teardown with stop denied = %v, want ErrAccessDenied", err)
	}
	e.sd.fail = map[string]error{
		"disable kato@a.service": fmt.Errorf("disable: %w", busError("org.freedesktop.systemd1.NoSuchUnit", "Unit file kato@a.service does not exist.")),
	}
	if err := e.m.teardown(ctx, "a"); err != nil {
		t.Fatalf("teardown with the unit file gone: %v", err)
	}
}

// TestGCNeverUndoesAFinishedStart is the finding that gc worked from a
// registry read before it took the lock: a start that finished in between
// looked like an orphan and was torn down after reporting success.
func TestGCNeverUndoesAFinishedStart(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	startDone := make(chan error, 1)
	var once sync.Once
	// Between gc's look at the registry and its look at systemd, another
	// command starts an instance.
	e.sd.onList = func() {
		once.Do(func() {
			go func() {
				_, err := e.m.Start(ctx, StartRequest{ID: "late", Parameters: config.DefaultParameters()})
				startDone <- err
			}()
			select {
			case err := <-startDone:
				startDone <- err // finished inside gc's window
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
	if _, err := e.m.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-startDone; err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, ok := e.registry(t).Instances["late"]; !ok {
		t.Fatal("the started instance lost its registry entry")
	}
	u, _ := e.sd.Unit(ctx, "kato@late.service")
	if u.ActiveState != "active" || !e.m.hasUnitFiles("late") {
		t.Fatalf("the started instance is %s, unit files present %v", u.ActiveState, e.m.hasUnitFiles("late"))
	}
}

// TestStopAndRestartSerialise: a stop that runs while a restart holds the
// operation lock waits for it, and then finds the instance to stop.
func TestStopAndRestartSerialise(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a"})
	release, err := e.m.Registry.LockOperations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() {
		_, err := e.m.Stop(ctx, "a")
		stopped <- err
	}()
	select {
	case err := <-stopped:
		t.Fatalf("stop ran while another operation held the lock: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, ok := e.registry(t).Instances["a"]; !ok {
		t.Fatal("instance removed while the lock was held")
	}
	release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if _, ok := e.registry(t).Instances["a"]; ok {
		t.Fatal("stop did not remove the instance")
	}
}

func TestStatusShowsStartLimitAndRestartClearsIt(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a"})
	// How systemd 252 leaves a unit whose automatic restart the limit
	// refused: the last failure's result, and as many restarts as the burst.
	e.sd.set("kato@a.service", func(u *UnitState) {
		u.ActiveState, u.SubState, u.Result, u.MainPID, u.NRestarts, u.StartLimitBurst = "failed", "failed", "exit-code", 0, 5, 5
	})
	st, err := e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	is := st.Instances[0]
	if !is.StartLimitHit || !strings.Contains(is.Problem, "start limit hit") || !strings.Contains(is.Problem, "kato-manager restart a") {
		t.Fatalf("status of an instance at its start limit: %+v", is)
	}
	if st.Healthy() {
		t.Error("an instance at its start limit counts as healthy")
	}
	// systemd refuses a plain start until the failure is reset; restart
	// resets it.
	if _, err := e.m.Restart(ctx, "a", 0); err != nil {
		t.Fatalf("restart after the start limit: %v", err)
	}
	st, err = e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if is := st.Instances[0]; is.StartLimitHit || is.Problem != "" || is.ActiveState != "active" {
		t.Fatalf("after restart: %+v", is)
	}
}

func TestStatusWarnsWhatWillNotComeBackAtBoot(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a"})
	warnings := func() []string {
		t.Helper()
		st, err := e.m.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Warnings
	}
	got := warnings()
	if len(got) != 1 || !strings.Contains(got[0], "kato.target is disabled, not enabled: the instances will not come back at boot") {
		t.Fatalf("warnings with kato.target disabled = %q", got)
	}
	e.sd.EnableUnits(ctx, []string{"kato.target"})
	if got := warnings(); len(got) != 0 {
		t.Fatalf("warnings with everything enabled = %q", got)
	}
	e.sd.DisableUnits(ctx, []string{"kato@a.service"})
	if got := warnings(); len(got) != 1 || !strings.Contains(got[0], "kato@a.service runs but is not enabled") {
		t.Fatalf("warnings with the instance disabled = %q", got)
	}
	e.sd.EnableUnits(ctx, []string{"kato@a.service"})
	e.sd.set("kg-worker@1.service", func(u *UnitState) { u.ActiveState, u.SubState = "active", "running" })
	if got := warnings(); len(got) != 1 || !strings.Contains(got[0], "kg-workers.target is disabled") {
		t.Fatalf("warnings with a worker and kg-workers.target disabled = %q", got)
	}
}

func TestInstanceDropInCarriesLimits(t *testing.T) {
	e := newTestEnv(t)
	e.m.Config.Limits.InstanceMemoryMax, e.m.Config.Limits.InstanceTasksMax = "700M", 99
	e.start(t, StartRequest{ID: "a"})
	data, err := os.ReadFile(e.m.dropInPath("a"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\nMemoryMax=700M\nTasksMax=99\n") {
		t.Errorf("drop-in:\n%s", data)
	}
}

func TestStartLimitHit(t *testing.T) {
	for _, tc := range []struct {
		name string
		u    UnitState
		want bool
	}{
		{"a start refused", UnitState{ActiveState: "failed", Result: "start-limit-hit"}, true},
		{"an automatic restart refused", UnitState{ActiveState: "failed", Result: "exit-code", NRestarts: 5, StartLimitBurst: 5}, true},
		{"failed, restarts below the burst", UnitState{ActiveState: "failed", Result: "exit-code", NRestarts: 2, StartLimitBurst: 5}, false},
		{"restarting", UnitState{ActiveState: "activating", SubState: "auto-restart", NRestarts: 9, StartLimitBurst: 5}, false},
		{"running", UnitState{ActiveState: "active", NRestarts: 7, StartLimitBurst: 5}, false},
	} {
		if got := tc.u.StartLimitHit(); got != tc.want {
			t.Errorf("%s: StartLimitHit = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestChangedUnit: the unit a signal names: a PropertiesChanged of a unit's
// Service interface by its escaped object path, UnitNew and UnitRemoved by
// name; the Unit interface's changes and other objects are not of interest.
func TestChangedUnit(t *testing.T) {
	for _, c := range []struct {
		sig  dbus.Signal
		want string
	}{
		{dbus.Signal{Name: propertiesChanged, Path: "/org/freedesktop/systemd1/unit/kato_40alpha_2dx_2eservice", Body: []any{serviceInterface, map[string]dbus.Variant{}, []string{}}}, "kato@alpha-x.service"},
		{dbus.Signal{Name: propertiesChanged, Path: "/org/freedesktop/systemd1/unit/kg_2dworker_403_2eservice", Body: []any{serviceInterface}}, "kg-worker@3.service"},
		{dbus.Signal{Name: propertiesChanged, Path: "/org/freedesktop/systemd1/unit/kato_40a_2eservice", Body: []any{"org.freedesktop.systemd1.Unit"}}, ""},
		{dbus.Signal{Name: propertiesChanged, Path: "/org/freedesktop/systemd1/job/12", Body: []any{serviceInterface}}, ""},
		{dbus.Signal{Name: managerInterface + ".UnitNew", Path: "/org/freedesktop/systemd1", Body: []any{"kato@b.service", dbus.ObjectPath("/x")}}, "kato@b.service"},
		{dbus.Signal{Name: managerInterface + ".UnitRemoved", Path: "/org/freedesktop/systemd1", Body: []any{"kato@b.service", dbus.ObjectPath("/x")}}, "kato@b.service"},
		{dbus.Signal{Name: managerInterface + ".JobRemoved", Body: []any{uint32(1), dbus.ObjectPath("/j"), "kato@b.service", "done"}}, ""},
	} {
		if got := changedUnit(&c.sig); got != c.want {
			t.Errorf("changedUnit(%s %s) = %q, want %q", c.sig.Name, c.sig.Path, got, c.want)
		}
	}
}

// TestOneConnectionDialsOnce: go-systemd's two connections are one on
// systemd's own socket, and a failed dial is tried again by the next call.
func TestOneConnectionDialsOnce(t *testing.T) {
	dials := 0
	fail := true
	dial := oneConnection(func() (*dbus.Conn, error) {
		dials++
		if fail {
			return nil, errors.New("refused")
		}
		return new(dbus.Conn), nil
	})
	if _, err := dial(); err == nil {
		t.Fatal("a failed dial gave no error")
	}
	fail = false
	calls, signals := must(dial()), must(dial())
	if calls == nil || calls != signals || dials != 2 {
		t.Errorf("connections %p and %p after %d dials, want one connection from the second dial", calls, signals, dials)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestStatusAsksNothingPerUnit: status reads the instances' states from
// the one listing and their restarts from the Service properties, asks
// systemd for a unit's own properties only when it failed (its start
// limit) or runs without a link in kato.target.wants, and still sees
// every state.
func TestStatusAsksNothingPerUnit(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.sd.set("mongod.service", func(u *UnitState) { u.ActiveState, u.SubState = "active", "running" })
	ids := []string{"a", "b", "c", "d", "e", "f", "g"}
	for _, id := range ids {
		e.start(t, StartRequest{ID: id})
	}
	wants := filepath.Join(e.m.Paths.UnitDir, "kato.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[:5] {
		if err := os.Symlink("../kato@.service", filepath.Join(wants, "kato@"+id+".service")); err != nil {
			t.Fatal(err)
		}
	}
	e.sd.set("kato@a.service", func(u *UnitState) { u.NRestarts = 2 })
	e.sd.set("kato@b.service", func(u *UnitState) { u.ActiveState, u.SubState, u.NRestarts = "activating", "auto-restart", 1 })
	e.sd.set("kato@c.service", func(u *UnitState) {
		u.ActiveState, u.SubState, u.Result, u.MainPID, u.NRestarts, u.StartLimitBurst = "failed", "failed", "exit-code", 0, 5, 5
	})
	for _, u := range []string{"kato@d.service", "kato@g.service"} {
		if err := e.sd.StopUnit(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.sd.DisableUnits(ctx, []string{"kato@g.service"}); err != nil {
		t.Fatal(err)
	}
	// Health requests answer without asking the fake systemd.
	e.m.Probe = func(ctx context.Context, port int, path string) (int, error) { return 200, nil }
	e.sd.takeCalls()
	st, err := e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// mongod.service, kato@c.service (failed), kato@f.service and
	// kato@g.service (not linked) and kato.target; the Service properties
	// of all but the stopped d and g.
	if c := e.sd.takeCalls(); c.unit != 5 || c.list != 2 || c.service != 5 {
		t.Errorf("systemd was asked %+v, want 5 unit reads, 5 Service reads and 2 listings", c)
	}
	byID := map[string]InstanceStatus{}
	for _, is := range st.Instances {
		byID[is.ID] = is
	}
	for _, tc := range []struct {
		id, state string
		restarts  uint32
		problem   string
		limit     bool
	}{
		{"a", "running", 2, "", false},
		{"b", "activating/auto-restart", 1, "not running", false},
		{"c", "failed", 5, "start limit hit", true},
		{"d", "stopped", 0, "not running", false},
		{"e", "running", 0, "", false},
	} {
		is := byID[tc.id]
		if is.State() != tc.state || is.Restarts != tc.restarts || is.StartLimitHit != tc.limit || !is.Enabled && tc.id != "f" ||
			tc.problem == "" && is.Problem != "" || !strings.Contains(is.Problem, tc.problem) {
			t.Errorf("%s: %+v, want state %s, %d restarts, problem %q, start limit %v", tc.id, is, tc.state, tc.restarts, tc.problem, tc.limit)
		}
	}
	if f := byID["f"]; !f.Enabled || !f.APIListening {
		t.Errorf("f, enabled in systemd without a link here: %+v", f)
	}
	if g := byID["g"]; g.Enabled || g.State() != "stopped" {
		t.Errorf("g, stopped and disabled: %+v", g)
	}
}
