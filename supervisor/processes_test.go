package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// writeProc writes a process's cgroup and stat files under a proc root as
// the kernel shows them.
func writeProc(t *testing.T, root string, pid, ppid int, comm, cgroup string, utime, stime, start, rss uint64) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::"+cgroup+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 %d %d 0 0 20 0 3 0 %d 1000000 %d 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		pid, comm, ppid, pid, pid, utime, stime, start, rss)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHostProcessesByUnit reads a proc tree once: the units' processes
// grouped, the main process the one whose parent is outside the unit,
// memory and CPU summed over the unit, the start from the main process's
// start after boot; processes of other units and units not asked for are
// left out.
func TestHostProcessesByUnit(t *testing.T) {
	root := t.TempDir()
	const btime = 1_700_000_000
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte("cpu  1 2 3 4\nbtime 1700000000\nprocesses 9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const a = "/system.slice/system-kato.slice/kato@a.service"
	// The main process's command holds a space and a parenthesis, as
	// comm may.
	writeProc(t, root, 100, 1, "fake proc) x", a, 300, 100, 12345, 10)
	writeProc(t, root, 101, 100, "child", a, 50, 50, 20000, 5)
	writeProc(t, root, 200, 1, "other", "/system.slice/system-kato.slice/kato@b.service", 1, 1, 1, 1)
	writeProc(t, root, 300, 1, "sshd", "/system.slice/ssh.service", 1, 1, 1, 1)
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := HostProcesses{ProcRoot: root}.ByUnit(context.Background(), []string{"kato@a.service", "kato@c.service"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("units %v, want only kato@a.service", got)
	}
	p := got["kato@a.service"]
	tick := clockTicks()
	wantStart := time.Unix(btime, 0).Add(time.Duration(12345 / tick * float64(time.Second))).Truncate(time.Millisecond)
	page := uint64(os.Getpagesize())
	if p.MainPID != 100 || len(p.PIDs) != 2 || p.RSS != 15*page || p.CPU != 500/tick || !p.Started.Equal(wantStart) {
		t.Errorf("got %+v, want main 100, pids 100 and 101, RSS %d, CPU %v, started %v", p, 15*page, 500/tick, wantStart)
	}
}

// askedProcesses records the units each ByUnit is asked about.
type askedProcesses struct {
	Processes
	asked [][]string
}

func (p *askedProcesses) ByUnit(ctx context.Context, units []string) (map[string]UnitProcesses, error) {
	p.asked = append(p.asked, slices.Clone(units))
	return p.Processes.ByUnit(ctx, units)
}

// TestListLooksForProcessesOfLiveUnitsOnly: list asks for the processes of
// the units the listing shows not inactive, and with none of them the
// host's processes are not read at all.
func TestListLooksForProcessesOfLiveUnitsOnly(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a", Name: "A"})
	e.start(t, StartRequest{ID: "b", Name: "B"})
	e.sd.set("kato@b.service", func(u *UnitState) { u.ActiveState, u.SubState = "inactive", "dead" })
	asked := &askedProcesses{Processes: e.m.Processes}
	e.m.Processes = asked
	if _, err := e.m.List(ctx); err != nil {
		t.Fatal(err)
	}
	if len(asked.asked) != 1 || !slices.Equal(asked.asked[0], []string{"kato@a.service"}) {
		t.Errorf("processes asked for %v, want [[kato@a.service]]", asked.asked)
	}
	// No unit asked: nothing is read, not even the proc mount.
	got, err := HostProcesses{ProcRoot: filepath.Join(t.TempDir(), "absent")}.ByUnit(ctx, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("no unit asked: %v, %v; want nothing read", got, err)
	}
}
