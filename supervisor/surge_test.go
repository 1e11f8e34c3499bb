package supervisor

import (
	"errors"
	"slices"
	"strings"
	"testing"

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
