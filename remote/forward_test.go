package remote

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/spf13/pflag"
)

// commandFlags are flags as a command has them: --host/-H and --name/-n
// take a value, --json/-j and --all/-a do not.
func commandFlags(t *testing.T, args []string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("list", pflag.ContinueOnError)
	fs.StringP("host", "H", "", "")
	fs.StringP("name", "n", "", "")
	fs.BoolP("json", "j", false, "")
	fs.BoolP("all", "a", false, "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestForwardArgs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args, want []string
	}{
		{"--host VALUE", []string{"list", "--host", "beta", "--json"}, []string{"list", "--json"}},
		{"--host=VALUE", []string{"--host=beta", "list"}, []string{"list"}},
		{"-H VALUE", []string{"-H", "beta", "list"}, []string{"list"}},
		{"-HVALUE", []string{"-Hbeta", "list"}, []string{"list"}},
		{"in a cluster of shorthands", []string{"-jaH", "beta", "list"}, []string{"-ja", "list"}},
		{"a value that looks like --host stays", []string{"list", "--name", "--host", "-H", "beta"}, []string{"list", "--name", "--host"}},
		{"a shorthand's value that looks like -H stays", []string{"list", "-n", "-H"}, []string{"list", "-n", "-H"}},
		{"after -- nothing is a flag", []string{"list", "--", "--host", "beta"}, []string{"list", "--", "--host", "beta"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ForwardArgs(tc.args, commandFlags(t, tc.args))
			if !slices.Equal(got, tc.want) {
				t.Errorf("ForwardArgs(%q) = %q, want %q", tc.args, got, tc.want)
			}
		})
	}
}

func TestWithJSON(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args, want []string
	}{
		{"added", []string{"list"}, []string{"list", "--json"}},
		{"before --", []string{"list", "--", "x"}, []string{"list", "--json", "--", "x"}},
		{"given already", []string{"list", "--json"}, []string{"list", "--json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := WithJSON(tc.args, commandFlags(t, tc.args)); !slices.Equal(got, tc.want) {
				t.Errorf("WithJSON(%q) = %q, want %q", tc.args, got, tc.want)
			}
		})
	}
}

func TestWriteAllPrefixesEachLine(t *testing.T) {
	var out, errs bytes.Buffer
	WriteAll(&out, &errs, []Result{
		{Host: "alpha", Stdout: []byte("one\ntwo\n"), Stderr: "warn\n"},
		{Host: "ops@beta", Stdout: []byte("three")},
	})
	if got, want := out.String(), "alpha: one\nalpha: two\nops@beta: three\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := errs.String(), "alpha: warn\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

func TestResultFailure(t *testing.T) {
	r := Result{Host: "beta", Err: errors.New("beta: host unreachable over ssh"), Stderr: "ssh: connect refused\nsecond line\n"}
	if got, want := r.Failure(), "beta: host unreachable over ssh: ssh: connect refused; second line"; got != want {
		t.Errorf("Failure = %q, want %q", got, want)
	}
}

// TestWriteEach: each host's output is prefixed as WriteAll does, a host the
// command did not run on is reported after its output, and the exit status
// is the worst of the hosts', 1 for one not run on.
func TestWriteEach(t *testing.T) {
	for _, tc := range []struct {
		name    string
		results []Result
		code    int
		stderr  string
	}{
		{"all ran", []Result{{Host: "alpha", Stdout: []byte("ok\n")}, {Host: "beta", Err: &ExitError{Host: "beta", Code: 2}, Stderr: "bad\n"}}, 2, "beta: bad\n"},
		{"one not reached", []Result{{Host: "alpha", Err: fmt.Errorf("alpha: %w", ErrUnreachable), Stderr: "refused\n"}, {Host: "beta"}}, 1,
			"alpha: refused\nkato-manager: host alpha: alpha: " + ErrUnreachable.Error() + "\n"},
		{"none", nil, 0, ""},
	} {
		var out, errs bytes.Buffer
		if code := WriteEach(&out, &errs, tc.results); code != tc.code {
			t.Errorf("%s: WriteEach = %d, want %d", tc.name, code, tc.code)
		}
		if errs.String() != tc.stderr {
			t.Errorf("%s: stderr = %q, want %q", tc.name, errs.String(), tc.stderr)
		}
	}
}
