package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	psnet "github.com/shirou/gopsutil/v3/net"
)

// Ports reports which TCP ports are listening on this host.
type Ports interface {
	// Listening maps each listening TCP port to the pid holding it (0 when
	// the pid cannot be seen).
	Listening(ctx context.Context) (map[int]int32, error)
	// ListeningBy returns the TCP ports one process listens on: far cheaper
	// than Listening, which looks at every process.
	ListeningBy(ctx context.Context, pid int32) (map[int]bool, error)
	// Bound returns the TCP ports something listens on, without looking
	// for the processes: what port allocation needs, and far cheaper than
	// Listening.
	Bound(ctx context.Context) (map[int]bool, error)
	// ListeningByEach returns the TCP ports each of the processes listens
	// on, in its own network namespace, as ListeningBy does for one but
	// reading each namespace's socket table once for all of them. A
	// process that is gone listens on nothing.
	ListeningByEach(ctx context.Context, pids []int32) (map[int32]map[int]bool, error)
}

// HostPorts reads listening sockets of the host through gopsutil.
type HostPorts struct{}

// Listening implements Ports.
func (HostPorts) Listening(ctx context.Context) (map[int]int32, error) {
	conns, err := psnet.ConnectionsWithContext(ctx, "tcp")
	if err != nil {
		return nil, fmt.Errorf("list listening tcp sockets: %w", err)
	}
	out := make(map[int]int32)
	for _, c := range conns {
		if c.Status != "LISTEN" {
			continue
		}
		if pid, seen := out[int(c.Laddr.Port)]; seen && pid != 0 {
			continue
		}
		out[int(c.Laddr.Port)] = c.Pid
	}
	return out, nil
}

// ListeningBy implements Ports.
func (HostPorts) ListeningBy(ctx context.Context, pid int32) (map[int]bool, error) {
	conns, err := psnet.ConnectionsPidWithContext(ctx, "tcp", pid)
	if err != nil {
		return nil, fmt.Errorf("list tcp sockets of pid %d: %w", pid, err)
	}
	out := make(map[int]bool)
	for _, c := range conns {
		if c.Status == "LISTEN" {
			out[int(c.Laddr.Port)] = true
		}
	}
	return out, nil
}

// Bound implements Ports by reading the kernel's socket tables of this
// network namespace, /proc/net/tcp and /proc/net/tcp6.
func (HostPorts) Bound(ctx context.Context) (map[int]bool, error) {
	out := make(map[int]bool)
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if errors.Is(err, fs.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return nil, fmt.Errorf("list listening tcp sockets: %w", err)
		}
		if err := listeningPorts(data, out); err != nil {
			return nil, fmt.Errorf("list listening tcp sockets: %s: %w", table, err)
		}
	}
	return out, nil
}

// ListeningByEach implements Ports from /proc: per network namespace its
// tcp and tcp6 tables, once, for the inodes of the listening sockets; per
// process the socket inodes among its file descriptors.
func (h HostPorts) ListeningByEach(ctx context.Context, pids []int32) (map[int32]map[int]bool, error) {
	out := make(map[int32]map[int]bool, len(pids))
	tables := map[string]map[uint64]int{} // network namespace -> listening inode -> port
	for _, pid := range pids {
		out[pid] = map[int]bool{}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		proc := "/proc/" + strconv.Itoa(int(pid))
		ns, err := os.Readlink(proc + "/ns/net")
		if err != nil {
			continue // gone
		}
		inodes, ok := tables[ns]
		if !ok {
			inodes = map[uint64]int{}
			for _, table := range []string{proc + "/net/tcp", proc + "/net/tcp6"} {
				data, err := os.ReadFile(table)
				if err != nil {
					continue // gone, or no IPv6
				}
				if err := listeningInodes(data, inodes); err != nil {
					return nil, fmt.Errorf("list listening tcp sockets: %s: %w", table, err)
				}
			}
			tables[ns] = inodes
		}
		fds, err := os.ReadDir(proc + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(proc + "/fd/" + fd.Name())
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			inode, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
			if err != nil {
				continue
			}
			if port, ok := inodes[inode]; ok {
				out[pid][port] = true
			}
		}
	}
	return out, nil
}

// tcpListen is the state of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// listeningPorts adds the local ports of the listening sockets of a
// /proc/net/tcp table to out.
func listeningPorts(table []byte, out map[int]bool) error {
	return eachListener(table, func(port int, _ []string) error {
		out[port] = true
		return nil
	})
}

// listeningInodes adds the inodes of the listening sockets of a
// /proc/net/tcp table to out, with their local ports. The inode is the
// tenth field of a line.
func listeningInodes(table []byte, out map[uint64]int) error {
	return eachListener(table, func(port int, f []string) error {
		if len(f) < 10 {
			return fmt.Errorf("no inode in %q", strings.Join(f, " "))
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return fmt.Errorf("unreadable inode %q", f[9])
		}
		out[inode] = port
		return nil
	})
}

// eachListener calls fn with the local port and the fields of each
// listening socket of a /proc/net/tcp table. A line reads "sl
// local_address rem_address st ...", local_address as ADDR:PORT in
// hexadecimal.
func eachListener(table []byte, fn func(port int, fields []string) error) error {
	lines := strings.Split(string(table), "\n")
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != tcpListen {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		port, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if i < 0 || err != nil {
			return fmt.Errorf("unreadable local address %q", f[1])
		}
		if err := fn(int(port), f); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoFreePort is returned when every port of a range is taken.
var ErrNoFreePort = errors.New("no free port")

// AllocatePort returns the first port from want up to last that taken does
// not claim. A want above last searches up to 65535 instead, so an explicit
// port outside the configured range still moves to the next free one.
func AllocatePort(want, last int, taken func(int) bool) (int, error) {
	if want > last {
		last = 65535
	}
	for p := want; p <= last; p++ {
		if !taken(p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("ports %d-%d are all in use or reserved: %w", want, last, ErrNoFreePort)
}
