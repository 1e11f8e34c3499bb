package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

const (
	katoManager   = testbed.KatoManager
	fakeProcessor = testbed.FakeProcessor
	kgServiceFake = testbed.KGServiceFake
)

// machine is a booted systemd with kato-manager installed.
type machine struct {
	*sdharness.Machine
	t *testing.T
}

func bootMachine(t *testing.T) *machine {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a real systemd; not in -short mode")
	}
	m := &machine{Machine: sdharness.ForTest(t, sdharness.Options{}), t: t}
	if err := testbed.Install(m.Machine); err != nil {
		t.Fatal(err)
	}
	return m
}

// result is what a command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// exec runs a command inside the machine and returns its outcome without
// judging it.
func (m *machine) exec(args ...string) result {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := m.Command(ctx, args[0], args[1:]...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		m.t.Fatalf("run %q: %v", args, err)
	}
	return r
}

// must runs a command that has to succeed and returns its stdout.
func (m *machine) must(args ...string) string {
	m.t.Helper()
	r := m.exec(args...)
	if r.code != 0 {
		m.t.Fatalf("%q failed: %s", args, r)
	}
	return r.stdout
}

// km runs kato-manager inside the machine.
func (m *machine) km(args ...string) result {
	m.t.Helper()
	return m.exec(append([]string{katoManager}, args...)...)
}

// mustKM runs kato-manager and requires success.
func (m *machine) mustKM(args ...string) string {
	m.t.Helper()
	return m.must(append([]string{katoManager}, args...)...)
}

// get fetches a URL inside the machine's network.
func (m *machine) get(url string) (string, error) {
	r := m.exec("curl", "-sS", "--max-time", "5", "-f", url)
	if r.code != 0 {
		return "", fmt.Errorf("GET %s: %s", url, r)
	}
	return r.stdout, nil
}

// post sends a POST inside the machine's network.
func (m *machine) post(url, body string) string {
	m.t.Helper()
	return m.must("curl", "-sS", "--max-time", "5", "-f", "-X", "POST", "-d", body, url)
}

func (m *machine) activeState(unit string) string {
	m.t.Helper()
	return strings.TrimSpace(m.exec("systemctl", "show", "-P", "ActiveState", unit).stdout)
}

func (m *machine) readFile(path string) string {
	m.t.Helper()
	data, err := os.ReadFile(filepath.Join(m.Root(), path))
	if err != nil {
		return ""
	}
	return string(data)
}

func (m *machine) exists(path string) bool {
	// Lstat: an absolute symlink would resolve against the host root.
	_, err := os.Lstat(filepath.Join(m.Root(), path))
	return err == nil
}

// listJSON returns `kato-manager list --json` by instance ID.
func (m *machine) listJSON() map[string]map[string]any {
	m.t.Helper()
	var rows []map[string]any
	if err := json.Unmarshal([]byte(m.mustKM("list", "--json")), &rows); err != nil {
		m.t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, r := range rows {
		out[r["id"].(string)] = r
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func (m *machine) waitFor(desc string, timeout time.Duration, cond func() bool) {
	m.t.Helper()
	err := sdharness.WaitFor(context.Background(), timeout, desc, func() (bool, error) { return cond(), nil })
	if err != nil {
		m.t.Fatal(err)
	}
}

// subtest runs f as t's subtest name on m, then stops every instance and
// fails the subtest if any is left, or if leftovers, when set, finds
// something else left behind.
func (m *machine) subtest(t *testing.T, name string, f func(t *testing.T), leftovers func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		m.t = t
		defer func() {
			m.mustKM("stop", "--all", "--no-mongo")
			if rows := m.listJSON(); len(rows) != 0 {
				t.Fatalf("instances left after stop --all: %v", rows)
			}
			if leftovers != nil {
				leftovers(t)
			}
		}()
		f(t)
	})
}
