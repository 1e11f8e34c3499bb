package sdharness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"
)

// ForTest boots a machine for t and closes it when t ends. In -short mode
// it never boots: it skips t. A host that cannot boot one (see
// ErrUnavailable) skips t, or fails it when the environment variable CI is
// "true"; any other boot failure fails t.
func ForTest(t testing.TB, opts Options) *Machine {
	t.Helper()
	if shortTest() {
		t.Skipf("skipping: boots a real systemd, and tests in -short mode never do")
		return nil
	}
	m, err := Boot(t.Context(), opts)
	if err != nil {
		failBoot(t, err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close systemd test machine: %v", err)
		}
	})
	return m
}

// NetworkForTest makes a network on subnet for t and closes it when t ends,
// skipping or failing t as ForTest does when the host cannot make one.
func NetworkForTest(t testing.TB, subnet string) *Network {
	t.Helper()
	if shortTest() {
		t.Skipf("skipping: makes network namespaces for real systemd machines, and tests in -short mode never do")
		return nil
	}
	prefix, err := netip.ParsePrefix(subnet)
	if err != nil {
		t.Fatalf("invalid network subnet %q: %v", subnet, err)
		return nil
	}
	n, err := NewNetwork(t.Context(), prefix)
	if err != nil {
		failBoot(t, err)
		return nil
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close test network: %v", err)
		}
	})
	return n
}

// shortTest reports whether this is a test binary run with -short. Boot
// may run in a test binary before its flags are parsed (in TestMain), and
// in programs that are no tests at all.
func shortTest() bool {
	return testing.Testing() && flag.Parsed() && testing.Short()
}

// errShort is Boot's error in a test binary run with -short.
var errShort = fmt.Errorf("%w: tests in -short mode never boot systemd", ErrUnavailable)

// failBoot ends t after a failed boot: skipped when the host cannot boot a
// machine and CI is not "true", failed otherwise.
func failBoot(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrUnavailable) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v (set CI=true to fail instead)", err)
		return
	}
	t.Fatalf("boot systemd test machine: %v", err)
}

// WaitFor calls cond every 100ms until it reports true, and returns nil
// then. It returns an error naming desc when timeout passes first (wrapping
// ErrTimeout), when ctx ends, or as soon as cond returns an error, so cond
// reports "not yet" as false with a nil error.
func WaitFor(ctx context.Context, timeout time.Duration, desc string, cond func() (bool, error)) error {
	if timeout <= 0 {
		return fmt.Errorf("wait for %s: invalid timeout %s: must be positive", desc, timeout)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := cond()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", desc, err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", desc, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("wait for %s: %w after %s", desc, ErrTimeout, timeout)
		case <-tick.C:
		}
	}
}
