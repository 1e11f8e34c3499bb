package textview

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kato-manager/kato-manager/supervisor"
)

// WaitLine shows what a single start, restart or stop waits for: on a
// terminal one status line redrawn in place, with the time waited and the
// bound, cleared when the wait ends; elsewhere a plain log line per step,
// as Progress writes a batch's.
type WaitLine struct {
	w     io.Writer
	tty   bool
	width int // the terminal's columns; 0 when unknown
	pal   Palette
	mu    sync.Mutex
	last  supervisor.Wait
	seen  time.Time // when last came
	stop  chan struct{}
	done  chan struct{}
}

// waitRedraw is how often the status line's clock moves.
const waitRedraw = 100 * time.Millisecond

// NewWaitLine makes the printer of a single start, restart or stop on w,
// painting with pal.
func NewWaitLine(w io.Writer, pal Palette) *WaitLine {
	p := &WaitLine{w: w, tty: Terminal(w), pal: pal}
	if f, ok := w.(*os.File); ok && p.tty {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			p.width = int(ws.Col)
		}
	}
	return p
}

// Update is supervisor.Manager.Waiting.
func (p *WaitLine) Update(ev supervisor.Wait) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.seen = ev, time.Now()
	if !p.tty {
		fmt.Fprintf(p.w, "%s %s %s (%s)\n", time.Now().Format("15:04:05.000"), ev.Step, waitText(ev), waitClock(ev, ev.Elapsed))
		return
	}
	p.draw()
	if p.stop == nil {
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		go p.tick()
	}
}

// tick moves the status line's clock until Finish.
func (p *WaitLine) tick() {
	defer close(p.done)
	t := time.NewTicker(waitRedraw)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// draw writes the status line; p.mu is held.
func (p *WaitLine) draw() {
	ev := p.last
	elapsed := ev.Elapsed + time.Since(p.seen)
	step, text, clock := string(ev.Step), waitText(ev), " ("+waitClock(ev, elapsed)+")"
	// A line longer than the terminal wraps, and the next draw would
	// leave its first part behind: the text is cut to fit, the clock kept.
	if p.width > 0 {
		text = fit(text, p.width-1-len(step)-1-len(clock))
	}
	fmt.Fprintf(p.w, "\r\033[K%s %s%s", p.pal.Paint(Yellow, step), text, clock)
}

// fit cuts s to n columns, marking the cut with an ellipsis.
func fit(s string, n int) string {
	r := []rune(s)
	switch {
	case len(r) <= n:
		return s
	case n <= 0:
		return ""
	}
	return string(r[:n-1]) + "…"
}

// Finish ends the wait: the status line is cleared, what the command
// prints next says how it ended.
func (p *WaitLine) Finish() {
	p.mu.Lock()
	stop := p.stop
	p.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-p.done
	fmt.Fprint(p.w, "\r\033[K")
}

// waitText says what a wait is at.
func waitText(ev supervisor.Wait) string {
	state := ""
	if ev.State != "" {
		state = " (" + ev.State + ")"
	}
	switch ev.Step {
	case supervisor.WaitUnit:
		if ev.State == "" {
			return "waiting while " + ev.Detail
		}
		return "waiting for " + ev.Unit + " to become active" + state
	case supervisor.WaitListen:
		return "waiting for the processor of " + ev.Unit + " to listen on " + ev.Detail + state
	case supervisor.WaitAnswer:
		return "waiting for " + ev.Detail + " to answer 200" + state
	case supervisor.WaitReady:
		return ev.Unit + " answered its health request"
	case supervisor.WaitStop:
		return "waiting while systemd stops " + ev.Unit + state
	case supervisor.WaitStopped:
		return ev.Unit + " stopped"
	}
	return ev.Unit + " " + ev.Detail + state
}

// waitClock is the time ev's wait has taken, elapsed, and what bounds it:
// the health request's timeout, or for a stop the processor's stop_timeout,
// after which systemd kills it.
func waitClock(ev supervisor.Wait, elapsed time.Duration) string {
	s := fmt.Sprintf("%.1fs", elapsed.Seconds())
	switch {
	case ev.Timeout <= 0 || ev.Step == supervisor.WaitReady || ev.Step == supervisor.WaitStopped:
	case ev.Step == supervisor.WaitStop:
		s += ", killed after " + ev.Timeout.String()
	default:
		s += " of " + ev.Timeout.String()
	}
	return s
}
