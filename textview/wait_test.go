package textview

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kato-manager/kato-manager/internal/testkit/ptytest"
	"github.com/kato-manager/kato-manager/supervisor"
)

// waitSteps are the steps of a start whose processor listens late and
// answers later still.
var waitSteps = []supervisor.Wait{
	{Unit: "kato@a.service", Step: supervisor.WaitUnit, Detail: "systemd starts kato@a.service", Timeout: time.Minute},
	{Unit: "kato@a.service", Step: supervisor.WaitListen, State: "active/running", Detail: "port 8000", Elapsed: 300 * time.Millisecond, Timeout: time.Minute},
	{Unit: "kato@a.service", Step: supervisor.WaitAnswer, State: "active/running", Detail: "GET /health on port 8000", Elapsed: 1200 * time.Millisecond, Timeout: time.Minute},
	{Unit: "kato@a.service", Step: supervisor.WaitReady, Elapsed: 2500 * time.Millisecond, Timeout: time.Minute},
}

// On a terminal, a single start is one status line, redrawn in place with
// what it waits for, the time waited and the bound; its clock moves
// between steps, and the line is cleared at the end.
func TestWaitOnATerminalOneLineInPlace(t *testing.T) {
	master, slave := ptytest.Open(t)
	p := NewWaitLine(slave, Palette{On: true})
	if !p.tty {
		t.Fatal("the wait printer on a terminal does not know it")
	}
	p.Update(waitSteps[0])
	p.Update(waitSteps[1])
	p.Update(waitSteps[2])
	time.Sleep(3 * waitRedraw) // the clock moves on its own
	p.Update(waitSteps[3])
	p.Finish()
	out := ptytest.Written(t, master, slave)

	if strings.Contains(out, "\n") {
		t.Errorf("the status line took more than one line: %q", out)
	}
	for _, want := range []string{
		"waiting while systemd starts kato@a.service (0.0s of 1m0s)",
		"waiting for the processor of kato@a.service to listen on port 8000 (active/running) (0.3s of 1m0s)",
		"waiting for GET /health on port 8000 to answer 200 (active/running) (1.2s of 1m0s)",
		"kato@a.service answered its health request (2.5s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q: %q", want, out)
		}
	}
	// Redraws between the events: more draws than events, each cleared.
	if draws := strings.Count(out, "\r\033[K"); draws < len(waitSteps)+2 {
		t.Errorf("%d draws, want the %d events, the clock's redraws and the final clear: %q", draws, len(waitSteps), out)
	}
	if !regexp.MustCompile(`answer 200 \(active/running\) \((1\.[3-9]|[2-9]\.\d)s of 1m0s\)`).MatchString(out) {
		t.Errorf("the clock did not move between steps: %q", out)
	}
	if !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("the status line is not cleared at the end: %q", out)
	}
}

// Anywhere else, each step is one plain log line with its time.
func TestWaitElsewhereLogLines(t *testing.T) {
	var buf bytes.Buffer
	p := NewWaitLine(&buf, Palette{})
	for _, w := range waitSteps {
		p.Update(w)
	}
	time.Sleep(2 * waitRedraw)
	p.Finish()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := []string{
		"unit waiting while systemd starts kato@a.service (0.0s of 1m0s)",
		"listening waiting for the processor of kato@a.service to listen on port 8000 (active/running) (0.3s of 1m0s)",
		"answering waiting for GET /health on port 8000 to answer 200 (active/running) (1.2s of 1m0s)",
		"ready kato@a.service answered its health request (2.5s)",
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want one per step (%d): %q", len(lines), len(want), buf.String())
	}
	stamp := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} `)
	for i, l := range lines {
		if !stamp.MatchString(l) || stamp.ReplaceAllString(l, "") != want[i] {
			t.Errorf("line %d = %q, want a time and %q", i, l, want[i])
		}
	}
	if strings.Contains(buf.String(), "\033") {
		t.Errorf("escape sequences off a terminal: %q", buf.String())
	}
}

// A stop says how long it may take: the processor's stop_timeout.
func TestWaitTextOfAStop(t *testing.T) {
	ev := supervisor.Wait{Unit: "kato@a.service", Step: supervisor.WaitStop, State: "deactivating/stop-sigterm", Elapsed: 2 * time.Second, Timeout: 10 * time.Second}
	if got, want := waitText(ev)+" ("+waitClock(ev, ev.Elapsed)+")", "waiting while systemd stops kato@a.service (deactivating/stop-sigterm) (2.0s, killed after 10s)"; got != want {
		t.Errorf("stop: %q, want %q", got, want)
	}
}

// A status line longer than the terminal is wide would wrap, and each
// redraw would leave a line behind: it is cut to the width, keeping its
// clock.
func TestWaitLineFitsTheTerminal(t *testing.T) {
	master, slave := ptytest.Open(t)
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 60}); err != nil {
		t.Fatal(err)
	}
	p := NewWaitLine(slave, Palette{})
	if p.width != 60 {
		t.Fatalf("width %d, want the terminal's 60", p.width)
	}
	p.Update(waitSteps[1])
	p.Update(waitSteps[2])
	p.Finish()
	out := ptytest.Written(t, master, slave)
	draws := strings.Split(out, "\r\033[K")
	for _, d := range draws {
		if n := len([]rune(d)); n > 59 {
			t.Errorf("a draw of %d columns on a terminal of 60: %q", n, d)
		}
	}
	if !strings.Contains(out, "…") || !strings.Contains(out, " (0.3s of 1m0s)") {
		t.Errorf("the cut line lost its clock or its mark: %q", out)
	}
}
