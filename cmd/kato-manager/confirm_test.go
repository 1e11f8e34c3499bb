package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
)

// runOnTerminal runs kato-manager in-process with a terminal for standard
// input, on which answer is already typed.
func runOnTerminal(t *testing.T, answer string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	master, slave := openPTY(t)
	if _, err := master.WriteString(answer); err != nil {
		t.Fatal(err)
	}
	return runWithStdin(t, slave, args...)
}

// The question: asked on a terminal only; yes is "y" or "yes" in any case,
// anything else no; --yes asks nothing and goes ahead; off a terminal
// nothing is asked and the action goes ahead, as stop --all does.
func TestConfirm(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		terminal     bool
		yes          bool
		wantAsked    bool
		wantErr      bool
	}{
		{"y", "y\n", true, false, true, false},
		{"YES", "YES\n", true, false, true, false},
		{"n", "n\n", true, false, true, true},
		{"enter", "\n", true, false, true, true},
		{"--yes", "n\n", true, true, false, false},
		{"no terminal", "n\n", false, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			a := &app{stdout: &out}
			if tc.terminal {
				master, slave := openPTY(t)
				master.WriteString(tc.answer)
				a.stdin = slave
			} else {
				f, err := os.CreateTemp(t.TempDir(), "stdin")
				if err != nil {
					t.Fatal(err)
				}
				f.WriteString(tc.answer)
				f.Seek(0, 0)
				defer f.Close()
				a.stdin = f
			}
			err := a.confirm(tc.yes, "Delete it all?")
			if asked := out.String() == "Delete it all? [y/N] "; asked != tc.wantAsked {
				t.Errorf("question %q, want asked %v", out.String(), tc.wantAsked)
			}
			if (err != nil) != tc.wantErr {
				t.Errorf("confirm: %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// apply --prune asks on a terminal before it removes an instance; declined,
// it changes nothing and does not reach systemd.
func TestPruneAsksOnATerminal(t *testing.T) {
	dir := t.TempDir()
	registry := filepath.Join(dir, "instances.toml")
	if err := config.OpenRegistry(registry).Update(func(r *config.Registry) error {
		r.Instances["old"] = &config.Instance{ID: "old", Name: "Old", Unit: "kato@old.service", APIPort: 8001, Network: config.NetworkHost, Parameters: config.DefaultParameters(),
			Created: time.Now(), Updated: time.Now()}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(registry)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(file, []byte("instances:\n  - {id: new, port: 8002}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runOnTerminal(t, "n\n", "--config", filepath.Join(dir, "kato.toml"), "--registry", registry, "apply", "--prune", "-f", file)
	if code != 1 || stdout != "Stop and remove 1 instance(s) the file does not name (old)? [y/N] " || !strings.Contains(stderr, "not confirmed: nothing changed") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.Contains(stderr, "systemd") {
		t.Errorf("a declined apply reached systemd: %s", stderr)
	}
	if after, _ := os.ReadFile(registry); string(after) != string(before) {
		t.Errorf("a declined apply changed the registry:\n%s", after)
	}
}

// A file naming other hosts: one question, before any host is changed,
// naming what each host would remove; --yes and no terminal ask nothing.
func TestPruneOnHostsAsksOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(file, []byte("instances:\n  - {id: a, host: alpha, port: 8001}\n  - {id: b, host: beta, port: 8001}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	removing := func(t *testing.T, dir, host, id string) {
		t.Helper()
		script := filepath.Join(dir, host, "kato-manager")
		data, err := os.ReadFile(script)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(script, []byte(strings.Replace(string(data), `echo "+ planned"`, `echo "- `+id+` (port 8009)"`, 1)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	applied := func(t *testing.T, dir string) (hosts []string) {
		for _, h := range []string{"alpha", "beta"} {
			if slices.ContainsFunc(readCalls(t, dir, h), func(c string) bool { return strings.HasPrefix(c, "apply") }) {
				hosts = append(hosts, h)
			}
		}
		return hosts
	}
	for _, tc := range []struct {
		name, answer string
		terminal     bool
		extra        []string
		wantQuestion bool
		wantApplied  bool
	}{
		{"declined", "n\n", true, nil, true, false},
		{"accepted", "y\n", true, nil, true, true},
		{"--yes", "", true, []string{"--yes"}, false, true},
		{"no terminal", "", false, nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fakeRemote(t)
			fleetHost(t, dir, "alpha", 1)
			fleetHost(t, dir, "beta", 1)
			removing(t, dir, "beta", "gone")
			args := append([]string{"--config", filepath.Join(dir, "kato.toml"), "--registry", filepath.Join(dir, "instances.toml"), "apply", "--prune", "-f", file}, tc.extra...)
			var code int
			var stdout, stderr string
			if tc.terminal {
				code, stdout, stderr = runOnTerminal(t, tc.answer, args...)
			} else {
				code, stdout, stderr = runWithInput(t, tc.answer, args...)
			}
			asked := strings.Contains(stdout, "Stop and remove 1 instance(s) the file does not name (beta:gone)? [y/N] ")
			if asked != tc.wantQuestion {
				t.Errorf("asked %v, want %v\nstdout:\n%s", asked, tc.wantQuestion, stdout)
			}
			got := applied(t, dir)
			if tc.wantApplied && (code != 0 || len(got) != 2) || !tc.wantApplied && (code != 1 || len(got) != 0) {
				t.Errorf("exit %d, applied on %v; want applied %v\nstdout:\n%s\nstderr:\n%s", code, got, tc.wantApplied, stdout, stderr)
			}
		})
	}
}

// queue clear asks on a terminal; declined, the queue keeps its items.
func TestQueueClearAsksOnATerminal(t *testing.T) {
	configText, kgDir := queueDirFor(t)
	kgdbtest.StoreDocuments(t, filepath.Join(kgDir, "kg.db"), 7, 8, 9)
	dir := t.TempDir()
	configPath := filepath.Join(dir, "kato.toml")
	if err := os.WriteFile(configPath, []byte(configText), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--config", configPath, "--registry", filepath.Join(dir, "instances.toml")}
	if code, _, stderr := runWithInput(t, "", append(base, "queue", "enqueue", "7", "8")...); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr)
	}
	clear := append(base, "queue", "clear", "--status", "pending")
	code, stdout, stderr := runOnTerminal(t, "n\n", clear...)
	if code != 1 || stdout != "Delete every pending item of the KG queue? [y/N] " || !strings.Contains(stderr, "not confirmed") {
		t.Fatalf("declined: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runOnTerminal(t, "", append(clear, "--yes")...)
	if code != 0 || stdout != "2 pending item(s) deleted\n" {
		t.Fatalf("--yes: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if code, stdout, stderr := runWithInput(t, "", append(base, "queue", "enqueue", "9")...); code != 0 {
		t.Fatalf("enqueue: exit %d: %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = runOnTerminal(t, "y\n", clear...)
	if code != 0 || !strings.HasSuffix(stdout, "? [y/N] 1 pending item(s) deleted\n") {
		t.Fatalf("accepted: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
