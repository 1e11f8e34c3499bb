package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// A processor on a private network is probed from inside its network
// namespace: a health request through the host port would start the
// forwarder (kato-proxy@ID.api.service) on the first request and cross it
// on every one, while the processor is not even listening yet. Root enters
// the namespace on one locked OS thread only to create the probe's socket,
// never to run anything of the processor's; the namespace is found through
// a pidfd of the unit's main process, checked to be in the unit's cgroup
// while alive, so no path the processor controls is involved.

// errNoNamespace says the unit's process does not have a network namespace
// of its own yet: it is not running, or systemd is still setting it up.
var errNoNamespace = errors.New("no network namespace of its own yet")

// netNamespace is an open network namespace and a client whose connections
// are made inside it.
type netNamespace struct {
	fd     int
	client *http.Client
}

// instanceNamespace opens the network namespace of unit's main process. It
// fails with errNoNamespace while the unit has no main process, or that
// process is still in the manager's own namespace (systemd joins it to its
// namespace between the fork and the exec).
// The main process's pid is returned with errNoNamespace once known.
func (m *Manager) instanceNamespace(ctx context.Context, unit string) (*netNamespace, int32, error) {
	u, err := m.Systemd.UnitRun(ctx, unit)
	if err != nil {
		return nil, 0, err
	}
	if u.MainPID == 0 {
		return nil, 0, errNoNamespace
	}
	ns, err := namespaceOf(unit, int(u.MainPID))
	return ns, int32(u.MainPID), err
}

// namespaceOf opens the network namespace of process pid, unit's main
// process (see instanceNamespace).
func namespaceOf(unit string, pid int) (*netNamespace, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, errNoNamespace
	}
	if err != nil {
		return nil, fmt.Errorf("open process %d of %s: %w", pid, unit, err)
	}
	defer unix.Close(pidfd)
	// The pid was read before the pidfd was opened: the process is the
	// unit's if it is in the unit's cgroup and still alive after that
	// look, so that the look was of the process the pidfd holds.
	inUnit := cgroupUnit("/proc/"+strconv.Itoa(pid)+"/cgroup", map[string]bool{unit: true}) == unit
	if !inUnit || unix.PidfdSendSignal(pidfd, 0, nil, 0) != nil {
		return nil, errNoNamespace
	}
	var fd int
	var same bool
	err = inNamespace(pidfd, func(home *unix.Stat_t) error {
		var err error
		if fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return err
		}
		same = st.Dev == home.Dev && st.Ino == home.Ino
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("enter the network namespace of %s: %w", unit, err)
	}
	if same {
		unix.Close(fd)
		return nil, errNoNamespace
	}
	ns := &netNamespace{fd: fd}
	ns.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil, DialContext: ns.dialContext}}
	return ns, nil
}

// Close releases the namespace; a nil one is closed.
func (ns *netNamespace) Close() {
	if ns != nil && ns.fd >= 0 {
		unix.Close(ns.fd)
		ns.fd = -1
	}
}

// inNamespace runs fn on an OS thread of its own in the network namespace
// target (a namespace or pidfd file descriptor), telling it the manager's
// own namespace. A thread that cannot go back is left locked, so that it
// ends with its goroutine and runs nothing else.
func inNamespace(target int, fn func(home *unix.Stat_t) error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer unix.Close(home)
		var st unix.Stat_t
		if err := unix.Fstat(home, &st); err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		fnErr := fn(&st)
		if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("return to the manager's network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		done <- fnErr
	}()
	return <-done
}

// dialContext connects to addr (127.0.0.1:PORT) inside the namespace: the
// socket is made there, and a socket stays in the namespace it was made
// in, so the connect runs on any thread.
func (ns *netNamespace) dialContext(ctx context.Context, _, addr string) (net.Conn, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, err
	}
	return ns.dial(ctx, port)
}

// dial connects to 127.0.0.1:port inside the namespace, within ctx.
func (ns *netNamespace) dial(ctx context.Context, port int) (net.Conn, error) {
	fd := -1
	err := inNamespace(ns.fd, func(*unix.Stat_t) error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("socket in the namespace: %w", err)
	}
	f := os.NewFile(uintptr(fd), "probe")
	defer f.Close()
	if err := connectWithin(ctx, fd, port); err != nil {
		return nil, err
	}
	return net.FileConn(f)
}

// connectWithin connects the non-blocking socket fd to 127.0.0.1:port,
// waiting at most until ctx is done. A refused connection is
// syscall.ECONNREFUSED, as from net.Dial.
func connectWithin(ctx context.Context, fd, port int) error {
	err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINPROGRESS) {
		return err
	}
	for {
		wait := -1
		if d, ok := ctx.Deadline(); ok {
			wait = max(0, int(time.Until(d).Milliseconds()))
		}
		// Polled in slices, so that a cancelled ctx ends the wait.
		if wait < 0 || wait > 100 {
			wait = 100
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, wait)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n > 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			return context.DeadlineExceeded
		}
	}
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soErr != 0 {
		return unix.Errno(soErr)
	}
	return nil
}
