package supervisor

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// writeCgroup writes a cgroup's memory.current and cpu.stat under root, as
// the kernel shows them; a negative figure leaves its file out, as a cgroup
// without that controller has none.
func writeCgroup(t *testing.T, root, path string, mem int64, cpuUsec int64) {
	t.Helper()
	dir := filepath.Join(root, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if mem >= 0 {
		if err := os.WriteFile(filepath.Join(dir, "memory.current"), []byte(strconv.FormatInt(mem, 10)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if cpuUsec >= 0 {
		stat := "usage_usec " + strconv.FormatInt(cpuUsec, 10) + "\nuser_usec 1\nsystem_usec 2\n"
		if err := os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// sdCalls is what systemd was asked since the counters were last taken.
type sdCalls struct{ list, service, unit int }

func (f *fakeSystemd) takeCalls() sdCalls {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := sdCalls{f.listCalls, f.serviceCalls, f.unitCalls}
	f.listCalls, f.serviceCalls, f.unitCalls = 0, 0, 0
	return c
}

// watchedEnv is a test environment whose manager samples through a
// ServiceCache subscribed to the fake's signals, and reads cgroups from a
// directory of the test's.
func watchedEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	e := newTestEnv(t)
	root := t.TempDir()
	e.m.CgroupRoot = root
	e.m.Services = NewServiceCache()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go e.m.Services.Watch(ctx, e.sd, 10*time.Millisecond, nil)
	waitWatching(t, e.m.Services, true)
	return e, root
}

func waitWatching(t *testing.T, c *ServiceCache, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Watching() != want {
		if time.Now().After(deadline) {
			t.Fatalf("the cache's watching stays %v", !want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSampleOneBatchedQuery: a sample reads instances and workers with one
// systemd call (the listing) and, when nothing changed, no per-unit call, and
// reports what systemd, the cgroups and the sockets say: up, ready,
// restarts, memory, CPU, start time.
func TestSampleOneBatchedQuery(t *testing.T) {
	ctx := context.Background()
	e, root := watchedEnv(t)
	e.start(t, StartRequest{ID: "a", Name: "A"})
	e.start(t, StartRequest{ID: "b", Name: "B"})
	e.start(t, StartRequest{ID: "c", Name: "C"})
	started := time.Now().Add(-90 * time.Second).Truncate(time.Microsecond)
	const cgA = "/system.slice/system-kato.slice/kato@a.service"
	writeCgroup(t, root, cgA, 7<<20, 1500000)
	// b's cgroup has no memory controller: /proc's figure is taken.
	writeCgroup(t, root, "/system.slice/system-kato.slice/kato@b.service", -1, 250000)
	e.sd.set("kato@a.service", func(u *UnitState) { u.NRestarts, u.ActiveSince, u.ControlGroup = 2, started, cgA })
	e.sd.set("kato@b.service", func(u *UnitState) { u.ControlGroup = "/system.slice/system-kato.slice/kato@b.service" })
	// b runs but no longer listens; c has failed.
	views, err := e.m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.ports.close(views[1].APIPort)
	e.sd.set("kato@c.service", func(u *UnitState) { u.ActiveState, u.SubState, u.NRestarts, u.MainPID = "failed", "failed", 5, 0 })
	e.sd.set("kg-worker@1.service", func(u *UnitState) { u.ActiveState, u.SubState, u.MainPID, u.NRestarts = "active", "running", 77, 1 })
	e.sd.set("kg-worker@2.service", func(u *UnitState) { u.ActiveState, u.SubState = "activating", "auto-restart" })

	// The first sample reads each unit once: the cache is empty.
	e.sd.takeCalls()
	if _, err := e.m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.sd.takeCalls(); got != (sdCalls{list: 1, service: 5}) {
		t.Errorf("first sample: systemd calls %+v, want one listing and one read of each of the 5 units", got)
	}
	// Nothing changed: one listing, nothing per unit.
	var s *Sample
	for range 3 {
		if s, err = e.m.Sample(ctx); err != nil {
			t.Fatal(err)
		}
		if got := e.sd.takeCalls(); got != (sdCalls{list: 1}) {
			t.Errorf("nothing changed: systemd calls %+v, want only the one listing", got)
		}
	}
	if len(s.Instances) != 3 {
		t.Fatalf("instances %+v", s.Instances)
	}
	a, b, c := s.Instances[0], s.Instances[1], s.Instances[2]
	if a.ID != "a" || a.Name != "A" || !a.Up || !a.Ready || a.Restarts != 2 || a.MemoryBytes != 7<<20 || a.CPUSeconds != 1.5 ||
		!a.Since.Equal(started) || a.UptimeSeconds < 89 || a.Processor != config.DefaultProcessor {
		t.Errorf("a = %+v", a)
	}
	if !b.Up || b.Ready || b.MemoryBytes != 42<<20 || b.CPUSeconds != 0.25 {
		t.Errorf("b, running but not listening, memory not accounted: %+v", b)
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
	// Memory and CPU are read afresh on every sample, from the cgroup.
	writeCgroup(t, root, cgA, 9<<20, 2000000)
	if s, err = e.m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if a := s.Instances[0]; a.MemoryBytes != 9<<20 || a.CPUSeconds != 2 {
		t.Errorf("a after more work: memory %d, CPU %v", a.MemoryBytes, a.CPUSeconds)
	}
	e.sd.takeCalls()
}

// TestSampleFollowsSignals: a unit systemd signals as changed is read once
// more, and only that one; a new unit is read when it appears; a lost
// subscription makes every sample read every unit until it is back.
func TestSampleFollowsSignals(t *testing.T) {
	ctx := context.Background()
	e, _ := watchedEnv(t)
	e.start(t, StartRequest{ID: "a", Name: "A"})
	e.start(t, StartRequest{ID: "b", Name: "B"})
	if _, err := e.m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	e.sd.takeCalls()

	// A crash and an automatic restart: a new main process, one restart.
	restarted := time.Now().Truncate(time.Microsecond)
	e.sd.set("kato@a.service", func(u *UnitState) { u.NRestarts, u.MainPID, u.ActiveSince = 1, 4242, restarted })
	s, err := e.m.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.sd.takeCalls(); got != (sdCalls{list: 1, service: 1}) {
		t.Errorf("after a's restart: systemd calls %+v, want the listing and one read of a", got)
	}
	if a := s.Instances[0]; a.Restarts != 1 || a.PID != 4242 || !a.Since.Equal(restarted) {
		t.Errorf("a after its restart: %+v", a)
	}
	if _, err := e.m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.sd.takeCalls(); got != (sdCalls{list: 1}) {
		t.Errorf("steady again: systemd calls %+v", got)
	}

	// A new instance is read once, when it first appears.
	e.start(t, StartRequest{ID: "n", Name: "New"})
	e.sd.takeCalls()
	if s, err = e.m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.sd.takeCalls(); got != (sdCalls{list: 1, service: 1}) {
		t.Errorf("with a new instance: systemd calls %+v", got)
	}
	if len(s.Instances) != 3 || !s.Instances[2].Up || s.Instances[2].ID != "n" {
		t.Errorf("the new instance: %+v", s.Instances)
	}

	// Without a subscription nothing cached can be trusted.
	e.sd.loseWatch()
	waitWatching(t, e.m.Services, false)
	// The cache subscribes again after its retry delay; until then, or
	// if the sample beats it, every unit is read.
	if _, err := e.m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.sd.takeCalls(); got.list != 1 || got.service != 3 && got.service != 0 {
		t.Errorf("after the subscription was lost: systemd calls %+v", got)
	}
	// Under the new subscription the cache fills again and follows the
	// signals.
	waitWatching(t, e.m.Services, true)
	if _, err := e.m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.sd.takeCalls(); got != (sdCalls{list: 1, service: 3}) {
		t.Errorf("first sample under the new subscription: systemd calls %+v", got)
	}
	e.sd.set("kato@b.service", func(u *UnitState) { u.NRestarts = 3 })
	if s, err = e.m.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if b := s.Instances[1]; b.Restarts != 3 {
		t.Errorf("b's restarts after the subscription came back: %d", b.Restarts)
	}
	if got := e.sd.takeCalls(); got != (sdCalls{list: 1, service: 1}) {
		t.Errorf("after b's change: systemd calls %+v", got)
	}
}

// TestSampleWithoutCache: a manager with no ServiceCache reads every unit
// on every sample, and still gets it right.
func TestSampleWithoutCache(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a", Name: "A"})
	e.sd.set("kato@a.service", func(u *UnitState) { u.NRestarts = 4 })
	e.sd.takeCalls()
	for range 2 {
		s, err := e.m.Sample(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Instances[0].Restarts != 4 {
			t.Errorf("restarts %d", s.Instances[0].Restarts)
		}
	}
	if got := e.sd.takeCalls(); got != (sdCalls{list: 2, service: 2}) {
		t.Errorf("systemd calls %+v", got)
	}
}

// TestReadCgroup: memory.current and cpu.stat's usage_usec, each only when
// its file is there; a path that is not a cgroup's reads nothing.
func TestReadCgroup(t *testing.T) {
	root := t.TempDir()
	writeCgroup(t, root, "/x.slice/u.service", 1234, 5000000)
	if u := ReadCgroup(root, "/x.slice/u.service"); u != (CgroupUsage{MemoryBytes: 1234, MemoryOK: true, CPU: 5 * time.Second, CPUOK: true}) {
		t.Errorf("usage %+v", u)
	}
	writeCgroup(t, root, "/x.slice/nomem.service", -1, 7)
	if u := ReadCgroup(root, "/x.slice/nomem.service"); u.MemoryOK || !u.CPUOK || u.CPU != 7*time.Microsecond {
		t.Errorf("usage without memory controller %+v", u)
	}
	for _, p := range []string{"", "relative", "/../etc", "/gone.service"} {
		if u := ReadCgroup(root, p); u.MemoryOK || u.CPUOK {
			t.Errorf("ReadCgroup(%q) = %+v", p, u)
		}
	}
}

// TestSampleRemembersTheListeningSocket: with this host's ports, a sample
// remembers the socket an instance's main process (here this test's
// process) listens on, and the next reads no socket table; a listener
// moved to another port is not reported ready, and one back on the API
// port is; a restart (another main start) is read again.
func TestSampleRemembersTheListeningSocket(t *testing.T) {
	ctx := context.Background()
	e, _ := watchedEnv(t)
	e.start(t, StartRequest{ID: "a", Name: "A"})
	// The instance's API port becomes one this test can listen on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := e.m.Registry.Update(func(r *config.Registry) error {
		r.Instances["a"].APIPort = port
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { ln.Close() }()
	started := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	e.sd.set("kato@a.service", func(u *UnitState) { u.MainPID, u.ActiveSince = uint32(os.Getpid()), started })
	e.m.Ports = HostPorts{}
	var reads int
	e.m.Services.listening.read = countingRead(&reads)
	ready := func() bool {
		t.Helper()
		s, err := e.m.Sample(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s.Instances[0].Ready
	}
	first, second := ready(), ready()
	if !first || !second || reads != 1 {
		t.Fatalf("two samples: read the sockets %d times, want ready both times after one read", reads)
	}
	ln.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if ready() {
		t.Errorf("ready after its listener moved from port %d to %s", port, other.Addr())
	}
	if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Fatal(err)
	}
	if !ready() {
		t.Errorf("not ready once listening again on port %d", port)
	}
	before := reads
	e.sd.set("kato@a.service", func(u *UnitState) { u.ActiveSince = started.Add(time.Second) })
	if !ready() || reads != before+1 {
		t.Errorf("restarted: read the sockets %d times, want 1", reads-before)
	}
}
