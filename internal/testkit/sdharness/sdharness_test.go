package sdharness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// The test binary doubles as a small program run inside machines and as a
// process that boots a machine and is then killed; helperEnv selects the
// role.
const (
	helperEnv   = "SDHARNESS_TEST_HELPER"
	tokenEnv    = "SDHARNESS_TEST_TOKEN"
	addrEnv     = "SDHARNESS_TEST_ADDR"
	helperPath  = "/usr/local/bin/sdharness-test-helper"
	listenAddr  = "127.0.0.1:8000"
	bootedLine  = "BOOTED"
	unavailLine = "UNAVAILABLE"
)

func TestMain(m *testing.M) {
	switch role := os.Getenv(helperEnv); role {
	case "":
		os.Exit(m.Run())
	case "listen":
		listen()
	case "dial":
		dial()
	case "boot-and-hang":
		bootAndHang()
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", helperEnv, role)
		os.Exit(2)
	}
}

// helperAddr is the address the listener binds and the dialer dials:
// listenAddr unless addrEnv names another.
func helperAddr() string {
	if addr := os.Getenv(addrEnv); addr != "" {
		return addr
	}
	return listenAddr
}

// listen answers every connection on helperAddr with the token, for as long
// as it runs.
func listen() {
	ln, err := net.Listen("tcp", helperAddr())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.WriteString(conn, os.Getenv(tokenEnv))
		conn.Close()
	}
}

// dial prints what the listener on helperAddr answers.
func dial() {
	conn, err := net.Dial("tcp", helperAddr())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := io.Copy(os.Stdout, conn); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// bootAndHang boots a machine, reports where it lives and waits to be
// killed without ever closing it.
func bootAndHang() {
	m, err := Boot(context.Background(), Options{})
	if errors.Is(err, ErrUnavailable) {
		reason := strings.TrimPrefix(err.Error(), ErrUnavailable.Error()+": ")
		fmt.Println(unavailLine, strings.ReplaceAll(reason, "\n", " "))
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(bootedLine, m.PID(), m.dir, m.cgroup)
	select {}
}

func TestMachine(t *testing.T) {
	t.Parallel()
	const extraMask = "sdharness-test-masked.service"
	m := ForTest(t, Options{Mask: []string{extraMask}, BootTimeout: 90 * time.Second})
	ctx := t.Context()

	t.Run("system running", func(t *testing.T) {
		out, _, _ := m.Run(ctx, "systemctl", "is-system-running")
		if state := strings.TrimSpace(out); state != "running" && state != "degraded" {
			t.Errorf("is-system-running = %q, want running or degraded", state)
		}
	})

	t.Run("console holds boot log", func(t *testing.T) {
		log, err := m.ConsoleLog()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log, "Reached target") {
			t.Errorf("console log lacks systemd's boot status; got:\n%s", tail(log, 20))
		}
	})

	for _, tc := range []struct {
		name string
		unit string
	}{
		{name: "postgresql masked", unit: "postgresql.service"},
		{name: "postgresql instances masked", unit: "postgresql@15-main.service"},
		{name: "docker socket masked", unit: "docker.socket"},
		{name: "console getty masked", unit: "console-getty.service"},
		{name: "option mask applied", unit: extraMask},
	} {
		t.Run(tc.name, func(t *testing.T) {
			props := unitProperties(t, m, tc.unit, "LoadState", "ActiveState")
			if props["LoadState"] != "masked" {
				t.Errorf("%s LoadState = %q, want masked", tc.unit, props["LoadState"])
			}
			if props["ActiveState"] != "inactive" {
				t.Errorf("%s ActiveState = %q, want inactive", tc.unit, props["ActiveState"])
			}
		})
	}

	for _, tc := range []struct {
		name      string
		path      string // written inside
		innerPath string // where it must show up inside
		mode      os.FileMode
	}{
		{name: "new directories", path: "/etc/sdharness-test/nested/probe.conf", innerPath: "/etc/sdharness-test/nested/probe.conf", mode: 0o640},
		// /var/run is an absolute symbolic link to /run: it must resolve to
		// the machine's /run, not the host's.
		{name: "through absolute symlink", path: "/var/run/sdharness-test/probe", innerPath: "/run/sdharness-test/probe", mode: 0o600},
		{name: "replace existing file", path: "/etc/hostname", innerPath: "/etc/hostname", mode: 0o644},
	} {
		t.Run("write file "+tc.name, func(t *testing.T) {
			data := []byte("written by " + t.Name() + "\n")
			if err := m.WriteFile(tc.path, data, tc.mode); err != nil {
				t.Fatal(err)
			}
			got, _, err := m.Run(ctx, "cat", tc.innerPath)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(data) {
				t.Errorf("%s inside = %q, want %q", tc.innerPath, got, data)
			}
			mode, _, err := m.Run(ctx, "stat", "--format=%a", tc.innerPath)
			if err != nil {
				t.Fatal(err)
			}
			if want := strconv.FormatUint(uint64(tc.mode.Perm()), 8); strings.TrimSpace(mode) != want {
				t.Errorf("%s mode inside = %s, want %s", tc.innerPath, strings.TrimSpace(mode), want)
			}
			for _, hostPath := range []string{tc.path, tc.innerPath} {
				host, err := os.ReadFile(hostPath)
				if err == nil && string(host) == string(data) {
					t.Errorf("%s on the host holds what was written inside the machine", hostPath)
				}
			}
		})
	}

	t.Run("write file rejects relative path", func(t *testing.T) {
		err := m.WriteFile("etc/relative", []byte("x"), 0o644)
		if err == nil || !strings.Contains(err.Error(), `invalid machine path "etc/relative": must be absolute`) {
			t.Errorf("WriteFile(relative) error = %v, want invalid machine path", err)
		}
	})

	t.Run("copy file", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "tool")
		data := []byte("#!/bin/sh\necho copied tool ran\n")
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := m.CopyFile(src, "/usr/local/bin/sdharness-copied-tool", 0o755); err != nil {
			t.Fatal(err)
		}
		out, _, err := m.Run(ctx, "sdharness-copied-tool")
		if err != nil {
			t.Fatal(err)
		}
		if out != "copied tool ran\n" {
			t.Errorf("copied tool printed %q, want %q", out, "copied tool ran\n")
		}
	})

	t.Run("host tmp hidden", func(t *testing.T) {
		hostFile := filepath.Join(t.TempDir(), "host-only")
		if err := os.WriteFile(hostFile, []byte("host"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Run(ctx, "test", "-e", hostFile); err == nil {
			t.Errorf("host file %s is visible inside the machine", hostFile)
		}
		fstype, _, err := m.Run(ctx, "findmnt", "--noheadings", "--output=FSTYPE", "/tmp")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(fstype) != "tmpfs" {
			t.Errorf("/tmp inside is %q, want tmpfs", strings.TrimSpace(fstype))
		}
	})

	t.Run("run reports exit status and stderr", func(t *testing.T) {
		_, stderr, err := m.Run(ctx, "sh", "-c", "echo broken >&2; exit 7")
		if err == nil {
			t.Fatal("Run of a failing command returned no error")
		}
		if !strings.Contains(err.Error(), "exit status 7") || !strings.Contains(err.Error(), "broken") {
			t.Errorf("Run error = %q, want exit status 7 and stderr", err)
		}
		if stderr != "broken\n" {
			t.Errorf("Run stderr = %q, want %q", stderr, "broken\n")
		}
	})

	t.Run("transient unit", func(t *testing.T) {
		const unit = "sdharness-test-sleep.service"
		if _, _, err := m.Run(ctx, "systemd-run", "--unit="+unit, "sleep", "100"); err != nil {
			t.Fatal(err)
		}
		err := WaitFor(ctx, 10*time.Second, unit+" active", func() (bool, error) {
			return unitProperties(t, m, unit, "ActiveState")["ActiveState"] == "active", nil
		})
		if err != nil {
			t.Fatal(err)
		}
		props := unitProperties(t, m, unit, "MainPID", "ControlGroup")
		if props["MainPID"] == "0" || props["MainPID"] == "" {
			t.Errorf("%s MainPID = %q, want the sleep process", unit, props["MainPID"])
		}
		if props["ControlGroup"] != "/system.slice/"+unit {
			t.Errorf("%s ControlGroup = %q, want /system.slice/%s", unit, props["ControlGroup"], unit)
		}
		// The machine's cgroup tree lives below its own cgroup on the host.
		if _, err := os.Stat(filepath.Join(m.cgroup, "system.slice", unit)); err != nil {
			t.Errorf("unit cgroup not below the machine's cgroup %s: %v", m.cgroup, err)
		}
	})

	t.Run("system bus from host", func(t *testing.T) {
		conn, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
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
		})
		if err != nil {
			t.Fatalf("connect to %s: %v", m.SystemBusAddress(), err)
		}
		defer conn.Close()
		// Only the machine's systemd reports this virtualization.
		virt, err := conn.GetManagerProperty("Virtualization")
		if err != nil {
			t.Fatal(err)
		}
		if virt != `"container-other"` {
			t.Errorf("Virtualization over D-Bus = %s, want \"container-other\"", virt)
		}
		prop, err := conn.GetUnitPropertyContext(ctx, "dbus.service", "ActiveState")
		if err != nil {
			t.Fatal(err)
		}
		if got := prop.Value.Value(); got != "active" {
			t.Errorf("dbus.service ActiveState over D-Bus = %v, want active", got)
		}
	})

	t.Run("close kills everything", func(t *testing.T) {
		procs := namespaceProcesses(t, m.PID())
		if len(procs) < 4 {
			t.Fatalf("found %d processes in the machine's pid namespace (%v), want systemd, journald, dbus and sleep at least", len(procs), procs)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for _, p := range procs {
			if alive(p) {
				t.Errorf("machine process %d still alive after Close", p.pid)
			}
		}
		for _, path := range []string{m.cgroup, m.dir} {
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s remains after Close (stat: %v)", path, err)
			}
		}
		if err := m.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		if _, _, err := m.Run(ctx, "true"); !errors.Is(err, ErrClosed) {
			t.Errorf("Run after Close error = %v, want ErrClosed", err)
		}
		if err := m.WriteFile("/etc/after-close", nil, 0o644); !errors.Is(err, ErrClosed) {
			t.Errorf("WriteFile after Close error = %v, want ErrClosed", err)
		}
	})
}

func TestTwoMachinesAreIsolated(t *testing.T) {
	t.Parallel()
	machines := map[string]*Machine{
		"machine-a": ForTest(t, Options{BootTimeout: 90 * time.Second}),
		"machine-b": ForTest(t, Options{BootTimeout: 90 * time.Second}),
	}
	ctx := t.Context()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hostName, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	// Both machines bind the same loopback address and port.
	for name, m := range machines {
		if err := m.CopyFile(self, helperPath, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Run(ctx, "systemd-run", "--unit=sdharness-test-listen",
			"--setenv="+helperEnv+"=listen", "--setenv="+tokenEnv+"="+name, helperPath); err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Run(ctx, "hostname", name); err != nil {
			t.Fatal(err)
		}
	}
	for name, m := range machines {
		var answer string
		err := WaitFor(ctx, 20*time.Second, "listener in "+name+" to answer", func() (bool, error) {
			out, _, err := m.Run(ctx, "env", helperEnv+"=dial", helperPath)
			answer = out
			return err == nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if answer != name {
			t.Errorf("%s: %s answered %q, want its own listener's %q", name, listenAddr, answer, name)
		}
		state := unitProperties(t, m, "sdharness-test-listen.service", "ActiveState")["ActiveState"]
		if state != "active" {
			t.Errorf("%s: listener ActiveState = %q, want active", name, state)
		}
		got, _, err := m.Run(ctx, "hostname")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(got) != name {
			t.Errorf("%s: hostname = %q, want %q", name, strings.TrimSpace(got), name)
		}
	}
	if now, err := os.Hostname(); err != nil || now != hostName {
		t.Errorf("host name changed from %q to %q (%v)", hostName, now, err)
	}
}

func TestKilledBooterLeavesHostIntact(t *testing.T) {
	if testing.Short() {
		t.Skip("its helper boots a real systemd; not in -short mode")
	}
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "marker")
	if err := os.WriteFile(marker, []byte("still here"), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=boot-and-hang")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(2 * time.Minute):
		t.Fatal("booting process reported nothing within 2m")
	}
	if reason, ok := strings.CutPrefix(line, unavailLine+" "); ok {
		failBoot(t, fmt.Errorf("%w: %s", ErrUnavailable, reason))
	}
	fields := strings.Fields(line)
	if len(fields) != 4 || fields[0] != bootedLine {
		t.Fatalf("booting process reported %q, want %s PID DIR CGROUP", line, bootedLine)
	}
	pid, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatal(err)
	}
	dir, cgroup := fields[2], fields[3]
	procs := namespaceProcesses(t, pid)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	err = WaitFor(t.Context(), 20*time.Second, "machine processes to die with the booting process", func() (bool, error) {
		return !slices.ContainsFunc(procs, alive), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(marker)
	if err != nil || string(got) != "still here" {
		t.Errorf("host file %s after the kill: %q, %v; want it untouched", marker, got, err)
	}
	// What remains must be the empty leftovers the package documents.
	entries, err := os.ReadDir(filepath.Join(dir, "root"))
	if err != nil || len(entries) != 0 {
		t.Errorf("machine root %s on the host: %d entries, %v; want an empty directory", filepath.Join(dir, "root"), len(entries), err)
	}
	if err := removeCgroup(cgroup); err != nil {
		t.Errorf("remove leftover cgroup: %v", err)
	}
	if err := removeMachineDir(dir); err != nil {
		t.Errorf("remove leftover directory: %v", err)
	}
}

// TestShortNeverBoots: in -short mode Boot refuses, and ForTest skips
// even where CI is "true".
func TestShortNeverBoots(t *testing.T) {
	if !testing.Short() {
		t.Skip("checks the -short mode")
	}
	m, err := Boot(t.Context(), Options{})
	if m != nil {
		m.Close()
		t.Fatal("Boot booted a machine in -short mode")
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "-short") {
		t.Fatalf("Boot in -short mode: %v", err)
	}
	t.Setenv("CI", "true")
	r := &bootRecorder{TB: t}
	if m := ForTest(r, Options{}); m != nil || r.skipped == "" || r.failed != "" {
		t.Errorf("ForTest in -short mode with CI=true: skipped %q, failed %q", r.skipped, r.failed)
	}
}

func TestBootRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "path in mask", opts: Options{Mask: []string{"../etc/passwd"}}, wantErr: `invalid mask unit "../etc/passwd": must be a unit file name`},
		{name: "negative timeout", opts: Options{BootTimeout: -time.Second}, wantErr: "invalid boot timeout -1s: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Boot(t.Context(), tc.opts)
			if m != nil {
				m.Close()
				t.Fatal("Boot returned a machine")
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Boot error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// bootRecorder stands in for a test to observe how failBoot ends it.
type bootRecorder struct {
	testing.TB
	skipped, failed string
}

func (r *bootRecorder) Helper() {}

func (r *bootRecorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
}

func (r *bootRecorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestFailBoot(t *testing.T) {
	unavailable := fmt.Errorf("%w: running as uid 1000: booting needs root", ErrUnavailable)
	broken := errors.New("wait for systemd to report running or degraded: timed out after 1m0s")
	for _, tc := range []struct {
		name        string
		ci          string
		err         error
		wantSkipped bool
	}{
		{name: "unavailable on a laptop skips", ci: "", err: unavailable, wantSkipped: true},
		{name: "unavailable in CI fails", ci: "true", err: unavailable, wantSkipped: false},
		{name: "broken boot on a laptop fails", ci: "", err: broken, wantSkipped: false},
		{name: "broken boot in CI fails", ci: "true", err: broken, wantSkipped: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &bootRecorder{TB: t}
			failBoot(r, tc.err)
			got := r.failed
			if tc.wantSkipped {
				got = r.skipped
			}
			if got == "" || !strings.Contains(got, tc.err.Error()) {
				t.Errorf("skipped %q, failed %q; want the reason %q in the %s message",
					r.skipped, r.failed, tc.err, map[bool]string{true: "skip", false: "failure"}[tc.wantSkipped])
			}
			if r.skipped != "" && r.failed != "" {
				t.Errorf("both skipped (%q) and failed (%q)", r.skipped, r.failed)
			}
		})
	}
}

func TestValidateUnitName(t *testing.T) {
	for _, tc := range []struct {
		unit    string
		wantErr string
	}{
		{unit: "postgresql.service"},
		{unit: "postgresql@.service"},
		{unit: "postgresql@15-main.service"},
		{unit: "proc-sys-fs-binfmt_misc.automount"},
		{unit: "dev-disk-by\\x2dlabel.device"},
		{unit: "", wantErr: `invalid mask unit "": must be a unit file name`},
		{unit: "-rf.service", wantErr: `invalid mask unit "-rf.service": must be a unit file name`},
		{unit: "a/b.service", wantErr: `invalid mask unit "a/b.service": character '/' not allowed`},
		{unit: "a b.service", wantErr: `invalid mask unit "a b.service": character ' ' not allowed`},
		{unit: "nginx", wantErr: `invalid mask unit "nginx": unknown unit type "nginx"`},
		{unit: "nginx.conf", wantErr: `invalid mask unit "nginx.conf": unknown unit type "conf"`},
	} {
		t.Run(tc.unit, func(t *testing.T) {
			err := validateUnitName(tc.unit)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("validateUnitName(%q) = %v, want nil", tc.unit, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("validateUnitName(%q) = %v, want %q", tc.unit, err, tc.wantErr)
			}
		})
	}
}

func TestWaitFor(t *testing.T) {
	errProbe := errors.New("probe failed")
	for _, tc := range []struct {
		name      string
		timeout   time.Duration
		trueAfter int   // calls before cond reports true; -1 never
		condErr   error // returned from the first call when set
		wantErr   string
		wantIs    error
		wantCalls int
	}{
		{name: "true at once", timeout: time.Second, trueAfter: 0, wantCalls: 1},
		{name: "true after polls", timeout: 5 * time.Second, trueAfter: 3, wantCalls: 4},
		{name: "error stops polling", timeout: 5 * time.Second, trueAfter: -1, condErr: errProbe,
			wantErr: "wait for probe: probe failed", wantIs: errProbe, wantCalls: 1},
		{name: "timeout", timeout: 350 * time.Millisecond, trueAfter: -1,
			wantErr: "wait for probe: timed out after 350ms", wantIs: ErrTimeout},
		{name: "invalid timeout", timeout: 0, trueAfter: 0,
			wantErr: "wait for probe: invalid timeout 0s: must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := WaitFor(t.Context(), tc.timeout, "probe", func() (bool, error) {
				calls++
				if tc.condErr != nil {
					return false, tc.condErr
				}
				return tc.trueAfter >= 0 && calls > tc.trueAfter, nil
			})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("WaitFor = %v, want nil", err)
				}
			} else if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("WaitFor = %v, want %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("WaitFor error %v does not wrap %v", err, tc.wantIs)
			}
			if tc.wantCalls > 0 && calls != tc.wantCalls {
				t.Errorf("cond called %d times, want %d", calls, tc.wantCalls)
			}
		})
	}

	t.Run("context cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := WaitFor(ctx, time.Minute, "probe", func() (bool, error) { return false, nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("WaitFor = %v, want context.Canceled", err)
		}
	})
}

func TestCgroup2Mount(t *testing.T) {
	for _, tc := range []struct {
		name      string
		file      string
		wantMount string
		wantRoot  string
		wantErr   string
	}{
		{name: "hybrid with escaped path", file: "testdata/mountinfo", wantMount: "/sys/fs/cgroup/my unified", wantRoot: "/delegated"},
		{name: "no cgroup2", file: "testdata/mountinfo-v1", wantErr: "no cgroup2 file system in testdata/mountinfo-v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mount, root, err := cgroup2Mount(tc.file)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("cgroup2Mount error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mount != tc.wantMount || root != tc.wantRoot {
				t.Errorf("cgroup2Mount = %q, %q; want %q, %q", mount, root, tc.wantMount, tc.wantRoot)
			}
		})
	}
}

func TestOwnCgroup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		want    string
		wantErr string
	}{
		{name: "hybrid", content: "1:name=systemd:/user.slice\n0::/user.slice/session-2.scope\n", want: "/user.slice/session-2.scope"},
		{name: "root", content: "0::/\n", want: "/"},
		{name: "v1 only", content: "1:name=systemd:/\n", wantErr: "no cgroup2 entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cgroup")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ownCgroup(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ownCgroup error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ownCgroup = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// unitProperties returns the named properties of unit inside m.
func unitProperties(t *testing.T, m *Machine, unit string, names ...string) map[string]string {
	t.Helper()
	out, _, err := m.Run(t.Context(), "systemctl", "show", "--property="+strings.Join(names, ","), unit)
	if err != nil {
		t.Fatal(err)
	}
	props := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = v
		}
	}
	return props
}

// process identifies a process on the host across pid reuse.
type process struct {
	pid   int
	start string // start time in clock ticks after boot
}

// namespaceProcesses returns the host processes in the pid namespace of pid.
func namespaceProcesses(t *testing.T, pid int) []process {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var procs []process
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p))
		if err != nil || other != ns {
			continue
		}
		if _, start, ok := procState(p); ok {
			procs = append(procs, process{pid: p, start: start})
		}
	}
	return procs
}

// alive reports whether p has not exited; a zombie waiting to be reaped
// counts as exited.
func alive(p process) bool {
	state, start, ok := procState(p.pid)
	return ok && start == p.start && state != "Z" && state != "X"
}

// procState returns the state and start time of pid from /proc.
func procState(pid int) (state, start string, ok bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", "", false
	}
	// The fields follow the command name, which is in parentheses and may
	// itself contain spaces or parentheses; state is field 3 and start
	// time field 22 of the whole line.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	fields := strings.Fields(rest)
	if len(fields) < 20 {
		return "", "", false
	}
	return fields[0], fields[19], true
}
