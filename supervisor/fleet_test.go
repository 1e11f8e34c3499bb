package supervisor

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// TestSampleOneBatchedQuery: a sample reads instances and workers with one
// batched systemd call and no per-unit call, and reports what systemd and
// the sockets say: up, ready, restarts, memory, CPU, start time.
func TestSampleOneBatchedQuery(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a", Name: "A"})
	e.start(t, StartRequest{ID: "b", Name: "B"})
	e.start(t, StartRequest{ID: "c", Name: "C"})
	started := time.Now().Add(-90 * time.Second).Truncate(time.Microsecond)
	e.sd.set("kato@a.service", func(u *UnitState) {
		u.NRestarts, u.MemoryCurrent, u.CPUUsageNSec, u.ActiveSince = 2, 7<<20, 1500000000, started
	})
	// b runs but no longer listens; c has failed.
	var bPort int
	views, err := e.m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bPort = views[1].APIPort
	e.ports.close(bPort)
	e.sd.set("kato@c.service", func(u *UnitState) { u.ActiveState, u.SubState, u.NRestarts, u.MainPID = "failed", "failed", 5, 0 })
	e.sd.set("kg-worker@1.service", func(u *UnitState) { u.ActiveState, u.SubState, u.MainPID, u.NRestarts = "active", "running", 77, 1 })
	e.sd.set("kg-worker@2.service", func(u *UnitState) { u.ActiveState, u.SubState = "activating", "auto-restart" })
	before := len(e.sd.callLog())
	e.sd.mu.Lock()
	e.sd.unitCalls = 0
	e.sd.mu.Unlock()

	s, err := e.m.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	calls := e.sd.callLog()[before:]
	if want := []string{"properties kato@*.service kg-worker@*.service"}; !slices.Equal(calls, want) {
		t.Errorf("systemd calls %q, want %q", calls, want)
	}
	if e.sd.unitCalls != 0 {
		t.Errorf("%d per-unit reads, want none", e.sd.unitCalls)
	}
	if len(s.Instances) != 3 {
		t.Fatalf("instances %+v", s.Instances)
	}
	a, b, c := s.Instances[0], s.Instances[1], s.Instances[2]
	if a.ID != "a" || a.Name != "A" || !a.Up || !a.Ready || a.Restarts != 2 || a.MemoryBytes != 7<<20 || a.CPUSeconds != 1.5 ||
		!a.Since.Equal(started) || a.UptimeSeconds < 89 || a.Processor != config.DefaultProcessor {
		t.Errorf("a = %+v", a)
	}
	// systemd does not account b's memory: /proc's figure is taken.
	if !b.Up || b.Ready || b.MemoryBytes != 42<<20 {
		t.Errorf("b, running but not listening: %+v", b)
	}
	if c.Up || c.Ready || c.Restarts != 5 || c.MemoryBytes != 0 || c.CPUSeconds != 0 || c.State() != "failed" {
		t.Errorf("c = %+v", c)
	}
	if len(s.Workers) != 2 {
		t.Fatalf("workers %+v", s.Workers)
	}
	w1, w2 := s.Workers[0], s.Workers[1]
	if w1.WorkerID != 1 || !w1.Up || w1.PID != 77 || w1.Restarts != 1 || w2.WorkerID != 2 || w2.Up || !strings.HasPrefix(w2.ActiveState, "activating") {
		t.Errorf("workers %+v", s.Workers)
	}
}
