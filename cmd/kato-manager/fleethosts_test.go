package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/remote"
)

// fleetHost gives host of fakeRemote a kato-manager that appends each call's
// arguments to HOST.calls and its input to HOST.stdin, exits diffCode from
// diff and prints "applied" from apply.
func fleetHost(t *testing.T, dir, host string, diffCode int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
		t.Fatal(err)
	}
	calls, stdin := remote.Quote(filepath.Join(dir, host+".calls")), remote.Quote(filepath.Join(dir, host+".stdin"))
	script := fmt.Sprintf(`#!/bin/sh
printf '%%s ' "$@" >>%s
printf '\n' >>%s
: >%s
while IFS= read -r line; do printf '%%s\n' "$line" >>%s; done
case $1 in
diff) echo "+ planned"; echo "refused here" >&2; exit %d ;;
apply) echo applied ;;
esac
`, calls, calls, stdin, stdin, diffCode)
	if err := os.WriteFile(filepath.Join(dir, host, "kato-manager"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func readCalls(t *testing.T, dir, host string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, host+".calls"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, c := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		calls = append(calls, strings.TrimSpace(c))
	}
	return calls
}

// TestFleetFileNamingHosts: a file whose entries all name other hosts goes
// whole to each of them, on standard input, with the entries to take; each
// checks first, and one host's refusal stops every apply. This host, named
// by no entry, is not touched (runCLI fails on a registry written).
func TestFleetFileNamingHosts(t *testing.T) {
	fleet := "instances:\n  - {id: a, host: alpha, port: 8001}\n  - {id: b, host: root@beta, port: 8001}\n"
	file := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(file, []byte(fleet), 0o644); err != nil {
		t.Fatal(err)
	}
	wantArgs := func(verb, host string, extra ...string) string {
		return strings.Join(append([]string{verb, "-f", "-", "--file-name", file, "--entries-of", host}, extra...), " ")
	}

	t.Run("apply", func(t *testing.T) {
		dir := fakeRemote(t)
		fleetHost(t, dir, "alpha", 1)
		fleetHost(t, dir, "beta", 0)
		code, stdout, stderr := runCLI(t, "", "apply", "-f", file, "--prune", "--parallel", "3")
		if code != 0 || !strings.Contains(stdout, "alpha: applied\n") || !strings.Contains(stdout, "root@beta: applied\n") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		for host, name := range map[string]string{"alpha": "alpha", "beta": "root@beta"} {
			calls := readCalls(t, dir, host)
			want := []string{wantArgs("diff", name, "--prune"), wantArgs("apply", name, "--prune", "--parallel=3")}
			if !slices.Equal(calls, want) {
				t.Errorf("%s got %q, want %q", host, calls, want)
			}
			if in, _ := os.ReadFile(filepath.Join(dir, host+".stdin")); string(in) != fleet {
				t.Errorf("%s read %q, want the whole file", host, in)
			}
		}
	})

	t.Run("one host refuses", func(t *testing.T) {
		dir := fakeRemote(t)
		fleetHost(t, dir, "alpha", 0)
		fleetHost(t, dir, "beta", 2)
		code, stdout, stderr := runCLI(t, "", "apply", "-f", file)
		if code != 2 || !strings.Contains(stderr, "root@beta: refused here") || !strings.Contains(stderr, "no host was changed") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		for _, host := range []string{"alpha", "beta"} {
			for _, c := range readCalls(t, dir, host) {
				if strings.HasPrefix(c, "apply") {
					t.Errorf("%s was asked to apply after beta refused: %q", host, c)
				}
			}
		}
	})

	t.Run("diff", func(t *testing.T) {
		dir := fakeRemote(t)
		fleetHost(t, dir, "alpha", 0)
		fleetHost(t, dir, "beta", 1)
		code, stdout, stderr := runCLI(t, "", "diff", "-f", file)
		if code != 1 || !strings.Contains(stdout, "root@beta: + planned") {
			t.Fatalf("exit %d (want 1: beta has changes)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		fleetHost(t, dir, "beta", 0)
		if code, _, stderr := runCLI(t, "", "diff", "-f", file); code != 0 {
			t.Errorf("diff with nothing to do anywhere: exit %d, %s", code, stderr)
		}
	})
}

// TestFleetFromStandardInput: the receiving side reads the file on standard
// input, takes only its entries, and names the file as written in errors.
func TestFleetFromStandardInput(t *testing.T) {
	dir := t.TempDir()
	fleet := "instances:\n  - {id: a, port: 8001}\n  - {id: b, host: beta, port: 8002, max_predictions: 0}\n  - {id: c, host: beta, port: 8003}\n"
	base := []string{"--config", filepath.Join(dir, "kato.toml"), "--registry", filepath.Join(dir, "instances.toml")}
	code, stdout, stderr := runWithInput(t, fleet, append(base, "diff", "-f", "-", "--file-name", "/srv/fleet.yaml", "--entries-of", "beta")...)
	if code != 2 || !strings.Contains(stderr, "/srv/fleet.yaml:3: b: invalid max_predictions 0") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	fleet = strings.Replace(fleet, ", max_predictions: 0", "", 1)
	code, stdout, stderr = runWithInput(t, fleet, append(base, "diff", "-f", "-", "--entries-of", "beta")...)
	if code != 1 || !strings.Contains(stdout, "+ b") || !strings.Contains(stdout, "+ c") || strings.Contains(stdout, "+ a") {
		t.Fatalf("beta's plan: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "instances.toml")); err == nil {
		t.Error("diff wrote a registry")
	}
}
