// Package sdharness boots a real systemd as PID 1 of a throwaway machine so
// that integration tests can drive units over D-Bus and systemctl exactly as
// kato-manager does on a host.
//
// A machine lives in its own pid, mount, network, UTS, IPC and cgroup
// namespaces. Its root is an overlay whose lower layer is the host's root and
// whose upper layer is a tmpfs that exists only inside the machine's mount
// namespace, so installed packages and binaries are available inside while
// every write, including systemd-tmpfiles emptying /tmp at boot, stays in the
// machine. /dev, /run and /tmp are fresh, /sys and /proc/sys are read-only.
//
// If the process that booted a machine dies without calling Close (a test
// binary killed mid-run, for example), the kernel kills the machine with it:
// unshare receives SIGKILL as its parent-death signal and passes SIGKILL on to
// PID 1, which takes the whole pid namespace down. The overlay and its tmpfs
// vanish with the mount namespace, so the host's files, /tmp included, are
// never touched. What such a death can leave behind is an empty temporary
// directory named sdharness-* and an empty cgroup of the same name.
//
// Booting needs root, unshare, nsenter, chroot, ip, a cgroup2 hierarchy and
// systemd at /lib/systemd/systemd. Boot reports a host lacking any of these
// with an error wrapping ErrUnavailable.
package sdharness

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// ErrUnavailable reports that this host cannot boot a machine: the process is
// not root, a required program is missing, or the kernel refused to create
// the namespaces or mounts a machine needs.
var ErrUnavailable = errors.New("systemd test machine unavailable")

// ErrClosed is returned by operations on a machine after Close.
var ErrClosed = errors.New("machine closed")

// ErrTimeout is wrapped by the error WaitFor returns when its condition did
// not hold in time.
var ErrTimeout = errors.New("timed out")

// DefaultBootTimeout is how long Boot waits for systemd to finish booting
// when Options.BootTimeout is zero.
const DefaultBootTimeout = 60 * time.Second

// systemdPath is the systemd binary the machine runs as PID 1.
const systemdPath = "/lib/systemd/systemd"

// innerPATH is the search path of commands run inside a machine.
const innerPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// setupScript mounts the machine's root and boots it, again after every
// reboot, with bootScript.
//
//go:embed setup.sh
var setupScript string

// bootScript mounts a boot's file systems and executes systemd.
//
//go:embed boot.sh
var bootScript string

// defaultMask lists the units every machine masks: services of the host
// image that would only slow the boot down or compete with tests for ports
// (databases, container engines, ssh, cron), terminals that belong to the
// host, and units that change kernel-wide state shared with the host (binary
// formats, sysctls, modules) or its disks (e2scrub, fstrim).
var defaultMask = []string{
	"postgresql.service",
	"postgresql@.service",
	"redis-server.service",
	"docker.service",
	"docker.socket",
	"containerd.service",
	"haproxy.service",
	"nginx.service",
	"ssh.service",
	"cron.service",
	"console-getty.service",
	"container-getty@.service",
	"getty@.service",
	"serial-getty@.service",
	"systemd-binfmt.service",
	"proc-sys-fs-binfmt_misc.automount",
	"proc-sys-fs-binfmt_misc.mount",
	"systemd-sysctl.service",
	"systemd-modules-load.service",
	"e2scrub_reap.service",
	"e2scrub_all.timer",
	"fstrim.timer",
	"apt-daily.timer",
	"apt-daily-upgrade.timer",
	"dpkg-db-backup.timer",
	"man-db.timer",
}

// DefaultMask returns the units every machine masks in addition to
// Options.Mask.
func DefaultMask() []string {
	return append([]string(nil), defaultMask...)
}

// Options configures a machine. The zero value boots a machine with the
// default mask and DefaultBootTimeout.
type Options struct {
	// Mask names further units (for example "nginx.service" or
	// "foo@.service") to mask before systemd starts.
	Mask []string
	// BootTimeout bounds the wait for systemd to report running or
	// degraded; zero means DefaultBootTimeout.
	BootTimeout time.Duration
}

// Machine is a running systemd in its own namespaces. Its methods are safe
// for concurrent use.
type Machine struct {
	pid     int
	unshare int // host pid of unshare; 0 until it started
	dir     string
	cgroup  string
	nsenter string
	console *console
	exited  chan struct{}
	waitErr error // set before exited is closed

	mu       sync.Mutex
	closed   bool
	closeErr error
}

// Boot starts a machine and returns once `systemctl is-system-running` inside
// reports running or degraded. ctx bounds the boot only; the machine runs
// until Close. On failure everything started is torn down and the error
// includes the tail of the boot log. In a test binary run with -short it
// boots nothing and returns an error wrapping ErrUnavailable.
func Boot(ctx context.Context, opts Options) (*Machine, error) {
	timeout := opts.BootTimeout
	switch {
	case timeout == 0:
		timeout = DefaultBootTimeout
	case timeout < 0:
		return nil, fmt.Errorf("invalid boot timeout %s: must not be negative", timeout)
	}
	for _, unit := range opts.Mask {
		if err := validateUnitName(unit); err != nil {
			return nil, err
		}
	}
	if shortTest() {
		return nil, errShort
	}
	tools, err := checkHost()
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "sdharness-")
	if err != nil {
		return nil, fmt.Errorf("%w: create machine directory: %v", ErrUnavailable, err)
	}
	m := &Machine{dir: dir, nsenter: tools["nsenter"], exited: make(chan struct{})}
	if err := m.start(ctx, tools, append(DefaultMask(), opts.Mask...)); err != nil {
		return nil, errors.Join(err, m.Close())
	}

	bootCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := m.waitRunning(bootCtx, timeout); err != nil {
		report := m.bootReport()
		return nil, errors.Join(fmt.Errorf("boot machine: %w\n%s", err, report), m.Close())
	}
	return m, nil
}

// checkHost verifies the prerequisites of a boot and returns the paths of
// the host programs it needs.
func checkHost() (map[string]string, error) {
	if uid := os.Geteuid(); uid != 0 {
		return nil, fmt.Errorf("%w: running as uid %d: booting needs root", ErrUnavailable, uid)
	}
	tools := make(map[string]string)
	for _, name := range []string{"unshare", "nsenter", "chroot", "ip", "mount"} {
		path, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %s not found in PATH %q", ErrUnavailable, name, os.Getenv("PATH"))
		}
		tools[name] = path
	}
	if _, err := os.Stat(systemdPath); err != nil {
		return nil, fmt.Errorf("%w: systemd not installed: %v", ErrUnavailable, err)
	}
	return tools, nil
}

// start launches unshare with the setup script and waits until the script
// has executed systemd.
func (m *Machine) start(ctx context.Context, tools map[string]string, mask []string) error {
	rootDir := filepath.Join(m.dir, "root")
	if err := os.Mkdir(rootDir, 0o700); err != nil {
		return fmt.Errorf("%w: create machine root %s: %v", ErrUnavailable, rootDir, err)
	}
	setupLog, err := os.Create(filepath.Join(m.dir, "setup.log"))
	if err != nil {
		return fmt.Errorf("%w: create setup log: %v", ErrUnavailable, err)
	}
	defer setupLog.Close()

	con, err := openConsole(filepath.Join(m.dir, "console.log"))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	m.console = con

	cg, err := createCgroup(filepath.Base(m.dir))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	m.cgroup = cg.path
	defer cg.dir.Close()

	args := []string{
		"--pid", "--fork", "--kill-child=SIGKILL",
		"--mount", "--net", "--uts", "--ipc", "--cgroup",
		"--propagation", "private",
		"/bin/sh", "-c", setupScript, "sdharness-setup", rootDir, con.ptsPath, bootScript,
	}
	cmd := exec.Command(tools["unshare"], append(args, mask...)...)
	cmd.Env = []string{"PATH=" + innerPATH}
	cmd.Stdout = setupLog
	cmd.Stderr = setupLog
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:      true,
		Pdeathsig:   syscall.SIGKILL,
		UseCgroupFD: true,
		CgroupFD:    int(cg.dir.Fd()),
	}

	if err := startPinned(cmd, m.exited, &m.waitErr); err != nil {
		return fmt.Errorf("%w: start unshare: %v", ErrUnavailable, err)
	}
	m.unshare = cmd.Process.Pid

	pid, err := m.waitForSystemd(ctx, cmd.Process.Pid, 0)
	if err != nil {
		return err
	}
	m.pid = pid
	return nil
}

// startPinned starts cmd, whose SysProcAttr asks for a parent-death signal,
// and closes exited once it has exited (or failed to start), after storing
// its Wait error in *waitErr. The parent-death signal fires when the thread
// that forked exits, not the process. The goroutine therefore keeps its
// thread until cmd is gone; it never unlocks, so the runtime retires the
// thread afterwards instead of reusing it.
func startPinned(cmd *exec.Cmd, exited chan<- struct{}, waitErr *error) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(exited)
			return
		}
		started <- nil
		*waitErr = cmd.Wait()
		close(exited)
	}()
	return <-started
}

// waitForSystemd waits until a boot has executed systemd as the first
// process of its pid namespace, below unshare, and returns its host pid. A
// pid equal to previous, the systemd of the boot before, does not count.
func (m *Machine) waitForSystemd(ctx context.Context, unsharePID, previous int) (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-m.exited:
			return 0, fmt.Errorf("%w: machine setup failed (%v):\n%s", ErrUnavailable, m.waitErr, m.setupLog())
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for machine setup to execute systemd: %w", ctx.Err())
		default:
		}
		if pid := findPID1(unsharePID, "systemd"); pid > 0 && pid != previous {
			return pid, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("machine setup did not execute systemd within 30s:\n%s", m.setupLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findPID1 returns the host pid of a descendant of pid named comm that is
// the first process of its own pid namespace, or 0 if there is none (yet).
func findPID1(pid int, comm string) int {
	queue := children(pid)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		name, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		if err == nil && strings.TrimSpace(string(name)) == comm && nsPID(p) == 1 {
			return p
		}
		queue = append(queue, children(p)...)
	}
	return 0
}

// children returns the child processes of pid.
func children(pid int) []int {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, task := range tasks {
		data, err := os.ReadFile(task)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if child, err := strconv.Atoi(f); err == nil {
				out = append(out, child)
			}
		}
	}
	return out
}

// nsPID returns the pid of process pid in its innermost pid namespace, from
// the NSpid line of its status, or 0.
func nsPID(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(fields[len(fields)-1])
			return n
		}
	}
	return 0
}

// Reboot reboots the machine as `systemctl reboot` does on a host: systemd
// stops every unit and exits, and a new systemd boots on the same disk
// (the overlay keeps what was written) with a fresh /run, /tmp and /dev. It
// returns once the new systemd reports running or degraded, within timeout
// (zero means DefaultBootTimeout). The machine's pid changes; Reboot must
// not run concurrently with other calls on the machine.
func (m *Machine) Reboot(ctx context.Context, timeout time.Duration) error {
	if err := m.checkOpen(); err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = DefaultBootTimeout
	}
	old := m.pid
	// The reply may never come: systemd is going down.
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	m.Run(callCtx, "systemctl", "--no-block", "reboot")
	cancel()
	if err := m.awaitNextBoot(ctx, old, timeout, nil); err != nil {
		return fmt.Errorf("reboot machine pid %d: %w", old, err)
	}
	return nil
}

// Crash kills the machine's PID 1 with SIGKILL, as a host that loses
// power: every process of the boot dies at once, no unit is stopped. The
// machine then boots again on the same disk, as a host whose power comes
// back, keeping its network interface, address and host name (see
// Network). Unlike a real disk, the overlay keeps writes that were never
// synced, so durability is tested by killing processes, not by this. Crash
// returns once the new systemd reports running or degraded, within timeout
// (zero means DefaultBootTimeout); it must not run concurrently with other
// calls on the machine.
func (m *Machine) Crash(ctx context.Context, timeout time.Duration) error {
	return m.CrashWith(ctx, timeout, nil)
}

// CrashWith is Crash that calls down, when not nil, once every process of
// the crashed boot is dead and before the next boot has got far: the moment
// to look at what the host left behind elsewhere, such as the leases its
// workers held in a shared database.
func (m *Machine) CrashWith(ctx context.Context, timeout time.Duration, down func()) error {
	if err := m.checkOpen(); err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = DefaultBootTimeout
	}
	old := m.pid
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		return fmt.Errorf("crash machine: kill pid %d: %w", old, err)
	}
	if err := m.awaitNextBoot(ctx, old, timeout, down); err != nil {
		return fmt.Errorf("crash machine pid %d: %w", old, err)
	}
	return nil
}

// awaitNextBoot waits, within timeout, until a systemd other than the one
// at host pid old runs as the machine's PID 1 and reports running or
// degraded, and makes it the machine's pid. down, when not nil, runs as
// soon as the new systemd is there: a new boot starts only once the old
// one's pid namespace is empty.
func (m *Machine) awaitNextBoot(ctx context.Context, old int, timeout time.Duration, down func()) error {
	bootCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pid, err := m.waitForSystemd(bootCtx, m.unshare, old)
	if err != nil {
		return err
	}
	if down != nil {
		down()
	}
	m.mu.Lock()
	m.pid = pid
	m.mu.Unlock()
	if err := m.waitRunning(bootCtx, timeout); err != nil {
		return fmt.Errorf("boot again: %w\n%s", err, m.bootReport())
	}
	return nil
}

// waitRunning polls the system state until systemd reports running or
// degraded.
func (m *Machine) waitRunning(ctx context.Context, timeout time.Duration) error {
	last := "unknown"
	err := WaitFor(ctx, timeout, "systemd to report running or degraded", func() (bool, error) {
		select {
		case <-m.exited:
			return false, fmt.Errorf("systemd exited during boot: %v", m.waitErr)
		default:
		}
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		// is-system-running exits non-zero for every state but running, so
		// only its output counts.
		out, _, _ := m.Run(callCtx, "systemctl", "is-system-running")
		if state := strings.TrimSpace(out); state != "" {
			last = state
		}
		switch last {
		case "running", "degraded":
			return true, nil
		case "maintenance", "stopping":
			return false, fmt.Errorf("systemd entered state %q", last)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last state %q)", err, last)
	}
	return nil
}

// bootReport collects what explains a failed boot: the setup script's
// output, the end of the console and, when systemd still answers, the end of
// the journal.
func (m *Machine) bootReport() string {
	var b strings.Builder
	if setup := m.setupLog(); setup != "" {
		fmt.Fprintf(&b, "--- setup ---\n%s\n", setup)
	}
	if console, err := m.ConsoleLog(); err == nil {
		fmt.Fprintf(&b, "--- console (last 40 lines) ---\n%s\n", tail(console, 40))
	}
	select {
	case <-m.exited:
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if out, _, err := m.Run(ctx, "journalctl", "--boot", "--no-pager", "--lines=40"); err == nil {
			fmt.Fprintf(&b, "--- journal (last 40 lines) ---\n%s\n", strings.TrimRight(out, "\n"))
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// setupLog returns what the setup script and unshare printed.
func (m *Machine) setupLog() string {
	data, err := os.ReadFile(filepath.Join(m.dir, "setup.log"))
	if err != nil {
		return fmt.Sprintf("(setup log unreadable: %v)", err)
	}
	return strings.TrimSpace(string(data))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// PID returns the host pid of the machine's PID 1.
func (m *Machine) PID() int {
	return m.pid
}

// Root returns the host path of the machine's root directory. Paths below it
// resolve absolute symbolic links against the host's root, so prefer
// WriteFile and CopyFile for writing.
func (m *Machine) Root() string {
	return fmt.Sprintf("/proc/%d/root", m.pid)
}

// SystemBusAddress returns the D-Bus address at which the host reaches the
// machine's system bus, for example to manage its units with go-systemd's
// dbus.NewConnection and a godbus connection that dials this address, then
// authenticates with EXTERNAL and sends Hello.
func (m *Machine) SystemBusAddress() string {
	return "unix:path=" + m.Root() + "/run/dbus/system_bus_socket"
}

// DialSystemBus connects to the machine's system bus from the host, as
// root, ready for calls: go-systemd's dbus.NewConnection(m.DialSystemBus)
// manages the machine's units.
func (m *Machine) DialSystemBus() (*godbus.Conn, error) {
	c, err := godbus.Dial(m.SystemBusAddress())
	if err != nil {
		return nil, err
	}
	if err := c.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Hello(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ConsoleLog returns everything systemd has written to the machine's console
// so far: the boot status lines and messages of PID 1.
func (m *Machine) ConsoleLog() (string, error) {
	data, err := os.ReadFile(filepath.Join(m.dir, "console.log"))
	if err != nil {
		return "", fmt.Errorf("read console log: %w", err)
	}
	return string(bytes.ReplaceAll(data, []byte("\r"), nil)), nil
}

// Close kills the machine and removes what it left on the host. It is safe
// to call more than once; later calls return the first call's result.
func (m *Machine) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.closeErr
	}
	m.closed = true

	var errs []error
	if m.pid > 0 {
		if err := syscall.Kill(m.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill machine pid %d: %w", m.pid, err))
		}
	}
	if m.cgroup != "" {
		// Catches anything PID 1's death did not take down.
		if err := killCgroup(m.cgroup); err != nil {
			errs = append(errs, err)
		}
	}
	if m.unshare > 0 {
		select {
		case <-m.exited:
		case <-time.After(5 * time.Second):
			// Without cgroup.kill a machine that never reached systemd
			// has no PID 1 to kill; unshare takes its child down.
			if err := syscall.Kill(m.unshare, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill unshare pid %d: %w", m.unshare, err))
			}
			select {
			case <-m.exited:
			case <-time.After(25 * time.Second):
				errs = append(errs, fmt.Errorf("machine pid %d: unshare pid %d did not exit within 30s of SIGKILL", m.pid, m.unshare))
			}
		}
	}
	if m.cgroup != "" {
		if err := removeCgroup(m.cgroup); err != nil {
			errs = append(errs, err)
		}
	}
	if m.console != nil {
		if err := m.console.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeMachineDir(m.dir); err != nil {
		errs = append(errs, err)
	}
	m.closeErr = errors.Join(errs...)
	return m.closeErr
}

// removeMachineDir removes the host directory of a machine. It removes known
// entries one by one and never recursively: should the machine's root still
// be mounted there, removal fails instead of walking into the host's files.
func removeMachineDir(dir string) error {
	var errs []error
	for _, name := range []string{"console.log", "setup.log", "root"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove machine directory entry: %w", err))
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove machine directory: %w", err))
	}
	return errors.Join(errs...)
}

// checkOpen returns ErrClosed once Close has been called, so that nothing
// reaches a process that reused the machine's pid.
func (m *Machine) checkOpen() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("machine pid %d: %w", m.pid, ErrClosed)
	}
	return nil
}

// validateUnitName checks that name can be masked: a unit file name with a
// known type suffix and none of the characters systemd rejects.
func validateUnitName(name string) error {
	const rule = "must be a unit file name such as foo.service or foo@.service"
	if name == "" || strings.HasPrefix(name, "-") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("invalid mask unit %q: %s", name, rule)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune(":-_.\\@", r)
		if !ok {
			return fmt.Errorf("invalid mask unit %q: character %q not allowed: %s", name, r, rule)
		}
	}
	suffix := name[strings.LastIndexByte(name, '.')+1:]
	switch suffix {
	case "service", "socket", "target", "timer", "mount", "automount", "path", "slice", "scope", "swap", "device":
		return nil
	}
	return fmt.Errorf("invalid mask unit %q: unknown unit type %q: %s", name, suffix, rule)
}
