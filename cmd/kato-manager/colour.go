package main

import (
	"io"
	"os"
	"strings"
)

// colour is an ANSI foreground colour: always two digits, so that every
// painted word carries the same number of invisible bytes and a tabwriter
// column of painted words stays aligned.
type colour string

// The colours kato-manager paints with.
const (
	plain  colour = "39" // the terminal's own
	red    colour = "31"
	green  colour = "32"
	yellow colour = "33"
)

// palette paints words for one output: on a terminal, unless NO_COLOR or
// --no-color says otherwise; elsewhere it leaves them alone.
type palette struct{ on bool }

// paint wraps s in c. In a column, paint every cell, header included, with
// some colour (plain for none) to keep the column aligned.
func (p palette) paint(c colour, s string) string {
	if !p.on {
		return s
	}
	return "\033[" + string(c) + "m" + s + "\033[0m"
}

// palette is the palette for w: colour only on a terminal, and not when
// the environment has NO_COLOR set to anything but "" (no-color.org) or
// the command line has --no-color.
func (a *app) palette(w io.Writer) palette {
	if a.noColor || os.Getenv("NO_COLOR") != "" {
		return palette{}
	}
	f, ok := w.(*os.File)
	return palette{on: ok && isTerminal(f.Fd())}
}

// stateColour is the colour of an instance's state word: green running,
// red failed, yellow on its way somewhere, plain otherwise (stopped).
func stateColour(state string) colour {
	switch {
	case state == "running":
		return green
	case strings.HasPrefix(state, "failed"):
		return red
	case strings.HasPrefix(state, "activating"), strings.HasPrefix(state, "deactivating"),
		strings.HasPrefix(state, "reloading"), strings.HasPrefix(state, "active/"):
		return yellow
	}
	return plain
}
