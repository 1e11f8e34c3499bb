package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/remote"
)

// fakeSSH is an ssh on PATH that records its arguments and plays the remote
// host: it runs the command line it was given with a POSIX shell, as sshd
// runs it with the login shell, where the host's kato-manager is the script
// fakeHost wrote. Host "down" is unreachable, as ssh reports it: status 255.
const fakeSSH = `#!/bin/sh
printf '%s\0' "$@" >"$FAKE_SSH_DIR/ssh.argv"
while [ "$1" != "--" ]; do shift; done
shift
host=${1#*@}
shift
if [ "$host" = down ]; then
	echo "ssh: connect to host down port 22: Connection refused" >&2
	exit 255
fi
PATH=$FAKE_SSH_DIR/$host exec /bin/sh -c "$1"
`

// fakeRemote sets up fake ssh and returns its directory.
func fakeRemote(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ssh"), []byte(fakeSSH), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_SSH_DIR", dir)
	return dir
}

// fakeHost gives host of fakeRemote a kato-manager that records its
// arguments, copies its input to its standard error, prints stdout and
// exits with code. It uses only shell builtins: the host's PATH holds
// nothing else.
func fakeHost(t *testing.T, dir, host, stdout string, code int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
printf '%%s\0' "$@" >%s
while IFS= read -r line; do printf 'in:%%s\n' "$line" >&2; done
printf '%%s' %s
exit %d
`, remote.Quote(filepath.Join(dir, host+".argv")), remote.Quote(stdout), code)
	if err := os.WriteFile(filepath.Join(dir, host, "kato-manager"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// recorded returns the NUL-separated arguments a fake wrote to file.
func recorded(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// runWithInput runs kato-manager in-process with stdin from input.
func runWithInput(t *testing.T, input string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(input); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return runWithStdin(t, f, args...)
}

// runWithStdin runs kato-manager in-process with stdin as its standard
// input.
func runWithStdin(t *testing.T, stdin *os.File, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	a := &app{stdout: &out, stderr: &errb, stdin: stdin, args: args}
	root := a.commands()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	code = a.report(root.ExecuteContext(context.Background()))
	return code, out.String(), errb.String()
}

func TestHostRunsTheCommandThere(t *testing.T) {
	dir := fakeRemote(t)
	hostile := `it's a "test"; rm -rf / $(touch boom) ` + "`x` \\ \n *"
	for _, tc := range []struct {
		name string
		args []string
		want []string // what the remote kato-manager gets
	}{
		{"flag first", []string{"--host", "beta", "list"}, []string{"list"}},
		{"short flag", []string{"-H", "beta", "list", "--json"}, []string{"list", "--json"}},
		{"short flag joined", []string{"-Hbeta", "status"}, []string{"status"}},
		{"flag with =", []string{"--host=root@beta", "status"}, []string{"status"}},
		{"flag after the command", []string{"start", "--id", "x", "--host", "beta", "--name", hostile}, []string{"start", "--id", "x", "--name", hostile}},
		{"a value that looks like the flag", []string{"-H", "beta", "start", "--id", "x", "--name", "--host"}, []string{"start", "--id", "x", "--name", "--host"}},
		{"shorthand cluster with a value", []string{"-H", "beta", "logs", "x", "-fn", "5"}, []string{"logs", "x", "-fn", "5"}},
		{"global flags go along", []string{"--config", "/etc/kato/other.toml", "-H", "beta", "--user", "list"}, []string{"--config", "/etc/kato/other.toml", "--user", "list"}},
		{"after --", []string{"-H", "beta", "queue", "enqueue", "--", "-H", "7"}, []string{"queue", "enqueue", "--", "-H", "7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := "beta"
			fakeHost(t, dir, host, "remote output\n", 0)
			code, stdout, stderr := runWithInput(t, "", tc.args...)
			if code != 0 || stdout != "remote output\n" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and the remote's output", code, stdout, stderr)
			}
			if got := recorded(t, filepath.Join(dir, host+".argv")); !slices.Equal(got, tc.want) {
				t.Errorf("remote kato-manager got %q, want %q", got, tc.want)
			}
			if _, err := os.Stat("boom"); err == nil {
				os.Remove("boom")
				t.Error("the remote shell ran a command substitution of an argument")
			}
			argv := recorded(t, filepath.Join(dir, "ssh.argv"))
			i := slices.Index(argv, "--")
			if i < 0 || !slices.Contains(argv[:i], "BatchMode=yes") || len(argv) != i+3 {
				t.Errorf("ssh argv %q: want options with BatchMode=yes, --, the host and one command line", argv)
			}
			if slices.ContainsFunc(argv, func(s string) bool { return strings.Contains(s, "StrictHostKeyChecking") }) {
				t.Errorf("ssh argv %q turns host key checking off", argv)
			}
		})
	}
}

func TestHostPassesStreamsAndStatus(t *testing.T) {
	dir := fakeRemote(t)
	fakeHost(t, dir, "beta", "some output\n", 3)
	code, stdout, stderr := runWithInput(t, "line one\nline two\n", "-H", "beta", "queue", "enqueue", "1")
	if code != 3 {
		t.Errorf("exit %d, want the remote's 3", code)
	}
	if stdout != "some output\n" {
		t.Errorf("stdout %q", stdout)
	}
	if stderr != "in:line one\nin:line two\n" {
		t.Errorf("stderr %q, want the remote's, with the input it read", stderr)
	}

	t.Run("unreachable", func(t *testing.T) {
		code, _, stderr := runWithInput(t, "", "--host", "down", "list")
		if code != exitFailed || !strings.Contains(stderr, "Connection refused") || !strings.Contains(stderr, "down: host unreachable over ssh") {
			t.Errorf("exit %d, stderr %q; want 1, ssh's message and ours", code, stderr)
		}
	})
	t.Run("no kato-manager there", func(t *testing.T) {
		if err := os.MkdirAll(filepath.Join(dir, "bare"), 0o755); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runWithInput(t, "", "--host", "bare", "list")
		if code != exitFailed || !strings.Contains(stderr, "kato-manager not found on the remote host") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}

func TestHostRejectsBadValues(t *testing.T) {
	fakeRemote(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"ssh option", []string{"--host", "-oProxyCommand=touch boom", "list"}, `invalid --host "-oProxyCommand=touch boom"`},
		{"space", []string{"--host", "a b", "list"}, `character ' ' not allowed`},
		{"empty user", []string{"--host", "@a", "list"}, "empty user"},
		{"empty host", []string{"--host", "a,,b", "list"}, "empty host"},
		{"twice", []string{"--host", "a,a", "list"}, "named twice"},
		{"several for start", []string{"--host", "a,b", "start", "--id", "x"}, "only list and status run on several at once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runWithInput(t, "", tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
}

func TestHostsMergeList(t *testing.T) {
	dir := fakeRemote(t)
	fakeHost(t, dir, "alpha", `[{"id":"a1","name":"first","unit":"kato@a1.service","active_state":"active","sub_state":"running","pid":42,"api_port":8001,"zmq_port":5556,"processor":"default","generation":"b","network":"","uptime_seconds":65,"memory_bytes":1048576,"registered":true}]`, 0)
	fakeHost(t, dir, "beta", `[{"id":"b1","name":"","unit":"kato@b1.service","active_state":"inactive","sub_state":"dead","api_port":8001,"zmq_port":5556,"processor":"default","generation":"b","registered":true}]`, 0)

	code, stdout, stderr := runWithInput(t, "", "list", "--host", "alpha,beta,down")
	if code != exitFailed {
		t.Errorf("exit %d, want 1 for the host that is down", code)
	}
	if !strings.Contains(stderr, "host down:") || !strings.Contains(stderr, "Connection refused") {
		t.Errorf("stderr %q does not report host down", stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "HOST ") || !strings.HasPrefix(lines[1], "alpha ") || !strings.HasPrefix(lines[2], "beta ") {
		t.Fatalf("table:\n%s\nwant a HOST column and one row for each host's instance", stdout)
	}
	for _, want := range []string{"a1", "first", "running", "42", "8001"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("alpha's row %q lacks %q", lines[1], want)
		}
	}
	if !strings.Contains(lines[2], "stopped") {
		t.Errorf("beta's row %q is not stopped", lines[2])
	}
	// Each host was asked for JSON.
	if got := recorded(t, filepath.Join(dir, "alpha.argv")); !slices.Equal(got, []string{"list", "--json"}) {
		t.Errorf("alpha got %q", got)
	}

	code, stdout, _ = runWithInput(t, "", "list", "--json", "-H", "alpha,beta")
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(rows) != 2 || rows[0]["host"] != "alpha" || rows[0]["id"] != "a1" || rows[1]["host"] != "beta" || rows[1]["id"] != "b1" {
		t.Errorf("JSON rows %v", rows)
	}
}

func TestHostsMergeStatus(t *testing.T) {
	dir := fakeRemote(t)
	healthy := `{"systemd_reachable":true,"systemd_version":"252","services":[],"instances":[{"id":"a1","unit":"kato@a1.service","active_state":"active","sub_state":"running","api_port":8001,"api_listening":true,"answering":true}],"drift":{"missing_units":[],"orphan_units":[]},"warnings":[]}`
	unhealthy := `{"systemd_reachable":true,"systemd_version":"252","services":[],"instances":[{"id":"b1","unit":"kato@b1.service","active_state":"failed","sub_state":"failed","api_port":8001,"problem":"failed"}],"drift":{"missing_units":["b2"],"orphan_units":[]},"warnings":["b1 will not start at boot"]}`
	fakeHost(t, dir, "alpha", healthy, 0)
	fakeHost(t, dir, "beta", unhealthy, 1)

	code, stdout, stderr := runWithInput(t, "", "status", "-H", "alpha")
	if code != 0 || stdout != healthy {
		t.Errorf("one host: exit %d, stdout %q, stderr %q; want the remote's own answer", code, stdout, stderr)
	}

	code, stdout, stderr = runWithInput(t, "", "status", "-H", "alpha,beta")
	if code != exitFailed {
		t.Errorf("exit %d, want 1: beta is unhealthy", code)
	}
	if stderr != "" {
		t.Errorf("stderr %q: an unhealthy host answered, nothing failed", stderr)
	}
	for _, want := range []string{"alpha: reachable (version 252)", "HOST", "alpha", "a1", "beta", "b1", "warning: beta: b1 will not start at boot",
		"alpha: in step with systemd", "beta: entries whose unit vanished: b2 (run `kato-manager --host beta gc`)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("merged status lacks %q:\n%s", want, stdout)
		}
	}

	code, stdout, _ = runWithInput(t, "", "status", "--json", "-H", "alpha,down")
	if code != exitFailed {
		t.Errorf("exit %d, want 1", code)
	}
	var all []map[string]any
	if err := json.Unmarshal([]byte(stdout), &all); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(all) != 2 || all[0]["host"] != "alpha" || all[0]["systemd_reachable"] != true || all[1]["host"] != "down" || !strings.Contains(fmt.Sprint(all[1]["error"]), "unreachable") {
		t.Errorf("JSON %v", all)
	}
}
