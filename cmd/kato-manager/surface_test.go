package main

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// surface is every command of kato-manager with every flag it takes, as
// each command's --help prints them: "--name[/-s] TYPE[ =DEFAULT]". It was
// taken from the commands before they moved onto a command tree; a flag
// may be added here, never dropped or changed, or scripts break.
var surface = map[string][]string{
	"": {`--config string ="/etc/kato/kato.toml"`, `--registry string ="/var/lib/kato/instances.toml"`, "--user bool", "--version bool", "--host/-H string", "--no-color bool"},
	"start": {`--auto-act-method string ="none"`, "--auto-act-threshold float =0.8", "--id string", `--indexer-type string ="VI"`,
		`--log-level/-l string ="INFO"`, "--max-predictions int =100", "--max-seq-length int",
		"--name string", "--network string", "--no-predictions bool", "--no-sort bool", "--persistence int =5", "--port/-p int",
		"--processor string", "--processor-command string", "--quiescence int =3",
		"--recall-threshold float =0.1", "--search-depth int =10", "--smoothness int =3", "--tag/-t string", "--timeout duration",
		"--update-frequencies bool", "--zmq-port int", "--template string", "--group string", "--parallel int", "--weight int"},
	"version":       {},
	"stop":          {"--all bool", "--id string", "--name string", "--no-mongo bool", "--with-mongo bool", "--group string", "--parallel int"},
	"restart":       {"--timeout duration", "--group string", "--parallel int", "--max-unavailable int =1", "--surge int"},
	"scale":         {"--group string", "--timeout duration", "--parallel int"},
	"list":          {"--json bool", "--fronts bool", "--group string"},
	"apply":         {"--file/-f string", "--prune bool", "--dry-run bool", "--yes bool", "--parallel int", "--timeout duration"},
	"diff":          {"--file/-f string", "--prune bool"},
	"export":        {`--format string ="yaml"`},
	"status":        {"--json bool"},
	"logs":          {"--follow/-f bool", "--lines/-n int =50", "--since string"},
	"gc":            {},
	"liveness":      {"--json bool"},
	"install-units": {},
	"serve": {`--listen string ="127.0.0.1:9090"`, `--token-file string ="/etc/kato/serve.token"`, "--sample-interval duration =15s",
		"--snapshot-age duration =1s", "--max-requests int =256", "--public-reads bool", "--allow-host strings", "--tls-cert string", "--tls-key string"},
	"workers start":      {"--poll-interval float", "--workers/-n int"},
	"workers stop":       {},
	"workers restart":    {},
	"workers scale":      {},
	"workers health":     {"--json bool", "--restart-unhealthy bool"},
	"workers stats":      {"--json bool"},
	"queue enqueue":      {"--priority int =1"},
	"queue list":         {"--json bool", "--limit int =50", "--status string"},
	"queue retry-failed": {},
	"queue stats":        {"--json bool"},
	"queue priority":     {},
	"queue delete":       {},
	"queue requeue":      {"--all bool", "--priority int =1"},
	"queue clear":        {"--older-than string", "--status string", "--yes bool"},
	"queue migrate":      {"--json bool", "--to string"},
}

// usageLine is one flag line of pflag's FlagUsages.
var usageLine = regexp.MustCompile(`^\s+(?:-([a-zA-Z]), )?--([a-z][a-z0-9-]*)(\[=true\|false\])?(?: ([a-z]+))?\s{2,}.*?(?: \(default (.*)\))?$`)

// helpFlags runs `kato-manager PATH --help` and returns the flags its help
// lists for the command itself, in the form of surface, without --help.
func helpFlags(t *testing.T, path string) []string {
	t.Helper()
	var out, errb strings.Builder
	args := append(strings.Fields(path), "--help")
	if code := run(context.Background(), args, &out, &errb); code != exitOK {
		t.Fatalf("%q: exit %d\n%s%s", args, code, out.String(), errb.String())
	}
	help := out.String() + errb.String()
	_, section, ok := strings.Cut(help, "\nFlags:\n")
	if !ok {
		if path == "" {
			t.Fatalf("kato-manager --help lists no flags:\n%s", help)
		}
		return nil
	}
	// Cobra lists the flags inherited from the root apart.
	section, _, _ = strings.Cut(section, "\nGlobal Flags:\n")
	flags := []string{}
	for _, l := range strings.Split(section, "\n") {
		m := usageLine.FindStringSubmatch(l)
		if m == nil || m[2] == "help" {
			continue
		}
		f := "--" + m[2]
		if m[1] != "" {
			f += "/-" + m[1]
		}
		typ := m[4]
		if m[3] != "" || typ == "" {
			typ = "bool"
		}
		f += " " + typ
		// pflag quotes a string's default; an unquoted one is the usage
		// text's own words.
		if m[5] != "" && (typ != "string" || strings.HasPrefix(m[5], `"`)) {
			f += " =" + m[5]
		}
		flags = append(flags, f)
	}
	return flags
}

func TestEveryCommandKeepsItsFlags(t *testing.T) {
	for path, want := range surface {
		got := helpFlags(t, path)
		for _, f := range want {
			if !slices.Contains(got, f) {
				t.Errorf("kato-manager %s --help lacks %s; lists %q", path, f, got)
			}
		}
		if path == "" {
			continue
		}
		for _, f := range got {
			if !slices.Contains(want, f) {
				t.Errorf("kato-manager %s has %s, which this test does not list: add it to surface", path, f)
			}
		}
	}
}

func TestGlobalFlagsBeforeTheCommandStillWork(t *testing.T) {
	code, out, _ := runCLI(t, "", "--config=/nonexistent/kato.toml", "list", "x")
	if code != exitUsage || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
}

// TestExitCodes enumerates the exit codes and what gives each: 0 done, 1
// failed, 2 a bad invocation, with nothing changed.
func TestExitCodes(t *testing.T) {
	if exitOK != 0 || exitFailed != 1 || exitUsage != 2 {
		t.Fatalf("exit codes %d %d %d, want 0 1 2", exitOK, exitFailed, exitUsage)
	}
	for _, tc := range []struct {
		args   []string
		config string
		want   int
	}{
		{[]string{"--help"}, "", exitOK},
		{[]string{"--version"}, "", exitOK},
		{[]string{"start", "--help"}, "", exitOK},
		{[]string{"workers", "scale", "--help"}, "", exitOK},
		{[]string{"frobnicate"}, "", exitUsage},
		{[]string{"--bogus"}, "", exitUsage},
		{[]string{"--config"}, "", exitUsage},
		{[]string{"start", "--bogus"}, "", exitUsage},
		{[]string{"workers", "dance"}, "", exitUsage},
		{[]string{"queue", "list", "--limit", "0"}, "", exitUsage},
		{[]string{"list"}, "[processor]\ncolour = 1\n", exitFailed},
	} {
		code, stdout, stderr := runCLI(t, tc.config, tc.args...)
		if code != tc.want {
			t.Errorf("%q: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.want, stdout, stderr)
		}
	}
}

// TestCompletesInstancesFromTheRegistry: the shells' completion scripts ask
// `kato-manager __complete`, which offers the registry's IDs, and names for
// --name.
func TestCompletesInstancesFromTheRegistry(t *testing.T) {
	dir := t.TempDir()
	registry := filepath.Join(dir, "instances.toml")
	now := time.Now().UTC().Truncate(time.Second)
	err := config.OpenRegistry(registry).Update(func(r *config.Registry) error {
		for i, name := range []string{"Main Processor", "Secondary"} {
			id := fmt.Sprintf("processor-%d", i+1)
			r.Instances[id] = &config.Instance{ID: id, Name: name, Unit: "kato@" + id + ".service", APIPort: 8001 + i, ZMQPort: 5555 + i,
				Parameters: config.DefaultParameters(), Network: config.NetworkHost, Created: now, Updated: now}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	complete := func(args ...string) []string {
		t.Helper()
		var out, errb strings.Builder
		full := append([]string{"__complete", "--registry", registry}, args...)
		if code := run(context.Background(), full, &out, &errb); code != exitOK {
			t.Fatalf("%q: exit %d: %s", full, code, errb.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		return lines[:len(lines)-1] // the last is cobra's directive
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"stop", ""}, []string{"processor-1\tMain Processor", "processor-2\tSecondary"}},
		{[]string{"logs", ""}, []string{"processor-1\tMain Processor", "processor-2\tSecondary"}},
		{[]string{"restart", "processor-1", ""}, []string{}},
		{[]string{"stop", "--id", ""}, []string{"processor-1\tMain Processor", "processor-2\tSecondary"}},
		{[]string{"stop", "--name", ""}, []string{"Main Processor\tprocessor-1", "Secondary\tprocessor-2"}},
		{[]string{"workers", ""}, []string{"start\tstart the workers (kg.num_workers of them, or -n N)", "stop\tstop every worker",
			"restart\trestart the running workers", "scale\tstart or stop workers until N run",
			"health\tcheck each worker; exit 1 when one is unhealthy", "stats\tthe pool's statistics: processed items, KG service, queue"}},
	} {
		got := complete(tc.args...)
		if len(got) == 1 && got[0] == "" {
			got = []string{}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("completion of %q: %q, want %q", tc.args, got, tc.want)
		}
	}
	// An unreadable registry completes to nothing, without an error.
	if got := complete("stop", "--registry", filepath.Join(dir, "missing.toml"), ""); len(got) != 0 && got[0] != "" {
		t.Errorf("completion without a registry: %q", got)
	}
}

// TestLongHelpNamesCommands: every description and example is of a command
// the tree has.
func TestLongHelpNamesCommands(t *testing.T) {
	root := (&app{}).commands()
	err := fs.WalkDir(helpFiles, "help", func(file string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(file, "help/"), ".txt"), ".examples")
		if name == root.Name() {
			return nil
		}
		path := strings.ReplaceAll(name, "/", " ")
		if c, rest, err := root.Find(strings.Fields(path)); err != nil || len(rest) > 0 || c == root || helpText(path, ".txt") == "" && helpText(path, ".examples.txt") == "" {
			t.Errorf("help in %s, for %q, which is no command", file, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
