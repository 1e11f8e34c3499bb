package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

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
	// InUse reports whether something on this host holds a TCP port, without
	// looking for the process: what port allocation needs, and far cheaper
	// than Listening.
	InUse(ctx context.Context, port int) (bool, error)
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
