package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs kato-manager in-process with its own config and registry
// paths, so nothing of the host is read or written.
func runCLI(t *testing.T, configText string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	configPath := filepath.Join(dir, "kato.toml")
	if configText != "" {
		if err := os.WriteFile(configPath, []byte(configText), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb strings.Builder
	full := append([]string{"--config", configPath, "--registry", filepath.Join(dir, "instances.toml")}, args...)
	code = run(context.Background(), full, &out, &errb)
	if _, err := os.Stat(filepath.Join(dir, "instances.toml")); err == nil {
		t.Errorf("%q wrote a registry", args)
	}
	return code, out.String(), errb.String()
}

func TestUsageErrorsExitTwoWithoutSystemd(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"start", "--bogus"}, "unknown flag: --bogus"},
		{"bad id", []string{"start", "--id", "my processor"}, `invalid --id "my processor"`},
		{"long id", []string{"start", "--id", strings.Repeat("a", 65)}, "invalid --id"},
		{"recall threshold", []string{"start", "--id", "a", "--recall-threshold", "1.5"}, "invalid --recall-threshold 1.5: must be between 0 and 1"},
		{"indexer", []string{"start", "--id", "a", "--indexer-type", "HNSW"}, "invalid --indexer-type"},
		{"port", []string{"start", "--id", "a", "--port", "0x"}, `invalid argument "0x"`},
		{"port range", []string{"start", "--id", "a", "--port", "65536"}, "invalid --port 65536"},
		{"relative command", []string{"start", "--id", "a", "--processor-command", "kato"}, "invalid --processor-command"},
		{"start with arguments", []string{"start", "a"}, "start takes no arguments"},
		{"stop two", []string{"stop", "a", "b"}, "stop takes one instance"},
		{"stop mongo flags", []string{"stop", "--with-mongo", "--no-mongo"}, "exclude each other"},
		{"stop one with all", []string{"stop", "a", "--all"}, "go without an instance"},
		{"restart nothing", []string{"restart"}, "restart takes one instance"},
		{"list argument", []string{"list", "x"}, "list takes no arguments"},
		{"gc argument", []string{"gc", "x"}, "gc takes no arguments"},
		{"liveness argument", []string{"liveness", "x"}, "liveness takes no arguments"},
		{"logs negative", []string{"logs", "a", "-n", "-1"}, "invalid --lines -1"},
		{"workers nothing", []string{"workers"}, "workers needs a subcommand"},
		{"workers unknown", []string{"workers", "dance"}, `unknown workers subcommand "dance"`},
		{"workers scale word", []string{"workers", "scale", "many"}, "invalid N many"},
		{"workers poll", []string{"workers", "start", "--poll-interval", "0"}, "invalid --poll-interval 0: must be a number of seconds from 0.01 to 3600"},
		{"workers poll NaN", []string{"workers", "start", "--poll-interval", "NaN"}, "invalid --poll-interval NaN: must be a number of seconds from 0.01 to 3600"},
		{"workers poll +Inf", []string{"workers", "start", "--poll-interval", "+Inf"}, "invalid --poll-interval +Inf: must be a number of seconds from 0.01 to 3600"},
		{"workers poll 1e300", []string{"workers", "start", "--poll-interval", "1e300"}, "invalid --poll-interval 1e+300: must be a number of seconds from 0.01 to 3600"},
		{"workers poll negative", []string{"workers", "start", "--poll-interval=-2"}, "invalid --poll-interval -2: must be a number of seconds from 0.01 to 3600"},
		{"queue nothing", []string{"queue"}, "queue needs a subcommand"},
		{"queue enqueue word", []string{"queue", "enqueue", "abc"}, "invalid CONTENT_ID abc: must be a positive whole number"},
		{"queue enqueue none", []string{"queue", "enqueue"}, "takes one or more"},
		{"queue list status", []string{"queue", "list", "--status", "done"}, `invalid status "done"`},
		{"serve address", []string{"serve", "--listen", "nowhere"}, `invalid --listen "nowhere"`},
		{"weight range", []string{"start", "--id", "a", "--group", "g", "--weight", "300"}, "invalid --weight 300: must be between 1 and 256"},
		{"weight without a group", []string{"start", "--id", "a", "--weight", "5"}, "invalid --weight 5: goes with a group"},
		{"scale without a group", []string{"scale", "3"}, "scale takes --group NAME and one number"},
		{"scale without a number", []string{"scale", "--group", "web"}, "scale takes --group NAME and one number"},
		{"scale word", []string{"scale", "--group", "web", "many"}, "invalid N many: must be a whole number between 0 and 256"},
		{"scale too many", []string{"scale", "--group", "web", "257"}, "invalid N 257"},
		{"scale bad group", []string{"scale", "--group", "a b", "2"}, `invalid --group "a b"`},
		{"scale unknown group", []string{"scale", "--group", "web", "2"}, "invalid --group web: must name a [groups.NAME] of kato.toml"},
		{"scale on a bad host", []string{"scale", "--group", "web", "2", "--on-host", "-oProxy"}, "invalid --on-host -oProxy"},
		{"scale on a host without a front", []string{"scale", "--group", "web", "2", "--on-host", "beta"}, "invalid --group web: must name a group whose front runs on this host to go with --on-host"},
		{"scale on a host with a prefix", []string{"scale", "--group", "web", "2", "--on-host", "beta", "--prefix", "w"}, "--prefix goes without --on-host"},
		{"apply surge negative", []string{"apply", "-f", "x.yaml", "--surge=-1"}, "invalid --surge -1: must be between 0 and 256"},
		{"max-unavailable without a group", []string{"restart", "a", "--max-unavailable", "2"}, "--max-unavailable goes with --group"},
		{"max-unavailable zero", []string{"restart", "--group", "g", "--max-unavailable", "0"}, "invalid --max-unavailable 0: must be at least 1"},
		{"max-unavailable without a front", []string{"restart", "--group", "g", "--max-unavailable", "2"}, "--max-unavailable goes with a group that has a front"},
		{"surge without a group", []string{"restart", "a", "--surge", "1"}, "--surge goes with --group"},
		{"surge negative", []string{"restart", "--group", "g", "--surge=-1"}, "invalid --surge -1: must be between 0 and 256"},
		{"surge without a front", []string{"restart", "--group", "g", "--surge", "1"}, "--surge goes with a group that has a front"},
		{"max-unavailable negative with surge", []string{"restart", "--group", "g", "--surge", "1", "--max-unavailable=-1"}, "invalid --max-unavailable -1: must be at least 0"},
		{"max-unavailable zero without surge", []string{"restart", "--group", "g", "--max-unavailable", "0", "--surge", "0"}, "or 0 with --surge 1 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, stderr, tc.want)
			}
		})
	}
}

func TestMalformedConfigExitsOneNamingFileAndLine(t *testing.T) {
	code, _, stderr := runCLI(t, "[processor]\nlog_level = \"LOUD\"\n", "start", "--id", "a")
	if code != exitFailed || !strings.Contains(stderr, "kato.toml") || !strings.Contains(stderr, "line 2") || !strings.Contains(stderr, "LOUD") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "[processor]\ncolour = 1\n", "list")
	if code != exitFailed || !strings.Contains(stderr, "unknown key") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "--version")
	if code != exitOK || stdout != "kato-manager "+version+"\n" {
		t.Fatalf("--version: %d %q", code, stdout)
	}
	code, stdout, _ = runCLI(t, "", "--help")
	for _, cmd := range []string{"start", "stop", "restart", "list", "status", "logs", "gc", "install-units", "workers", "queue", "serve"} {
		if !strings.Contains(stdout, "  "+cmd) {
			t.Errorf("--help lacks %s", cmd)
		}
	}
	if code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
}

func TestStatusWithoutSystemd(t *testing.T) {
	if _, err := os.Stat("/run/dbus/system_bus_socket"); err == nil {
		t.Skip("a system bus runs here; this test needs a host without one")
	}
	code, stdout, _ := runCLI(t, "", "status")
	if code != exitFailed || !strings.Contains(stdout, "systemd: unreachable") {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	code, stdout, _ = runCLI(t, "", "status", "--json")
	if code != exitFailed || !strings.Contains(stdout, `"systemd_reachable": false`) {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
}

// TestBadInputExitsTwoAndChangesNothing holds every bad input the safety
// review found accepted or reported late: each is refused before systemd is
// asked anything (the test host has none), with exit 2 and a message naming
// the field, the value and the rule, and runCLI checks no registry appears.
func TestBadInputExitsTwoAndChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"empty id", []string{"start", "--id", ""}, `invalid --id "": must be 1 to 64 characters long`},
		{"empty id with =", []string{"start", "--id="}, `invalid --id "": must be 1 to 64 characters long`},
		{"port zero", []string{"start", "--id", "a", "--port", "0"}, "invalid --port 0: must be between 1 and 65535"},
		{"zmq port zero", []string{"start", "--id", "a", "--zmq-port", "0"}, "invalid --zmq-port 0: must be between 1 and 65535"},
		{"negative timeout", []string{"start", "--id", "a", "--timeout", "-5s"}, "invalid --timeout -5s: must be greater than 0"},
		{"zero timeout", []string{"start", "--id", "a", "--timeout", "0s"}, "invalid --timeout 0s: must be greater than 0"},
		{"empty name", []string{"start", "--id", "a", "--name", ""}, `invalid --name "": must be 1 to 128 characters long`},
		{"NaN recall threshold", []string{"start", "--id", "a", "--recall-threshold", "NaN"}, "invalid --recall-threshold NaN: must be between 0 and 1"},
		{"Inf recall threshold", []string{"start", "--id", "a", "--recall-threshold", "+Inf"}, "invalid --recall-threshold +Inf: must be between 0 and 1"},
		{"restart negative timeout", []string{"restart", "a", "--timeout", "-1s"}, "invalid --timeout -1s: must be greater than 0"},
		{"restart unknown", []string{"restart", "nope"}, `no instance with id or name "nope"`},
		{"stop unknown", []string{"stop", "nope"}, `no instance with id or name "nope"`},
		{"stop unknown id flag", []string{"stop", "--id", "nope"}, `no instance with id or name "nope"`},
		{"stop empty name", []string{"stop", "--name", ""}, `invalid --name "": must not be empty`},
		{"logs unknown", []string{"logs", "nope"}, `no instance with id or name "nope"`},
		{"scale zero", []string{"workers", "scale", "0"}, "invalid N 0: must be a whole number between 1 and 64"},
		{"scale 65", []string{"workers", "scale", "65"}, "invalid N 65: must be a whole number between 1 and 64"},
		{"scale negative", []string{"workers", "scale", "--", "-1"}, "invalid N -1: must be a whole number between 1 and 64"},
		{"start zero workers", []string{"workers", "start", "-n", "0"}, "invalid --workers 0: must be between 1 and 64"},
		{"start 65 workers", []string{"workers", "start", "-n", "65"}, "invalid --workers 65: must be between 1 and 64"},
		{"NaN poll interval", []string{"workers", "start", "--poll-interval", "NaN"}, "invalid --poll-interval NaN: must be a number of seconds from 0.01 to 3600"},
		{"Inf poll interval", []string{"workers", "start", "--poll-interval", "Inf"}, "invalid --poll-interval +Inf: must be a number of seconds from 0.01 to 3600"},
		{"negative poll interval", []string{"workers", "start", "--poll-interval", "-1"}, "invalid --poll-interval -1: must be a number of seconds from 0.01 to 3600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("printed %q", stdout)
			}
		})
	}
}

// TestUserScopePaths checks that --user reads the configuration and the
// queue at the user's XDG places, and that a user scope without a home is
// a usage error that touches nothing.
func TestUserScopePaths(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("XDG_STATE_HOME", filepath.Join(home, "state"))
	t.Setenv("KATO_CONFIG", "")
	t.Setenv("KATO_REGISTRY", "")
	for _, k := range []string{"DB_PATH", "KG_MAX_RETRIES"} {
		t.Setenv(k, "")
	}
	// A bad user configuration is reported with its path: --user reads
	// ~/.config/kato/kato.toml.
	conf := filepath.Join(home, ".config", "kato", "kato.toml")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("[processor]\ncolour = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	if code := run(context.Background(), []string{"--user", "list"}, &out, &errb); code != exitFailed || !strings.Contains(errb.String(), conf) {
		t.Errorf("--user list with a bad %s: exit %d, stderr %q", conf, code, errb.String())
	}
	// The queue is made at $XDG_STATE_HOME/kato/kg/kg.db, directory and all.
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"--user", "queue", "stats"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "total 0") {
		t.Fatalf("--user queue stats: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	if _, err := os.Stat(filepath.Join(home, "state", "kato", "kg", "kg.db")); err != nil {
		t.Errorf("queue database: %v", err)
	}

	t.Setenv("HOME", "")
	t.Setenv("XDG_STATE_HOME", "")
	errb.Reset()
	if code := run(context.Background(), []string{"--user", "queue", "stats"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "invalid HOME") {
		t.Errorf("--user without HOME: exit %d, stderr %q", code, errb.String())
	}
}

// TestHelpSaysWhatItWaitsForAndShowsPlainFlags: start's help names the
// health request it waits for, and a flag that takes no value is shown as
// --flag, in the help and the man pages alike.
func TestHelpSaysWhatItWaitsForAndShowsPlainFlags(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "start", "--help")
	if code != exitOK {
		t.Fatalf("start --help: exit %d", code)
	}
	if !strings.Contains(stdout, "health request") || strings.Contains(stdout, "until the processor listens") {
		t.Errorf("start --help does not say it waits for the health request:\n%s", stdout)
	}
	if strings.Contains(stdout, "(default 0s)") {
		t.Errorf("start --help shows a zero default:\n%s", stdout)
	}
	for _, want := range []string{"      --no-predictions ", "      --user ", "      --no-color "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("start --help lacks %q", want)
		}
	}
	for _, args := range [][]string{{"start", "--help"}, {"stop", "--help"}, {"--help"}, {"queue", "clear", "--help"}} {
		if _, out, _ := runCLI(t, "", args...); strings.Contains(out, "[=true|false]") {
			t.Errorf("%q shows [=true|false]:\n%s", args, out)
		}
	}
}
