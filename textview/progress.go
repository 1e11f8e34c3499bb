package textview

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kato-manager/kato-manager/supervisor"
)

// Terminal reports whether w is a terminal.
func Terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Progress shows a batch as it goes: on a terminal, one line per
// instance redrawn in place when there are few, or one line of counts when
// there are many; otherwise a plain log line per event.
type Progress struct {
	w        io.Writer
	tty      bool
	order    []string
	state    map[string]progressLine
	drawn    int
	counts   map[supervisor.Phase]int
	total    int // the batch's instances, from its events
	lastDraw time.Time
}

type progressLine struct {
	phase supervisor.Phase
	text  string
}

// maxProgressLines is the most instances shown one per line.
const maxProgressLines = 12

// NewProgress makes the printer of a batch on w.
func NewProgress(w io.Writer) *Progress {
	return &Progress{w: w, tty: Terminal(w), state: map[string]progressLine{}, counts: map[supervisor.Phase]int{}}
}

// perLine says whether each instance gets a line of its own.
func (p *Progress) perLine() bool { return p.total <= maxProgressLines }

// Update is supervisor.BatchOptions.Progress.
func (p *Progress) Update(ev supervisor.Progress) {
	text := ev.ID
	if ev.Err != nil {
		text += ": " + firstLine(ev.Err.Error())
	}
	if ev.Phase == supervisor.PhaseReady || ev.Phase == supervisor.PhaseFailed {
		text += fmt.Sprintf(" (%.1fs)", ev.Elapsed.Seconds())
	}
	if !p.tty {
		fmt.Fprintf(p.w, "%s %s %s\n", time.Now().Format("15:04:05.000"), ev.Phase, text)
		return
	}
	p.total = ev.Total
	if old, seen := p.state[ev.ID]; seen {
		p.counts[old.phase]--
	} else {
		p.order = append(p.order, ev.ID)
	}
	p.state[ev.ID] = progressLine{ev.Phase, text}
	p.counts[ev.Phase]++
	p.draw(false)
}

func (p *Progress) draw(final bool) {
	if p.perLine() {
		if p.drawn > 0 {
			fmt.Fprintf(p.w, "\033[%dA", p.drawn)
		}
		for _, id := range p.order {
			fmt.Fprintf(p.w, "\r\033[K  %-11s %s\n", p.state[id].phase, p.state[id].text)
		}
		p.drawn = len(p.order)
		return
	}
	if !final && time.Since(p.lastDraw) < 100*time.Millisecond {
		return
	}
	p.lastDraw = time.Now()
	fmt.Fprintf(p.w, "\r\033[K%d ready, %d starting, %d failed, %d rolled back, %d removed of %d",
		p.counts[supervisor.PhaseReady], p.counts[supervisor.PhaseStarting], p.counts[supervisor.PhaseFailed],
		p.counts[supervisor.PhaseRolledBack], p.counts[supervisor.PhaseRemoved], p.total)
	if final {
		fmt.Fprintln(p.w)
	}
}

// Finish ends the batch's display: a line of counts is drawn once more.
func (p *Progress) Finish() {
	if p.tty && !p.perLine() && len(p.order) > 0 {
		p.draw(true)
	}
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
