package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tklauser/go-sysconf"
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

// HostProcesses reads processes from /proc: for every process its cgroup
// file, and for those of the units asked for their stat file, one read
// each.
type HostProcesses struct {
	// ProcRoot is the proc mount; empty means /proc.
	ProcRoot string
}

// procStat is what ByUnit takes from /proc/PID/stat.
type procStat struct {
	ppid         int32
	utime, stime uint64 // clock ticks
	start        uint64 // clock ticks after boot
	rssPages     uint64
}

// ByUnit implements Processes.
func (h HostProcesses) ByUnit(ctx context.Context, units []string) (map[string]UnitProcesses, error) {
	want := make(map[string]bool, len(units))
	for _, u := range units {
		want[u] = true
	}
	root := h.ProcRoot
	if root == "" {
		root = "/proc"
	}
	dir, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	members := make(map[string][]int32)
	stats := make(map[int32]procStat)
	unitOf := make(map[int32]string)
	for _, e := range dir {
		pid, err := strconv.ParseInt(e.Name(), 10, 32)
		if err != nil || pid <= 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := filepath.Join(root, e.Name())
		unit := cgroupUnit(filepath.Join(p, "cgroup"), want)
		if unit == "" {
			continue
		}
		st, err := readProcStat(filepath.Join(p, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		members[unit] = append(members[unit], int32(pid))
		stats[int32(pid)] = st
		unitOf[int32(pid)] = unit
	}
	if len(members) == 0 {
		return map[string]UnitProcesses{}, nil
	}
	boot, err := bootTime(root)
	if err != nil {
		return nil, err
	}
	tick, page := clockTicks(), uint64(os.Getpagesize())
	out := make(map[string]UnitProcesses, len(members))
	for unit, pids := range members {
		var up UnitProcesses
		var mainStart uint64
		for _, pid := range pids {
			st := stats[pid]
			up.PIDs = append(up.PIDs, pid)
			up.RSS += st.rssPages * page
			up.CPU += float64(st.utime+st.stime) / tick
			if unitOf[st.ppid] == unit {
				continue
			}
			if up.MainPID == 0 || st.start < mainStart {
				up.MainPID, mainStart = pid, st.start
			}
		}
		if up.MainPID != 0 {
			up.Started = boot.Add(time.Duration(float64(mainStart) / tick * float64(time.Second))).Truncate(time.Millisecond)
		}
		out[unit] = up
	}
	return out, nil
}

// readProcStat reads the fields ByUnit needs from /proc/PID/stat: "pid
// (comm) state ppid …", comm in parentheses that may hold any character,
// so the fields are counted from the last ')'. See proc_pid_stat(5).
func readProcStat(path string) (procStat, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("%s: no command name", path)
	}
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15,
	// starttime 22, rss 24.
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("%s: %d fields after the command name, want at least 22", path, len(f))
	}
	var st procStat
	var nums [5]uint64
	for k, idx := range []int{1, 11, 12, 19, 21} {
		v, err := strconv.ParseUint(f[idx], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("%s: field %d: %w", path, idx+3, err)
		}
		nums[k] = v
	}
	st.ppid, st.utime, st.stime, st.start, st.rssPages = int32(nums[0]), nums[1], nums[2], nums[3], nums[4]
	return st, nil
}

// bootTime reads when the host booted from the btime line of /proc/stat.
func bootTime(root string) (time.Time, error) {
	f, err := os.Open(filepath.Join(root, "stat"))
	if err != nil {
		return time.Time{}, fmt.Errorf("read boot time: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("read boot time: %s/stat: btime %q: %w", root, v, err)
			}
			return time.Unix(s, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("read boot time: %s/stat has no btime line", root)
}

// clockTicks is the unit of /proc's times per second (USER_HZ).
func clockTicks() float64 {
	if t, err := sysconf.Sysconf(sysconf.SC_CLK_TCK); err == nil && t > 0 {
		return float64(t)
	}
	return 100
}

// cgroupUnit returns the wanted unit whose cgroup the process is in, by the
// last component of any hierarchy's path (cgroup v1 and v2 alike).
func cgroupUnit(path string, want map[string]bool) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "" // the process has exited
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
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
