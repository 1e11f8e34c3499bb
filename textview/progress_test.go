package textview

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/internal/testkit/ptytest"
	"github.com/kato-manager/kato-manager/supervisor"
)

// event is one step of an instance in a batch of total instances.
func event(id string, phase supervisor.Phase, err error, total int) supervisor.Progress {
	return supervisor.Progress{ID: id, Action: fleet.Create, Phase: phase, Err: err, Elapsed: 1500 * time.Millisecond, Total: total}
}

// On a terminal, a few instances get one line each, redrawn in place.
func TestProgressOnATerminalOneLinePerInstance(t *testing.T) {
	master, slave := ptytest.Open(t)
	p := NewProgress(slave)
	p.Update(event("a", supervisor.PhaseStarting, nil, 2))
	if !p.tty || !p.perLine() {
		t.Fatalf("printer on a terminal for 2 instances: tty %v, one line each %v; want both", p.tty, p.perLine())
	}
	p.Update(event("b", supervisor.PhaseStarting, nil, 2))
	p.Update(event("a", supervisor.PhaseReady, nil, 2))
	p.Update(event("b", supervisor.PhaseFailed, errors.New("did not listen\nmore"), 2))
	p.Finish()
	out := ptytest.Written(t, master, slave)

	// Each redraw moves up over the lines drawn before and clears each line.
	if got := strings.Count(out, "\033[1A"); got != 1 {
		t.Errorf("moves up one line %d times, want 1 (the second draw); output %q", got, out)
	}
	if got := strings.Count(out, "\033[2A"); got != 2 {
		t.Errorf("moves up two lines %d times, want 2 (the third and fourth draws); output %q", got, out)
	}
	// The last draw is what stays on the screen.
	last := out[strings.LastIndex(out, "\033[2A")+len("\033[2A"):]
	want := "\r\033[K  ready       a (1.5s)\n\r\033[K  failed      b: did not listen (1.5s)\n"
	if last != want {
		t.Errorf("last draw %q, want %q", last, want)
	}
}

// On a terminal, many instances share one line of counts, drawn at most
// every 100ms and once more at the end.
func TestProgressOnATerminalCounts(t *testing.T) {
	master, slave := ptytest.Open(t)
	const n = maxProgressLines + 1
	p := NewProgress(slave)
	for i := 0; i < n; i++ {
		p.Update(event(fmt.Sprintf("i%02d", i), supervisor.PhaseStarting, nil, n))
	}
	if !p.tty || p.perLine() {
		t.Fatalf("printer on a terminal for %d instances: tty %v, one line each %v; want a terminal and one line of counts", n, p.tty, p.perLine())
	}
	for i := 0; i < n-1; i++ {
		p.Update(event(fmt.Sprintf("i%02d", i), supervisor.PhaseReady, nil, n))
	}
	p.Update(event(fmt.Sprintf("i%02d", n-1), supervisor.PhaseFailed, errors.New("exited"), n))
	p.Finish()
	out := ptytest.Written(t, master, slave)

	if strings.Contains(out, "i00") {
		t.Errorf("counts view names an instance: %q", out)
	}
	draws := strings.Count(out, "\r\033[K")
	if draws < 2 || draws > 2*n {
		t.Errorf("%d draws for %d events, want the first, the final one and few between", draws, 2*n)
	}
	want := fmt.Sprintf("\r\033[K%d ready, 0 starting, 1 failed, 0 rolled back, 0 removed of %d\n", n-1, n)
	if !strings.HasSuffix(out, want) {
		t.Errorf("output ends %q, want %q", out[max(0, len(out)-len(want)-10):], want)
	}
}

// Anywhere else, each event is one plain log line.
func TestProgressElsewhereLogLines(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf)
	if p.tty {
		t.Fatal("printer on a buffer thinks it is on a terminal")
	}
	p.Update(event("a", supervisor.PhaseStarting, nil, 2))
	p.Update(event("a", supervisor.PhaseReady, nil, 2))
	p.Finish()
	line := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} `)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q, want two lines", buf.String())
	}
	for i, want := range []string{"starting a", "ready a (1.5s)"} {
		if !line.MatchString(lines[i]) || line.ReplaceAllString(lines[i], "") != want {
			t.Errorf("line %d = %q, want a time then %q", i+1, lines[i], want)
		}
	}
	if strings.Contains(buf.String(), "\033") {
		t.Errorf("escape sequences outside a terminal: %q", buf.String())
	}
}
