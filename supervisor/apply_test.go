package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
)

// applyFile resolves content as a fleet file and applies it.
func (e *testEnv) applyFile(t *testing.T, content string, opts ApplyOptions) (*ApplyResult, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	want, _, err := fleet.LoadFleet(e.m.Config, path, "")
	if err != nil {
		t.Fatal(err)
	}
	return e.m.Apply(context.Background(), path, want, opts)
}

func (e *testEnv) callsLike(prefix string) []string {
	e.sd.mu.Lock()
	defer e.sd.mu.Unlock()
	var out []string
	for _, c := range e.sd.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func TestApplyCreatesChangesAndLeavesAlone(t *testing.T) {
	e := newTestEnv(t)
	e.sd.files["kato-group@.target"] = true
	file := "instances:\n  - {id: a, port: 8001}\n  - {id: b, port: 8002, group: g}\n  - {id: c, port: 8003}\n"
	res, err := e.applyFile(t, file, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 3 || len(res.Failed) != 0 {
		t.Fatalf("result %+v", res)
	}
	if reloads := e.callsLike("reload"); len(reloads) > 1 {
		t.Errorf("reloads %q, want at most one", reloads)
	}
	drop, err := os.ReadFile(filepath.Join(e.m.Paths.UnitDir, "kato-group@g.target.d", "kato-manager.conf"))
	if err != nil || !strings.Contains(string(drop), "Wants=kato@b.service\n") || strings.Contains(string(drop), "kato@a.service") {
		t.Errorf("group drop-in %q %v", drop, err)
	}
	inst, _ := os.ReadFile(filepath.Join(e.m.Paths.UnitDir, "kato@b.service.d", "kato-manager.conf"))
	if !strings.Contains(string(inst), "PartOf=kato-group@g.target\n") {
		t.Errorf("b's drop-in lacks PartOf:\n%s", inst)
	}

	// The metrics' group label comes from the registry.
	sample, err := e.m.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]string{}
	for _, is := range sample.Instances {
		groups[is.ID] = is.Group
	}
	if groups["b"] != "g" || groups["a"] != "" {
		t.Errorf("sample groups %v", groups)
	}

	before := len(e.callsLike(""))
	res, err = e.applyFile(t, file, ApplyOptions{})
	if err != nil || res.Plan.Pending() {
		t.Fatalf("second apply: %+v %v", res, err)
	}
	// It looks at what runs, and changes nothing.
	for _, c := range e.callsLike("")[before:] {
		if !strings.HasPrefix(c, "list") {
			t.Errorf("a no-change apply called %q", c)
		}
	}

	changed := strings.Replace(file, "{id: c, port: 8003}", "{id: c, port: 8003, max_predictions: 7}", 1)
	res, err = e.applyFile(t, changed, ApplyOptions{})
	if err != nil || !slices.Equal(res.Done, []string{"c"}) {
		t.Fatalf("apply of one change: %+v %v", res, err)
	}
	if restarts := e.callsLike("restart"); !slices.Equal(restarts, []string{"restart kato@c.service"}) {
		t.Errorf("restarts %q, want only c", restarts)
	}
	reg, _ := e.m.Registry.Load()
	if reg.Instances["c"].Parameters.Int("max_predictions") != 7 || reg.Instances["a"].Parameters.Int("max_predictions") != 100 {
		t.Errorf("registry after the change: c %v, a %v", reg.Instances["c"].Parameters, reg.Instances["a"].Parameters)
	}

	// Prune removes b, the group's only member: its target's drop-in goes.
	res, err = e.applyFile(t, "instances:\n  - {id: a, port: 8001}\n  - {id: c, port: 8003, max_predictions: 7}\n", ApplyOptions{Prune: true})
	if err != nil || !slices.Equal(res.Done, []string{"b"}) {
		t.Fatalf("prune: %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(e.m.Paths.UnitDir, "kato-group@g.target.d", "kato-manager.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("group drop-in left after its last member went: %v", err)
	}
}

func TestApplyRollsBackTheFailedOnly(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.applyFile(t, "instances:\n  - {id: old, port: 8001, max_predictions: 5}\n", ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	e.behavior["bad"] = "crash"
	res, err := e.applyFile(t, "instances:\n  - {id: old, port: 8001, max_predictions: 5}\n  - {id: ok, port: 8002}\n  - {id: bad, port: 8003}\n", ApplyOptions{})
	if !errors.Is(err, ErrBatchFailed) {
		t.Fatalf("err = %v", err)
	}
	if !slices.Equal(res.Done, []string{"ok"}) || len(res.Failed) != 1 || res.Failed[0].ID != "bad" || res.Failed[0].RollbackErr != nil {
		t.Fatalf("result %+v", res)
	}
	reg, _ := e.m.Registry.Load()
	if _, ok := reg.Instances["bad"]; ok || reg.Instances["ok"] == nil {
		t.Errorf("registry %v", reg.Instances)
	}
	if _, err := os.Stat(filepath.Join(e.m.Paths.EnvDir, "bad.env")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad's environment file is left: %v", err)
	}

	// A change that fails puts the old settings back.
	e.behavior["old"] = "crash"
	res, err = e.applyFile(t, "instances:\n  - {id: old, port: 8001, max_predictions: 6}\n  - {id: ok, port: 8002}\n", ApplyOptions{})
	if !errors.Is(err, ErrBatchFailed) || len(res.Failed) != 1 || res.Failed[0].Action != fleet.Change {
		t.Fatalf("failed change: %+v %v", res, err)
	}
	reg, _ = e.m.Registry.Load()
	if got := reg.Instances["old"].Parameters.Int("max_predictions"); got != 5 {
		t.Errorf("old has max_predictions %d after the rollback, want 5", got)
	}
	if env := readEnvFile(filepath.Join(e.m.Paths.EnvDir, "old.env")); env["MAX_PREDICTIONS"] != "5" {
		t.Errorf("old's environment file after the rollback: %v", env)
	}
}

func TestApplyRefusesBeforeChanging(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.applyFile(t, "instances:\n  - {id: a, port: 8001}\n", ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	e.ports.listen(8005, 1) // another program holds 8005
	before := len(e.callsLike(""))
	regBefore, _ := os.ReadFile(e.m.Registry.Path)
	_, err := e.applyFile(t, "instances:\n  - {id: b, port: 8002}\n  - {id: c, port: 8005}\n", ApplyOptions{Prune: true})
	if err == nil || !strings.Contains(err.Error(), "instance c") {
		t.Fatalf("err = %v", err)
	}
	regAfter, _ := os.ReadFile(e.m.Registry.Path)
	if string(regAfter) != string(regBefore) {
		t.Errorf("the registry changed")
	}
	if after := e.callsLike(""); len(after) != before {
		t.Errorf("systemd was asked %q", after[before:])
	}
}

func TestApplyBoundsTheStartsAtOnce(t *testing.T) {
	e := newTestEnv(t)
	var b strings.Builder
	b.WriteString("instances:\n")
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&b, "  - {id: i%02d, port: %d}\n", i, 8100+i)
	}
	starting, most, wrongTotal := 0, 0, 0
	opts := ApplyOptions{BatchOptions: BatchOptions{Parallel: 3, Progress: func(p Progress) {
		if p.Total != 12 {
			wrongTotal = p.Total
		}
		switch p.Phase {
		case PhaseStarting:
			starting++
			most = max(most, starting)
		case PhaseReady, PhaseFailed:
			starting--
		}
	}}}
	res, err := e.applyFile(t, b.String(), opts)
	if err != nil || len(res.Done) != 12 {
		t.Fatalf("%+v %v", res, err)
	}
	if most > 3 || most < 1 {
		t.Errorf("%d instances were starting at once, want at most 3", most)
	}
	if wrongTotal != 0 {
		t.Errorf("an event gave the batch's total as %d, want 12", wrongTotal)
	}
}

// TestApplyRefusesABadChange: a change that a restart would only find out
// about is refused with the rest of the file, before anything changes: a
// second generation-A processor moved onto the host network, and a new port
// another program holds.
func TestApplyRefusesABadChange(t *testing.T) {
	e := newTestEnv(t)
	withGenerationA(e, config.NetworkHost)
	file := "instances:\n  - {id: a, port: 8001, processor: engine, network: host}\n  - {id: b, port: 8002, processor: engine, network: private}\n"
	if _, err := e.applyFile(t, file, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	e.ports.listen(8009, 1)
	for _, tc := range []struct{ name, file, want string }{
		{"a second engine on the host network", strings.Replace(file, "network: private", "network: host", 1), "instance a already runs a generation-A processor on the host network"},
		{"a port in use", strings.Replace(file, "port: 8002", "port: 8009", 1), "invalid port 8009: is in use on this host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.callsLike(""))
			regBefore, _ := os.ReadFile(e.m.Registry.Path)
			_, err := e.applyFile(t, tc.file, ApplyOptions{})
			if err == nil || !strings.Contains(err.Error(), "instance b") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming instance b and %q", err, tc.want)
			}
			if regAfter, _ := os.ReadFile(e.m.Registry.Path); string(regAfter) != string(regBefore) {
				t.Errorf("the registry changed")
			}
			if after := e.callsLike(""); len(after) != before {
				t.Errorf("systemd was asked %q", after[before:])
			}
		})
	}
}

// TestApplyConvergesOnWhatRuns: an apply killed after its registry update
// and before its restarts leaves a registry that matches the file while the
// processes run the old settings and the new instances do not run; the
// next apply restarts and starts them, and status shows the drift until it
// does.
func TestApplyConvergesOnWhatRuns(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	if _, err := e.applyFile(t, "instances:\n  - {id: a, port: 8001}\n  - {id: b, port: 8002}\n", ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	// What the killed apply wrote: a and b changed, c new, no unit touched.
	if err := e.m.Registry.Update(func(r *config.Registry) error {
		for _, id := range []string{"a", "b"} {
			r.Instances[id].Parameters["max_predictions"] = 7
		}
		c := *r.Instances["a"]
		c.ID, c.Unit, c.APIPort = "c", "kato@c.service", 8003
		r.Instances["c"] = &c
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// c has no files yet: its entry is one whose unit files are missing.
	if !slices.Equal(st.Drift.StaleSettings, []string{"a", "b"}) || !slices.Equal(st.Drift.MissingUnits, []string{"c"}) || st.Healthy() {
		t.Errorf("status drift %+v, healthy %v", st.Drift, st.Healthy())
	}
	// b's unit stopped too (files written, never started).
	e.sd.set("kato@b.service", func(u *UnitState) { u.ActiveState, u.SubState, u.MainPID = "inactive", "dead", 0 })
	if st, err = e.m.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Drift.StaleSettings, []string{"a"}) || !slices.Equal(st.Drift.NotRunning, []string{"b"}) {
		t.Errorf("status drift %+v, healthy %v", st.Drift, st.Healthy())
	}
	file := "instances:\n  - {id: a, port: 8001, max_predictions: 7}\n  - {id: b, port: 8002, max_predictions: 7}\n  - {id: c, port: 8003, max_predictions: 7}\n"
	res, err := e.applyFile(t, file, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Count(fleet.Restart) != 3 || !slices.Equal(res.Done, []string{"a", "b", "c"}) {
		t.Fatalf("apply after the kill: %+v", res)
	}
	if restarts := e.callsLike("restart"); len(restarts) != 3 {
		t.Errorf("restarts %q", restarts)
	}
	st, err = e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Drift.Empty() {
		t.Errorf("drift after the apply: %+v", st.Drift)
	}
	if env := readEnvFile(e.m.Paths.EnvPath("c")); env["MAX_PREDICTIONS"] != "7" {
		t.Errorf("c's environment %v", env)
	}
	// Now it is in step: nothing to do.
	res, err = e.applyFile(t, file, ApplyOptions{})
	if err != nil || res.Plan.Pending() {
		t.Fatalf("third apply: %+v %v", res, err)
	}
}

// TestApplyStoppedAfterTheRegistry: a signal between the registry update and
// the restarts stops apply there, touching no unit.
func TestApplyStoppedAfterTheRegistry(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.applyFile(t, "instances:\n  - {id: a, port: 8001}\n", ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "fleet.yaml")
	os.WriteFile(path, []byte("instances:\n  - {id: a, port: 8001, max_predictions: 7}\n"), 0o644)
	want, _, err := fleet.LoadFleet(e.m.Config, path, "")
	if err != nil {
		t.Fatal(err)
	}
	before := len(e.callsLike(""))
	_, err = e.m.Apply(ctx, path, want, ApplyOptions{AfterRegistry: func(context.Context) { cancel() }})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run apply again") {
		t.Fatalf("interrupted apply: %v", err)
	}
	for _, c := range e.callsLike("")[before:] {
		if strings.HasPrefix(c, "restart") || strings.HasPrefix(c, "stop") || strings.HasPrefix(c, "start") {
			t.Errorf("the interrupted apply called %q", c)
		}
	}
	if e.registry(t).Instances["a"].Parameters.Int("max_predictions") != 7 {
		t.Error("the registry lacks the new settings")
	}
}

// TestStartsLookForPortHoldersOnlyWhenInUse: start and apply read every
// process's sockets (Listening) only when a bind probe finds an API port in
// use (a port another process holds is refused as before: see
// TestStartChecksWhoHoldsThePort).
func TestStartsLookForPortHoldersOnlyWhenInUse(t *testing.T) {
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a", APIPort: 8001})
	if _, err := e.applyFile(t, "instances:\n  - {id: a, port: 8001}\n  - {id: b, port: 8002}\n  - {id: c, port: 8003}\n", ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if e.ports.listings != 0 {
		t.Errorf("every process's sockets read %d times with every port free", e.ports.listings)
	}
}

// TestApplyRollsBackWhenEnablingFails: the batch's links into
// kato.target.wants are made while its instances start; when systemd
// refuses them, every instance of the batch fails and is rolled back, as a
// single start's is.
func TestApplyRollsBackWhenEnablingFails(t *testing.T) {
	e := newTestEnv(t)
	e.sd.fail = map[string]error{"enable kato@b.service": errors.New("enable refused")}
	res, err := e.applyFile(t, "instances:\n  - {id: a, port: 8001}\n  - {id: b, port: 8002}\n", ApplyOptions{})
	if !errors.Is(err, ErrBatchFailed) || len(res.Failed) != 2 || len(res.Done) != 0 {
		t.Fatalf("apply with enabling refused: %+v, %v", res, err)
	}
	for _, f := range res.Failed {
		if !strings.Contains(f.Err.Error(), "enable refused") || f.RollbackErr != nil {
			t.Errorf("%s: %v (rollback: %v)", f.ID, f.Err, f.RollbackErr)
		}
	}
	if r := e.registry(t); len(r.Instances) != 0 {
		t.Errorf("registry after the rollback: %v", r.Instances)
	}
}

// TestApplyStartsEveryInstanceAtOnceByDefault: without --parallel or
// batch.parallel, every instance of a batch is starting at once, as one
// `systemctl start` of their units would start them: none waits for
// another to be ready. The health requests answer only once all 40 are
// starting, so a bound below 40 shows as failures.
func TestApplyStartsEveryInstanceAtOnceByDefault(t *testing.T) {
	e := newTestEnv(t)
	const n = 40
	var b strings.Builder
	b.WriteString("instances:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {id: i%02d, port: %d}\n", i, 8100+i)
	}
	var mu sync.Mutex
	starting, most := 0, 0
	all := make(chan struct{})
	probe := e.m.Probe
	e.m.Probe = func(ctx context.Context, port int, path string) (int, error) {
		select {
		case <-all:
			return probe(ctx, port, path)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	opts := ApplyOptions{BatchOptions: BatchOptions{Timeout: 5 * time.Second, Progress: func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		switch p.Phase {
		case PhaseStarting:
			starting++
			if starting > most {
				most = starting
				if most == n {
					close(all)
				}
			}
		case PhaseReady, PhaseFailed:
			starting--
		}
	}}}
	res, err := e.applyFile(t, b.String(), opts)
	if err != nil || len(res.Done) != n {
		t.Fatalf("%d done, %d failed, %v; at most %d were starting at once, want all %d", len(res.Done), len(res.Failed), err, most, n)
	}
	if most != n {
		t.Errorf("%d instances were starting at once, want all %d", most, n)
	}
}
