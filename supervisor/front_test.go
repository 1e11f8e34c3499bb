package supervisor

import (
	"context"
	"slices"
	"testing"
	"time"
)

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
