package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/textview"
)

// statusWithAProblem is a status with a running instance and a failed one.
func statusWithAProblem() *supervisor.Status {
	ok := supervisor.InstanceStatus{InstanceView: supervisor.InstanceView{ID: "alpha", Unit: "kato@alpha.service", Processor: "default", Generation: "b",
		Network: "host", ActiveState: "active", SubState: "running", APIPort: 8001}, Answering: true}
	bad := supervisor.InstanceStatus{InstanceView: supervisor.InstanceView{ID: "b", Unit: "kato@b.service", Processor: "default", Generation: "b",
		Network: "host", ActiveState: "failed", SubState: "failed", APIPort: 8002}, Problem: "unit failed"}
	return &supervisor.Status{SystemdReachable: true, SystemdVersion: "257", Instances: []supervisor.InstanceStatus{ok, bad}}
}

// stripColour removes the escape sequences palette writes.
func stripColour(s string) string {
	for _, c := range []textview.Colour{textview.Plain, textview.Red, textview.Green, textview.Yellow} {
		s = strings.ReplaceAll(s, "\033["+string(c)+"m", "")
	}
	return strings.ReplaceAll(s, "\033[0m", "")
}

// printStatus prints st as status does, in a's palette.
func printStatus(a *app, st *supervisor.Status) {
	textview.Status(a.stdout, a.palette(a.stdout), st)
}

// On a terminal, status paints its state words and its PROBLEM column,
// and the columns stay aligned; NO_COLOR (any non-empty value) and
// --no-color turn the colour off, and so does an output that is no
// terminal.
func TestStatusColours(t *testing.T) {
	plainOut := func() string {
		var b strings.Builder
		printStatus(&app{stdout: &b}, statusWithAProblem())
		return b.String()
	}()
	for _, tc := range []struct {
		name    string
		noColor string // NO_COLOR's value
		flag    bool   // --no-color
		want    bool   // colour
	}{
		{"terminal", "", false, true},
		{"NO_COLOR", "1", false, false},
		{"NO_COLOR any value", "false", false, false},
		{"--no-color", "", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NO_COLOR", tc.noColor)
			master, slave := openPTY(t)
			printStatus(&app{stdout: slave, noColor: tc.flag}, statusWithAProblem())
			out := written(t, master, slave)
			if !tc.want {
				if out != plainOut {
					t.Fatalf("output %q, want without colour %q", out, plainOut)
				}
				return
			}
			for _, want := range []string{"\033[32mrunning\033[0m", "\033[31mfailed\033[0m", "\033[31munit failed\033[0m", "\033[39mPROBLEM\033[0m"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q: %q", want, out)
				}
			}
			if got := stripColour(out); got != plainOut {
				t.Errorf("without its colours the output is\n%s\nwant the columns as without colour\n%s", got, plainOut)
			}
		})
	}
}

// Errors: "kato-manager:" red on a terminal, not under NO_COLOR or
// --no-color, and never when stderr is no terminal.
func TestErrorsInColour(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "kato.toml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		noColor string
		args    []string
		tty     bool
		want    string
	}{
		{"terminal", "", nil, true, "\033[31mkato-manager:\033[0m invalid --lines -1"},
		{"NO_COLOR", "yes", nil, true, "kato-manager: invalid --lines -1"},
		{"--no-color", "", []string{"--no-color"}, true, "kato-manager: invalid --lines -1"},
		{"no terminal", "", nil, false, "kato-manager: invalid --lines -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NO_COLOR", tc.noColor)
			args := append([]string{"--config", cfg, "--registry", filepath.Join(dir, "instances.toml")}, tc.args...)
			args = append(args, "logs", "x", "--lines", "-1")
			var out string
			if tc.tty {
				master, slave := openPTY(t)
				run(context.Background(), args, io.Discard, slave)
				out = written(t, master, slave)
			} else {
				var b strings.Builder
				run(context.Background(), args, io.Discard, &b)
				out = b.String()
			}
			if !strings.HasPrefix(out, tc.want) {
				t.Errorf("stderr %q, want it to begin %q", out, tc.want)
			}
		})
	}
}
