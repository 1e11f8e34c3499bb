package remote

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/config"
)

// TestQuoteRoundTrip: what Quote makes, a POSIX shell reads back as it was.
func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "two words", "it's", `"double"`, "semi;colon", "$(touch boom)", "`tick`",
		"back\\slash", "new\nline", "*", "~root", "-n", "a'b'c", "tab\there", "ünïcode", "%s=1,2:3@h"} {
		out, err := exec.Command("/bin/sh", "-c", "printf '%s' "+Quote(s)).Output()
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if string(out) != s {
			t.Errorf("Quote(%q) = %s, which the shell reads as %q", s, Quote(s), out)
		}
	}
	if got := CommandLine([]string{"list", "--name", "a b"}); got != "kato-manager list --name 'a b'" {
		t.Errorf("CommandLine = %q", got)
	}
}

func TestParseHosts(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  []string
		fails string
	}{
		{value: "beta", want: []string{"beta"}},
		{value: "root@10.77.0.3,ops@beta.example.com,fe80::1%eth0", want: []string{"root@10.77.0.3", "ops@beta.example.com", "fe80::1%eth0"}},
		{value: "", fails: "empty host"},
		{value: "a,", fails: "empty host"},
		{value: "root@", fails: "empty host"},
		{value: "-oProxyCommand=x", fails: "starts with -"},
		{value: "a;b", fails: `character ';' not allowed`},
		{value: "a@b@c", fails: `character '@' not allowed`},
		{value: "a,b,a", fails: "a is named twice"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			got, err := ParseHosts(tc.value)
			if tc.fails == "" {
				if err != nil || !slices.Equal(got, tc.want) {
					t.Errorf("ParseHosts = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != "host" || !strings.Contains(err.Error(), tc.fails) {
				t.Errorf("ParseHosts error = %v; want a field error on host saying %q", err, tc.fails)
			}
		})
	}
}

// TestCommandKeepsHostKeyChecking: the ssh command asks for no prompts and
// turns nothing of ssh's checking off; the destination cannot be read as an
// option.
func TestCommandKeepsHostKeyChecking(t *testing.T) {
	args := Command(context.Background(), "beta", []string{"list"}).Args
	want := []string{"ssh", "-o", "BatchMode=yes", "-T", "-a", "-x", "--", "beta", "kato-manager list"}
	if !slices.Equal(args, want) {
		t.Errorf("ssh argv %q, want %q", args, want)
	}
}

// TestExitCode: a command that ran gives its status, 0 included; one that
// did not run (host not reached, no program) gives ran false.
func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
		ran  bool
	}{
		{"success", nil, 0, true},
		{"exit 3", &ExitError{Host: "beta", Code: 3}, 3, true},
		{"wrapped exit", fmt.Errorf("diff: %w", &ExitError{Host: "beta", Code: 1}), 1, true},
		{"unreachable", fmt.Errorf("beta: %w", ErrUnreachable), 0, false},
		{"no program", fmt.Errorf("beta: %w", ErrNoProgram), 0, false},
	} {
		if code, ran := ExitCode(tc.err); code != tc.code || ran != tc.ran {
			t.Errorf("%s: ExitCode = %d, %v; want %d, %v", tc.name, code, ran, tc.code, tc.ran)
		}
	}
}
