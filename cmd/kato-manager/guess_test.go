package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// TestSuggestsCommandsAndFlags: a mistyped command is answered with the
// nearest ones whatever flags follow it, and a mistyped flag with the
// nearest flags of its command.
func TestSuggestsCommandsAndFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"command", []string{"strat"}, []string{`unknown command "strat"`, "did you mean start?"}},
		{"command with flags after", []string{"strat", "--id", "a"}, []string{`unknown command "strat"`, "did you mean start?"}},
		{"command with flags before", []string{"--id", "a", "strat"}, []string{`unknown command "strat"`, "did you mean start?"}},
		{"command with a bool flag after", []string{"strat", "--user", "--bogus"}, []string{`unknown command "strat"`, "did you mean start?"}},
		{"subcommand with flags", []string{"workers", "strat", "-n", "3"}, []string{`unknown workers subcommand "strat"`, "did you mean start or stats?"}},
		{"flag", []string{"start", "--id", "a", "--max-prediction", "3"}, []string{"unknown flag: --max-prediction; did you mean --max-predictions?", "run `kato-manager start --help`"}},
		{"flag of a subcommand", []string{"workers", "start", "--poll-intervals", "3"}, []string{"unknown flag: --poll-intervals; did you mean --poll-interval?"}},
		{"flag far from any", []string{"start", "--bogus"}, []string{"unknown flag: --bogus; run `kato-manager start --help`"}},
		{"flag of the root", []string{"--regsitry", "x", "list"}, []string{"unknown flag: --regsitry; did you mean --registry?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tc.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, stderr %q; want exit 2", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
		})
	}
}

// registryWith writes a registry of instances, ID to name, and returns its
// path.
func registryWith(t *testing.T, instances map[string]string, group string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "instances.toml")
	now := time.Now().UTC().Truncate(time.Second)
	err := config.OpenRegistry(path).Update(func(r *config.Registry) error {
		port := 8001
		for _, id := range slices.Sorted(maps.Keys(instances)) {
			r.Instances[id] = &config.Instance{ID: id, Name: instances[id], Unit: "kato@" + id + ".service", APIPort: port, Group: group,
				Parameters: config.DefaultParameters(), Network: config.NetworkHost, Created: now, Updated: now}
			port++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// runOn runs kato-manager on the registry at registry, with no kato.toml.
func runOn(t *testing.T, registry string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	full := append([]string{"--config", filepath.Join(t.TempDir(), "kato.toml"), "--registry", registry}, args...)
	code = run(context.Background(), full, &out, &errb)
	return code, out.String(), errb.String()
}

// TestInstanceByPartOfName: a unique beginning or part of a name selects its
// instance; an ambiguous one lists the candidates and changes nothing; an
// unknown one is answered with the nearest IDs and names.
func TestInstanceByPartOfName(t *testing.T) {
	registry := registryWith(t, map[string]string{"processor-1": "Main Processor", "processor-2": "Secondary", "processor-3": "Main Backup"}, "")
	before, err := os.ReadFile(registry)
	if err != nil {
		t.Fatal(err)
	}
	// logs reads the journal through journalctl: a stand-in records which
	// unit it was asked for.
	bin := t.TempDir()
	argsFile := filepath.Join(bin, "args")
	script := fmt.Sprintf("#!/bin/sh\necho \"$@\" >> %s\n", argsFile)
	if err := os.WriteFile(filepath.Join(bin, "journalctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	for _, tc := range []struct {
		ref  string
		unit string
	}{
		{"Second", "kato@processor-2.service"},
		{"backup", "kato@processor-3.service"},
		{"Main Processor", "kato@processor-1.service"},
		{"processor-1", "kato@processor-1.service"},
	} {
		os.Remove(argsFile)
		if code, _, stderr := runOn(t, registry, "logs", tc.ref); code != exitOK {
			t.Fatalf("logs %q: exit %d: %s", tc.ref, code, stderr)
		}
		got, _ := os.ReadFile(argsFile)
		if !strings.Contains(string(got), "-u "+tc.unit) && !strings.Contains(string(got), "--unit="+tc.unit) && !strings.Contains(string(got), "--unit "+tc.unit) {
			t.Errorf("logs %q read %q, want the journal of %s", tc.ref, got, tc.unit)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"stop ambiguous name", []string{"stop", "--name", "Main"}, []string{`"Main"`, "processor-1 (Main Processor)", "processor-3 (Main Backup)"}},
		{"stop ambiguous argument", []string{"stop", "main"}, []string{"processor-1 (Main Processor)", "processor-3 (Main Backup)"}},
		{"restart ambiguous", []string{"restart", "Main"}, []string{"processor-1 (Main Processor)"}},
		{"logs ambiguous", []string{"logs", "Main"}, []string{"processor-3 (Main Backup)"}},
		{"stop typo", []string{"stop", "procesor-1"}, []string{`no instance with id or name "procesor-1"; did you mean processor-1?`}},
		{"restart typo", []string{"restart", "Secondry"}, []string{"did you mean Secondary?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runOn(t, registry, tc.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, stderr %q; want 2", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
			if after, _ := os.ReadFile(registry); string(after) != string(before) {
				t.Errorf("the registry changed")
			}
		})
	}
}

// TestCompletionOffersEachInstanceOnce: instances that share the default
// name are offered once each, by ID; --name offers each name once; the
// --processor, --template and --group flags offer what kato.toml and the
// registry name.
func TestCompletionOffersEachInstanceOnce(t *testing.T) {
	registry := registryWith(t, map[string]string{"a": "KatoProcessor", "b": "KatoProcessor", "c": "KatoProcessor", "d": "Other"}, "edge")
	cfg := filepath.Join(t.TempDir(), "kato.toml")
	toml := "[processors.v1]\ncommand = [\"/bin/true\"]\n\n[processors.v2]\ncommand = [\"/bin/true\"]\n\n[templates.fast]\nmax_predictions = 5\n"
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(args ...string) []string {
		t.Helper()
		var out, errb strings.Builder
		full := append([]string{"__complete", "--config", cfg, "--registry", registry}, args...)
		if code := run(context.Background(), full, &out, &errb); code != exitOK {
			t.Fatalf("%q: exit %d: %s", full, code, errb.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		return lines[:len(lines)-1] // the last is cobra's directive
	}
	ids := []string{"a\tKatoProcessor", "b\tKatoProcessor", "c\tKatoProcessor", "d\tOther"}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"stop", ""}, ids},
		{[]string{"restart", ""}, ids},
		{[]string{"logs", ""}, ids},
		{[]string{"stop", "--id", ""}, ids},
		{[]string{"stop", "--name", ""}, []string{"KatoProcessor\ta, b, c", "Other\td"}},
		{[]string{"start", "--processor", ""}, []string{"v1", "v2"}},
		{[]string{"start", "--template", ""}, []string{"fast"}},
		{[]string{"start", "--group", ""}, []string{"edge"}},
		{[]string{"stop", "--group", ""}, []string{"edge"}},
		{[]string{"restart", "--group", ""}, []string{"edge"}},
		{[]string{"list", "--group", ""}, []string{"edge"}},
	} {
		if got := complete(tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("completion of %q: %q, want %q", tc.args, got, tc.want)
		}
	}
}

// asUser makes the test run as euid for kato-manager's checks.
func asUser(t *testing.T, euid int) {
	t.Helper()
	old := geteuid
	geteuid = func() int { return euid }
	t.Cleanup(func() { geteuid = old })
}

// TestPermissionDeniedSaysRootOrUser: a file a normal user may not read is
// answered with the two ways on: root, or --user.
func TestPermissionDeniedSaysRootOrUser(t *testing.T) {
	// Writable only, and refused even to root: a real EACCES on open.
	const unreadable = "/proc/sys/vm/drop_caches"
	hint := "run it with sudo; or add --user"
	t.Run("a normal user", func(t *testing.T) {
		asUser(t, 1000)
		var out, errb strings.Builder
		code := run(context.Background(), []string{"--config", unreadable, "--registry", filepath.Join(t.TempDir(), "r.toml"), "list"}, &out, &errb)
		if code != exitFailed || !strings.Contains(errb.String(), "permission denied") || !strings.Contains(errb.String(), hint) {
			t.Fatalf("exit %d, stderr %q; want exit 1, permission denied and %q", code, errb.String(), hint)
		}
	})
	t.Run("root is told nothing of root", func(t *testing.T) {
		asUser(t, 0)
		var out, errb strings.Builder
		run(context.Background(), []string{"--config", unreadable, "--registry", filepath.Join(t.TempDir(), "r.toml"), "list"}, &out, &errb)
		if !strings.Contains(errb.String(), "permission denied") || strings.Contains(errb.String(), "sudo") {
			t.Fatalf("stderr %q", errb.String())
		}
	})
}

// TestUserAsRootExplainsItself: --user as root, where root has no user
// manager, says what --user is for instead of only the bus library's error.
func TestUserAsRootExplainsItself(t *testing.T) {
	asUser(t, 0)
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
	t.Setenv("HOME", t.TempDir())
	code, _, stderr := runCLI(t, "", "--user", "list")
	for _, w := range []string{"connect to your systemd user manager", "--user is for a user without root", "as root, leave --user out"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not contain %q", stderr, w)
		}
	}
	if code != exitFailed {
		t.Errorf("exit %d, want 1", code)
	}
	asUser(t, 1000)
	if _, _, stderr := runCLI(t, "", "--user", "list"); strings.Contains(stderr, "as root") {
		t.Errorf("a normal user is told of root: %q", stderr)
	}
}
