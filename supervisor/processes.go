package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// UnitProcesses is what one unit's processes add up to.
type UnitProcesses struct {
	MainPID int32     // the process whose parent is outside the unit
	PIDs    []int32   // every process in the unit's cgroup
	RSS     uint64    // resident memory of all of them, in bytes
	CPU     float64   // CPU time of all of them, user and system, in seconds
	Started time.Time // when the main process started
}

// Processes finds the processes that belong to systemd units.
type Processes interface {
	// ByUnit scans the host's processes once and groups those of the named
	// units; units with no process are absent from the result.
	ByUnit(ctx context.Context, units []string) (map[string]UnitProcesses, error)
}

// HostProcesses reads processes through gopsutil and their units from
// /proc/PID/cgroup, which gopsutil does not expose.
type HostProcesses struct {
	// ProcRoot is the proc mount; empty means /proc.
	ProcRoot string
}

// ByUnit implements Processes.
func (h HostProcesses) ByUnit(ctx context.Context, units []string) (map[string]UnitProcesses, error) {
	want := make(map[string]bool, len(units))
	for _, u := range units {
		want[u] = true
	}
	procs, err := process.ProcessesWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	root := h.ProcRoot
	if root == "" {
		root = "/proc"
	}
	members := make(map[string][]*process.Process)
	unitOf := make(map[int32]string)
	for _, p := range procs {
		unit := cgroupUnit(filepath.Join(root, fmt.Sprint(p.Pid), "cgroup"), want)
		if unit == "" {
			continue
		}
		members[unit] = append(members[unit], p)
		unitOf[p.Pid] = unit
	}
	out := make(map[string]UnitProcesses, len(members))
	for unit, ps := range members {
		var up UnitProcesses
		var mainCreated int64
		for _, p := range ps {
			up.PIDs = append(up.PIDs, p.Pid)
			if mem, err := p.MemoryInfoWithContext(ctx); err == nil {
				up.RSS += mem.RSS
			}
			if t, err := p.TimesWithContext(ctx); err == nil {
				up.CPU += t.User + t.System
			}
			ppid, err := p.PpidWithContext(ctx)
			if err != nil || unitOf[ppid] == unit {
				continue
			}
			created, err := p.CreateTimeWithContext(ctx)
			if err != nil {
				continue
			}
			if up.MainPID == 0 || created < mainCreated {
				up.MainPID, mainCreated = p.Pid, created
			}
		}
		if up.MainPID != 0 {
			up.Started = time.UnixMilli(mainCreated)
		}
		out[unit] = up
	}
	return out, nil
}

// cgroupUnit returns the wanted unit whose cgroup the process is in, by the
// last component of any hierarchy's path (cgroup v1 and v2 alike).
func cgroupUnit(path string, want map[string]bool) string {
	f, err := os.Open(path)
	if err != nil {
		return "" // the process has exited
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, elem := range strings.Split(parts[2], "/") {
			if want[elem] {
				return elem
			}
		}
	}
	return ""
}
