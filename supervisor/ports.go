package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	psnet "github.com/shirou/gopsutil/v4/net"

	"github.com/kato-manager/kato-manager/units"
)

// Ports reports which TCP ports are listening on this host.
type Ports interface {
	// Listening maps each listening TCP port to the pid holding it (0 when
	// the pid cannot be seen).
	Listening(ctx context.Context) (map[int]int32, error)
	// ListeningBy returns the TCP ports one process listens on: far cheaper
	// than Listening, which looks at every process.
	ListeningBy(ctx context.Context, pid int32) (map[int]bool, error)
	// InUse reports whether something on this host holds a TCP port, without
	// looking for the process: what port allocation needs, and far cheaper
	// than Listening.
	InUse(ctx context.Context, port int) (bool, error)
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

// ListeningBy implements Ports. For a process in this network namespace
// (every processor on the host network) the kernel names the listening
// sockets (see listeningSockets) and the process's open files say which are
// its; for one in another namespace that namespace's /proc tables are read.
// A process that is gone listens on nothing.
func (h HostPorts) ListeningBy(ctx context.Context, pid int32) (map[int]bool, error) {
	same, err := sameNetNamespace(pid)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return map[int]bool{}, nil // gone
	}
	if !same {
		each, err := h.ListeningByEach(ctx, []int32{pid})
		if err != nil {
			return nil, err
		}
		return each[pid], nil
	}
	out := map[int]bool{}
	inodes := socketInodes(pid)
	if len(inodes) == 0 {
		return out, nil
	}
	listening, err := listeningSockets()
	if err != nil {
		return nil, fmt.Errorf("list tcp sockets of pid %d: %w", pid, err)
	}
	for _, inode := range inodes {
		if port, ok := listening[inode]; ok {
			out[port] = true
		}
	}
	return out, nil
}

// InUse implements Ports the way the processor will meet the port: it
// binds the port on every IPv4 and every IPv6 address of this network
// namespace, and a bind refused as in use means it is taken, whichever
// address the holder is on. It costs two system calls, where reading the
// kernel's socket tables walks every socket of the host.
func (HostPorts) InUse(ctx context.Context, port int) (bool, error) {
	for _, network := range []string{"tcp4", "tcp6"} {
		host := "0.0.0.0"
		if network == "tcp6" {
			host = "::"
		}
		ln, err := new(net.ListenConfig).Listen(ctx, network, net.JoinHostPort(host, strconv.Itoa(port)))
		switch {
		case err == nil:
			ln.Close()
		case errors.Is(err, syscall.EADDRINUSE):
			return true, nil
		case network == "tcp6" && (errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL)):
			// No IPv6 here: nothing can hold the port there.
		default:
			return false, fmt.Errorf("probe tcp port %d: %w", port, err)
		}
	}
	return false, nil
}

// ListeningByEach implements Ports from /proc: per network namespace its
// tcp and tcp6 tables, once, for the inodes of the listening sockets; per
// process the socket inodes among its file descriptors. gopsutil's net
// reads a table per pid (ConnectionsPid: 4.9s for 200 listeners against
// 65ms here) or only this process's namespace (Connections), so it is not
// used for this.
func (h HostPorts) ListeningByEach(ctx context.Context, pids []int32) (map[int32]map[int]bool, error) {
	socks, err := h.listeningSockets(ctx, pids)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]map[int]bool, len(pids))
	for _, pid := range pids {
		out[pid] = map[int]bool{}
		for _, s := range socks[pid] {
			out[pid][s.port] = true
		}
	}
	return out, nil
}

// listenSocket is a listening TCP socket a process holds: the descriptor
// it holds it by, the socket's inode and its local port.
type listenSocket struct {
	fd    int
	inode uint64
	port  int
}

// listeningSockets is ListeningByEach with the descriptor and inode of
// each socket found.
func (HostPorts) listeningSockets(ctx context.Context, pids []int32) (map[int32][]listenSocket, error) {
	out := make(map[int32][]listenSocket, len(pids))
	tables := map[string]map[uint64]int{} // network namespace -> listening inode -> port
	for _, pid := range pids {
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
		fds, err := readDirNames(proc + "/fd")
		if err != nil {
			continue
		}
		for _, name := range fds {
			link, err := os.Readlink(proc + "/fd/" + name)
			if err != nil {
				continue
			}
			inode, ok := socketInode(link)
			if !ok {
				continue
			}
			fd, err := strconv.Atoi(name)
			if err != nil {
				continue
			}
			if port, ok := inodes[inode]; ok {
				out[pid] = append(out[pid], listenSocket{fd: fd, inode: inode, port: port})
			}
		}
	}
	return out, nil
}

// socketInode reads the inode of a socket from the target of its
// descriptor's link in /proc/PID/fd, "socket:[INODE]".
func socketInode(link string) (uint64, bool) {
	v, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	v, ok = strings.CutSuffix(v, "]")
	if !ok {
		return 0, false
	}
	inode, err := strconv.ParseUint(v, 10, 64)
	return inode, err == nil
}

// listenAsk asks whether a process, started at a time, listens on a port.
type listenAsk struct {
	pid     int32
	started time.Time
	port    int
}

// listenMemo answers whether processes listen on their ports, from /proc,
// remembering each listening socket it found: the process (its pid and
// start), the descriptor it holds the socket by and the socket's inode.
// A remembered answer is checked again with one readlink of that
// descriptor, which must still name the same socket (a socket's inode is
// unique while it exists, and its port does not change), and the process
// must have the same start; anything else (the socket closed, the port
// changed, the process restarted or gone, no answer remembered) is read
// again, for all such processes in one pass. A process found not
// listening is never remembered. Serve's scrapes use it, so that a scrape
// reads one link per running instance instead of every descriptor of
// every instance and the socket tables.
type listenMemo struct {
	mu   sync.Mutex
	byID map[int32]memoEntry
	// read reads the sockets of processes (nil: HostPorts.listeningSockets);
	// tests count its calls.
	read func(ctx context.Context, pids []int32) (map[int32][]listenSocket, error)
}

type memoEntry struct {
	started time.Time
	socks   []listenSocket
}

// listening returns, for each ask, whether its process listens on its
// port; entries of processes not asked about are forgotten.
func (m *listenMemo) listening(ctx context.Context, asks []listenAsk) (map[listenAsk]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[listenAsk]bool, len(asks))
	asked := make(map[int32]bool, len(asks))
	var again []int32
	for _, a := range asks {
		asked[a.pid] = true
		if e, ok := m.byID[a.pid]; ok && e.started.Equal(a.started) && holdsPort(a.pid, e.socks, a.port) {
			out[a] = true
			continue
		}
		again = append(again, a.pid)
	}
	for pid := range m.byID {
		if !asked[pid] {
			delete(m.byID, pid)
		}
	}
	if len(again) == 0 {
		return out, nil
	}
	read := m.read
	if read == nil {
		read = HostPorts{}.listeningSockets
	}
	socks, err := read(ctx, again)
	if err != nil {
		return nil, err
	}
	if m.byID == nil {
		m.byID = map[int32]memoEntry{}
	}
	for _, a := range asks {
		if out[a] {
			continue
		}
		found := socks[a.pid]
		if len(found) == 0 {
			delete(m.byID, a.pid)
			continue
		}
		m.byID[a.pid] = memoEntry{started: a.started, socks: found}
		for _, s := range found {
			if s.port == a.port {
				out[a] = true
			}
		}
	}
	return out, nil
}

// holdsPort reports whether the process still holds, by the same
// descriptor, a remembered socket on port: one readlink.
func holdsPort(pid int32, socks []listenSocket, port int) bool {
	for _, s := range socks {
		if s.port != port {
			continue
		}
		link, err := os.Readlink("/proc/" + strconv.Itoa(int(pid)) + "/fd/" + strconv.Itoa(s.fd))
		if err != nil {
			return false
		}
		if inode, ok := socketInode(link); ok && inode == s.inode {
			return true
		}
	}
	return false
}

// tcpListen is the state of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// listeningInodes adds the inodes of the listening sockets of a
// /proc/net/tcp table to out, with their local ports. A line reads "sl
// local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid
// timeout inode ...", local_address as ADDR:PORT in hexadecimal.
func listeningInodes(table []byte, out map[uint64]int) error {
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
		if len(f) < 10 {
			return fmt.Errorf("no inode in %q", line)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return fmt.Errorf("unreadable inode %q", f[9])
		}
		out[inode] = int(port)
	}
	return nil
}

// ErrNoFreePort is returned when every port of a range is taken.
var ErrNoFreePort = errors.New("no free port")

// AllocatePort returns the first port from want up to last that taken does
// not claim. A want above last searches up to units.MaxPort instead, so an explicit
// port outside the configured range still moves to the next free one.
func AllocatePort(want, last int, taken func(int) bool) (int, error) {
	if want > last {
		last = units.MaxPort
	}
	for p := want; p <= last; p++ {
		if !taken(p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("ports %d-%d are all in use or reserved: %w", want, last, ErrNoFreePort)
}
