package sdharness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NetworkInterface is the name of the interface by which a machine joins a
// Network. A machine joins at most one network.
const NetworkInterface = "eth0"

// Network is an Ethernet segment that joins machines, as a switch joins
// hosts: a bridge in a network namespace of its own, with one veth pair per
// machine from the bridge into the machine's network namespace. The host
// itself is not on it, so the subnet a test chooses never collides with the
// host's addresses, nor with another test's network on the same subnet.
//
// The link lives in the network namespaces, not in a machine's PID 1: a
// machine keeps its interface, address and host name across Reboot and
// Crash, and the other machines on the network never notice more than the
// silence of a host that is down. Closing a machine removes its interface;
// closing the network removes the bridge and every machine's interface.
//
// If the process that made a network dies without calling Close, the kernel
// kills the process holding the bridge's namespace (its parent-death
// signal), and the namespace, the bridge and the veth pairs vanish with it.
type Network struct {
	subnet  netip.Prefix
	pid     int // host pid of the process holding the bridge's namespace
	nsenter string
	ip      string
	exited  chan struct{}

	mu      sync.Mutex
	closed  bool
	members []member
}

// member is a machine on a network.
type member struct {
	m        *Machine
	addr     netip.Addr
	hostname string
}

// bridgeName is the bridge inside the network's namespace.
const bridgeName = "br0"

// NewNetwork makes an empty network on subnet, an IPv4 prefix such as
// 10.77.0.0/24 whose addresses the test then gives machines with Attach.
// Like Boot, it needs root, unshare, nsenter and ip, and reports a host
// lacking them with an error wrapping ErrUnavailable.
func NewNetwork(ctx context.Context, subnet netip.Prefix) (*Network, error) {
	if !subnet.IsValid() || !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return nil, fmt.Errorf("invalid network subnet %s: must be an IPv4 prefix of at most /30", subnet)
	}
	if subnet.Masked() != subnet {
		return nil, fmt.Errorf("invalid network subnet %s: host bits set; did you mean %s?", subnet, subnet.Masked())
	}
	if shortTest() {
		return nil, errShort
	}
	tools, err := checkHost()
	if err != nil {
		return nil, err
	}
	n := &Network{subnet: subnet, nsenter: tools["nsenter"], ip: tools["ip"], exited: make(chan struct{})}

	cmd := exec.Command(tools["unshare"], "--net", "sleep", "infinity")
	cmd.Env = []string{"PATH=" + innerPATH}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	var waitErr error
	if err := startPinned(cmd, n.exited, &waitErr); err != nil {
		return nil, fmt.Errorf("%w: start network namespace: %v", ErrUnavailable, err)
	}
	n.pid = cmd.Process.Pid
	// unshare has made the namespace once it executed sleep.
	err = WaitFor(ctx, 10*time.Second, "network namespace", func() (bool, error) {
		select {
		case <-n.exited:
			return false, errors.New("holder of the network namespace exited")
		default:
		}
		comm, _ := readComm(n.pid)
		return comm == "sleep", nil
	})
	if err == nil {
		err = n.inBridge(ctx, "link", "set", "lo", "up")
	}
	if err == nil {
		err = n.inBridge(ctx, "link", "add", bridgeName, "type", "bridge")
	}
	if err == nil {
		err = n.inBridge(ctx, "link", "set", bridgeName, "up")
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%w: make network %s: %v", ErrUnavailable, subnet, err), n.Close())
	}
	return n, nil
}

// Subnet returns the network's prefix.
func (n *Network) Subnet() netip.Prefix {
	return n.subnet
}

// Attach joins m to the network as NetworkInterface with address addr, and
// names it hostname: its host name (now and after every reboot, from
// /etc/hostname) and, in the /etc/hosts of every machine on the network, the
// name of addr, so machines reach each other by name.
func (n *Network) Attach(ctx context.Context, m *Machine, addr netip.Addr, hostname string) error {
	if err := validateHostname(hostname); err != nil {
		return err
	}
	if !n.subnet.Contains(addr) {
		return fmt.Errorf("invalid address %s for %s: not in the network's subnet %s", addr, hostname, n.subnet)
	}
	last := lastAddr(n.subnet)
	if addr == n.subnet.Addr() || addr == last {
		return fmt.Errorf("invalid address %s for %s: the network or broadcast address of %s", addr, hostname, n.subnet)
	}
	if err := m.checkOpen(); err != nil {
		return err
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("attach %s: network %s: %w", hostname, n.subnet, ErrClosed)
	}
	for _, o := range n.members {
		switch {
		case o.m == m:
			return fmt.Errorf("attach %s: machine pid %d is already on network %s as %s", hostname, m.PID(), n.subnet, o.hostname)
		case o.addr == addr:
			return fmt.Errorf("attach %s: address %s is taken by %s", hostname, addr, o.hostname)
		case o.hostname == hostname:
			return fmt.Errorf("attach %s: host name taken by the machine at %s", hostname, o.addr)
		}
	}
	if _, _, err := m.Run(ctx, "ip", "link", "show", NetworkInterface); err == nil {
		return fmt.Errorf("attach %s: machine pid %d already has an interface %s", hostname, m.PID(), NetworkInterface)
	}

	port := "port" + strconv.Itoa(len(n.members))
	steps := [][]string{
		{"link", "add", port, "type", "veth", "peer", "name", NetworkInterface, "netns", strconv.Itoa(m.PID())},
		{"link", "set", port, "master", bridgeName, "up"},
	}
	for _, step := range steps {
		if err := n.inBridge(ctx, step...); err != nil {
			return fmt.Errorf("attach %s: %w", hostname, err)
		}
	}
	prefix := netip.PrefixFrom(addr, n.subnet.Bits()).String()
	for _, step := range [][]string{
		{"ip", "addr", "add", prefix, "dev", NetworkInterface},
		{"ip", "link", "set", NetworkInterface, "up"},
		{"hostname", hostname},
	} {
		if _, _, err := m.Run(ctx, step[0], step[1:]...); err != nil {
			return fmt.Errorf("attach %s: %w", hostname, err)
		}
	}
	if err := m.WriteFile("/etc/hostname", []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("attach %s: %w", hostname, err)
	}
	n.members = append(n.members, member{m: m, addr: addr, hostname: hostname})
	return n.writeHosts()
}

// writeHosts gives every machine on the network an /etc/hosts naming all of
// them.
func (n *Network) writeHosts() error {
	var b strings.Builder
	b.WriteString("# Written by sdharness for network " + n.subnet.String() + ".\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, o := range n.members {
		fmt.Fprintf(&b, "%s\t%s\n", o.addr, o.hostname)
	}
	for _, o := range n.members {
		if err := o.m.checkOpen(); err != nil {
			continue
		}
		if err := o.m.WriteFile("/etc/hosts", []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("write /etc/hosts of %s: %w", o.hostname, err)
		}
	}
	return nil
}

// inBridge runs ip with args in the network's namespace.
func (n *Network) inBridge(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, n.nsenter, append([]string{"--target", strconv.Itoa(n.pid), "--net", "--", n.ip}, args...)...)
	cmd.Env = []string{"PATH=" + innerPATH}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s in network namespace: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close removes the network: the bridge, and with it every machine's
// interface on it. The machines keep running. It is safe to call more than
// once.
func (n *Network) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if n.pid == 0 {
		return nil
	}
	if err := syscall.Kill(n.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill network namespace holder pid %d: %w", n.pid, err)
	}
	select {
	case <-n.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("network namespace holder pid %d did not exit within 10s of SIGKILL", n.pid)
	}
}

// lastAddr returns the highest address of an IPv4 prefix, its broadcast
// address.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// validateHostname checks that name is a host name label as RFC 1123 has
// it: letters, digits and inner hyphens, at most 63 characters.
func validateHostname(name string) error {
	const rule = "must be 1 to 63 letters, digits and inner hyphens"
	if name == "" || len(name) > 63 || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") {
		return fmt.Errorf("invalid host name %q: %s", name, rule)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("invalid host name %q: character %q not allowed: %s", name, r, rule)
		}
	}
	return nil
}

// readComm returns the command name of process pid.
func readComm(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(data)), err
}
