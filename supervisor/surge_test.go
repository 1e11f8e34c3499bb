package supervisor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/front"
)

// TestApplyRollsWithSurge: an apply with a surge that changes the members
// of a fronted group starts the extra member before any member goes out,
// rolls the changed members with it serving, then drains, stops and
// removes it; a group without a template or processor is refused before
// anything changes.
func TestApplyRollsWithSurge(t *testing.T) {
	e, ff := newFrontEnv(t)
	e.sd.files["kato-group@.target"] = true
	file := "instances:\n  - {id: a, port: 8001, group: ab}\n  - {id: b, port: 8002, group: ab}\n  - {id: c, port: 8003, group: ab}\n"
	if _, err := e.applyFile(t, file, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	ff.up = []string{"a", "b", "c", "ab-surge-1"}
	changed := strings.ReplaceAll(file, "group: ab}", "group: ab, persistence: 9}")
	surge := ApplyOptions{BatchOptions: BatchOptions{Surge: 1}}

	// No template or processor in [groups.ab]: refused, nothing changed.
	restartsBefore := len(e.callsLike("restart kato@"))
	_, err := e.applyFile(t, changed, surge)
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "--surge" || fe.Value != "1" || !strings.Contains(fe.Rule, "[groups.ab] names a template or processor") {
		t.Fatalf("apply --surge of a group without a template: %v", err)
	}
	reg, _ := e.m.Registry.Load()
	if reg.Instances["a"].Parameters["persistence"] == 9 || len(ff.calls) != 0 || len(e.callsLike("restart kato@")) != restartsBefore {
		t.Fatalf("a refused apply changed something: persistence %v, runtime calls %v", reg.Instances["a"].Parameters["persistence"], ff.calls)
	}

	e.m.Config.Templates = map[string]*config.Entry{"t": {Name: "Extra", Set: map[string]bool{"name": true}}}
	e.m.Config.Groups["ab"] = config.Group{Front: 9000, Template: "t"}
	var registeredAtFirstDrain bool
	e.m.FrontAdmin = func(string) front.Runtime {
		return drainHook{fakeFront: ff, first: func() {
			reg, _ := e.m.Registry.Load()
			registeredAtFirstDrain = reg.Instances["ab-surge-1"] != nil
		}}
	}
	res, err := e.applyFile(t, changed, surge)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 3 || len(res.Failed) != 0 {
		t.Errorf("apply result done %v, failed %+v", res.Done, res.Failed)
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
	reg, _ = e.m.Registry.Load()
	if reg.Instances["ab-surge-1"] != nil {
		t.Error("the extra member is still registered after the apply")
	}
	if reg.Instances["c"].Parameters["persistence"] != 9 {
		t.Errorf("c's persistence after the apply: %v", reg.Instances["c"].Parameters["persistence"])
	}
}

// TestGroupSurgeIsTheDefault: with SurgeOfGroup, a roll (restart --group)
// and an apply's roll take the group's own surge; a surge of 0 given on
// the command line wins over it.
func TestGroupSurgeIsTheDefault(t *testing.T) {
	e, ff := newFrontEnv(t)
	e.sd.files["kato-group@.target"] = true
	e.m.Config.Templates = map[string]*config.Entry{"t": {Name: "Extra", Set: map[string]bool{"name": true}}}
	e.m.Config.Groups["ab"] = config.Group{Front: 9000, Template: "t", Surge: 1}
	file := "instances:\n  - {id: a, port: 8001, group: ab}\n  - {id: b, port: 8002, group: ab}\n"
	if _, err := e.applyFile(t, file, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	ff.up = []string{"a", "b", "ab-surge-1"}
	ctx := context.Background()

	for _, tc := range []struct {
		name  string
		surge int
		want  []string
	}{
		{"the group's", SurgeOfGroup, []string{"drain a", "drain b", "ready a", "ready b", "drain ab-surge-1"}},
		{"none given", 0, []string{"drain a", "ready a", "drain b", "ready b"}},
	} {
		t.Run("roll, "+tc.name, func(t *testing.T) {
			ff.calls = nil
			if _, err := e.m.RollGroup(ctx, "ab", RollOptions{Surge: tc.surge, MaxUnavailable: 1, Timeout: 200 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			if !sameCalls(ff.calls, tc.want) {
				t.Errorf("runtime calls %v, want %v", ff.calls, tc.want)
			}
		})
	}

	ff.calls = nil
	changed := strings.ReplaceAll(file, "group: ab}", "group: ab, persistence: 9}")
	if _, err := e.applyFile(t, changed, ApplyOptions{BatchOptions: BatchOptions{Surge: SurgeOfGroup}}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"drain a", "ready a", "drain b", "ready b", "drain ab-surge-1"}; !slices.Equal(ff.calls, want) {
		t.Errorf("apply with the group's surge: runtime calls %v, want %v", ff.calls, want)
	}
	if reg, _ := e.m.Registry.Load(); reg.Instances["ab-surge-1"] != nil {
		t.Error("the extra member is still registered after the apply")
	}
}

// sameCalls reports whether got holds the calls of want, those of a batch
// of members taken out together in any order.
func sameCalls(got, want []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) && (len(got) == 0 || got[len(got)-1] == want[len(want)-1])
}

// TestApplyPrunesWithTheGroupsSurge: an apply that prunes an instance,
// with the group's own surge asked for (as apply asks by default), removes
// it: a step that removes has no wanted instance to read a group from.
func TestApplyPrunesWithTheGroupsSurge(t *testing.T) {
	e, _ := newFrontEnv(t)
	e.sd.files["kato-group@.target"] = true
	two := "instances:\n  - {id: a, port: 8001, group: ab}\n  - {id: b, port: 8002, group: ab}\n"
	if _, err := e.applyFile(t, two, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	one := "instances:\n  - {id: a, port: 8001, group: ab}\n"
	if _, err := e.applyFile(t, one, ApplyOptions{Prune: true, BatchOptions: BatchOptions{Surge: SurgeOfGroup}}); err != nil {
		t.Fatal(err)
	}
	if reg, _ := e.m.Registry.Load(); reg.Instances["b"] != nil || reg.Instances["a"] == nil {
		t.Errorf("instances after the prune: %v", reg.Instances)
	}
}
