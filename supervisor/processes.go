package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tklauser/go-sysconf"
	"golang.org/x/sys/unix"
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

// ByUnit implements Processes. Each process costs three system calls for
// its cgroup file (open, read, close, into one buffer for all) and, if it
// is one of the units', three more for its stat file.
func (h HostProcesses) ByUnit(ctx context.Context, units []string) (map[string]UnitProcesses, error) {
	if len(units) == 0 {
		return map[string]UnitProcesses{}, nil
	}
	want := make(map[string]bool, len(units))
	for _, u := range units {
		want[u] = true
	}
	root := h.ProcRoot
	if root == "" {
		root = "/proc"
	}
	names, err := readDirNames(root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	members := make(map[string][]int32)
	stats := make(map[int32]procStat)
	unitOf := make(map[int32]string)
	var r procReader
	for _, name := range names {
		pid, err := strconv.ParseInt(name, 10, 32)
		if err != nil || pid <= 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := root + "/" + name
		data, err := r.read(p + "/cgroup")
		if err != nil {
			continue // exited meanwhile
		}
		unit := cgroupUnitOf(data, want)
		if unit == "" {
			continue
		}
		data, err = r.read(p + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		st, err := parseProcStat(data)
		if err != nil {
			return nil, fmt.Errorf("%s/stat: %w", p, err)
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

// readDirNames returns the names in a directory, unsorted and without a
// look at each (os.ReadDir sorts them and makes an entry of each).
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// procReader reads small /proc files into one buffer, reused from file to
// file: open, one read, close. A file of /proc that is one record (stat,
// cgroup) comes whole in one read whenever the buffer is larger, so a
// short read is its end; os.ReadFile makes six calls of each (with an
// fstat, a poller registration and a read of the end).
type procReader struct {
	buf []byte
}

// read returns the file's content, valid until the next read.
func (r *procReader) read(path string) ([]byte, error) {
	if r.buf == nil {
		r.buf = make([]byte, 4096)
	}
	fd, err := openRead(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		m, err := unix.Read(fd, r.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		n += m
		if m == 0 || n < len(r.buf) {
			return r.buf[:n], nil
		}
		r.buf = append(r.buf, make([]byte, len(r.buf))...)
	}
}

func openRead(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// parseProcStat parses /proc/PID/stat: "pid (comm) state ppid …", comm in
// parentheses that may hold any character, so the fields are counted from
// the last ')'. See proc_pid_stat(5).
func parseProcStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, errors.New("no command name")
	}
	// Field 3 (state) is the first after the command name: ppid is field
	// 4, utime 14, stime 15, starttime 22, rss 24.
	var nums [5]uint64
	want := [5]int{4, 14, 15, 22, 24}
	k, field := 0, 2
	rest := data[i+1:]
	for k < len(want) {
		rest = bytes.TrimLeft(rest, " \t\n")
		if len(rest) == 0 {
			return procStat{}, fmt.Errorf("%d fields, want at least 24", field)
		}
		field++
		end := bytes.IndexAny(rest, " \t\n")
		if end < 0 {
			end = len(rest)
		}
		if field == want[k] {
			v, err := strconv.ParseUint(string(rest[:end]), 10, 64)
			if err != nil {
				return procStat{}, fmt.Errorf("field %d: %w", field, err)
			}
			nums[k] = v
			k++
		}
		rest = rest[end:]
	}
	return procStat{ppid: int32(nums[0]), utime: nums[1], stime: nums[2], start: nums[3], rssPages: nums[4]}, nil
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
	var r procReader
	data, err := r.read(path)
	if err != nil {
		return "" // the process has exited
	}
	return cgroupUnitOf(data, want)
}

// cgroupUnitOf is cgroupUnit of the content of /proc/PID/cgroup.
func cgroupUnitOf(data []byte, want map[string]bool) string {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		// hierarchy-ID:controllers:path
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		j := bytes.IndexByte(line[i+1:], ':')
		if j < 0 {
			continue
		}
		for _, elem := range bytes.Split(line[i+1+j+1:], []byte("/")) {
			if want[string(elem)] {
				return string(elem)
			}
		}
	}
	return ""
}
