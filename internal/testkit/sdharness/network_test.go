package sdharness

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestNetwork: machines on one network reach each other over TCP by address
// and by name, keep their address and name when one of them loses its PID 1,
// and the others keep working meanwhile; Close takes the links away.
func TestNetwork(t *testing.T) {
	t.Parallel()
	lan := NetworkForTest(t, "10.77.0.0/24")
	ctx := t.Context()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hosts := []struct {
		name string
		addr netip.Addr
		m    *Machine
	}{
		{name: "alpha", addr: netip.MustParseAddr("10.77.0.2")},
		{name: "beta", addr: netip.MustParseAddr("10.77.0.3")},
	}
	for i := range hosts {
		h := &hosts[i]
		h.m = ForTest(t, Options{BootTimeout: 90 * time.Second})
		if err := lan.Attach(ctx, h.m, h.addr, h.name); err != nil {
			t.Fatal(err)
		}
		if err := h.m.CopyFile(self, helperPath, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	alpha, beta := hosts[0].m, hosts[1].m

	listen := func(t *testing.T, m *Machine, token string) {
		t.Helper()
		if _, _, err := m.Run(ctx, "systemd-run", "--unit=sdharness-test-listen",
			"--setenv="+helperEnv+"=listen", "--setenv="+tokenEnv+"="+token,
			"--setenv="+addrEnv+"=0.0.0.0:8000", helperPath); err != nil {
			t.Fatal(err)
		}
	}
	// dial returns what the listener at addr answers from m, waiting for it
	// to come up.
	dial := func(t *testing.T, m *Machine, addr string) string {
		t.Helper()
		var answer, failure string
		err := WaitFor(ctx, 20*time.Second, "a listener at "+addr, func() (bool, error) {
			out, stderr, err := m.Run(ctx, "env", helperEnv+"=dial", addrEnv+"="+addr, helperPath)
			answer, failure = out, stderr
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("%v (last error: %s)", err, strings.TrimSpace(failure))
		}
		return answer
	}
	for _, h := range hosts {
		listen(t, h.m, h.name)
	}

	t.Run("TCP by address and by name", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			from     *Machine
			addr     string
			wantFrom string
		}{
			{"alpha to beta's address", alpha, "10.77.0.3:8000", "beta"},
			{"beta to alpha's address", beta, "10.77.0.2:8000", "alpha"},
			{"alpha to beta by name", alpha, "beta:8000", "beta"},
			{"beta to itself by name", beta, "beta:8000", "beta"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := dial(t, tc.from, tc.addr); got != tc.wantFrom {
					t.Errorf("%s answered %q, want %q", tc.addr, got, tc.wantFrom)
				}
			})
		}
	})

	t.Run("host names", func(t *testing.T) {
		for _, h := range hosts {
			out, _, err := h.m.Run(ctx, "hostname")
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(out) != h.name {
				t.Errorf("hostname of %s = %q", h.name, strings.TrimSpace(out))
			}
		}
		if name, err := os.Hostname(); err != nil || name == "alpha" || name == "beta" {
			t.Errorf("the host's own name became %q (%v)", name, err)
		}
	})

	t.Run("refuses a second address or name", func(t *testing.T) {
		third := netip.MustParseAddr("10.77.0.4")
		for _, tc := range []struct {
			name string
			addr netip.Addr
			host string
			want string
		}{
			{"machine already on it", third, "gamma", "already on network"},
			{"outside the subnet", netip.MustParseAddr("10.78.0.4"), "gamma", "not in the network's subnet"},
			{"broadcast", netip.MustParseAddr("10.77.0.255"), "gamma", "broadcast"},
			{"bad host name", third, "gam ma", "invalid host name"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := lan.Attach(ctx, alpha, tc.addr, tc.host)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Attach error = %v, want one saying %q", err, tc.want)
				}
			})
		}
	})

	// A host whose PID 1 is SIGKILLed is down while it boots again; the
	// other host keeps its link, and the crashed host comes back with its
	// address and name.
	t.Run("crash of one host", func(t *testing.T) {
		oldPID := beta.PID()
		crashed := make(chan error, 1)
		go func() { crashed <- beta.Crash(ctx, 90*time.Second) }()
		// Alpha still answers itself over its interface while beta is down.
		if got := dial(t, alpha, "alpha:8000"); got != "alpha" {
			t.Errorf("alpha answered %q during beta's crash", got)
		}
		if err := <-crashed; err != nil {
			t.Fatal(err)
		}
		if beta.PID() == oldPID {
			t.Fatalf("beta's PID 1 is still host pid %d", oldPID)
		}
		out, _, err := beta.Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", NetworkInterface)
		if err != nil || !strings.Contains(out, "10.77.0.3/24") {
			t.Errorf("beta's %s after the crash: %q, %v; want 10.77.0.3/24", NetworkInterface, out, err)
		}
		if out, _, _ := beta.Run(ctx, "hostname"); strings.TrimSpace(out) != "beta" {
			t.Errorf("beta's host name after the crash = %q", strings.TrimSpace(out))
		}
		// The crash took the listener with it; a new one is reachable.
		listen(t, beta, "beta again")
		if got := dial(t, alpha, "beta:8000"); got != "beta again" {
			t.Errorf("beta answered %q after its crash", got)
		}
		if got := dial(t, beta, "alpha:8000"); got != "alpha" {
			t.Errorf("alpha answered %q to beta after the crash", got)
		}
	})

	t.Run("close removes the links", func(t *testing.T) {
		if err := lan.Close(); err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			err := WaitFor(ctx, 10*time.Second, h.name+"'s interface to vanish", func() (bool, error) {
				_, _, err := h.m.Run(context.Background(), "ip", "link", "show", NetworkInterface)
				return err != nil, nil
			})
			if err != nil {
				t.Error(err)
			}
		}
	})
}
