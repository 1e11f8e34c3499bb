package textview

import "strings"

// Colour is an ANSI foreground colour: always two digits, so that every
// painted word carries the same number of invisible bytes and a tabwriter
// column of painted words stays aligned.
type Colour string

// The colours kato-manager paints with.
const (
	Plain  Colour = "39" // the terminal's own
	Red    Colour = "31"
	Green  Colour = "32"
	Yellow Colour = "33"
)

// Palette paints words for one output: when On (a terminal, unless
// NO_COLOR or --no-color says otherwise); otherwise it leaves them alone.
type Palette struct{ On bool }

// Paint wraps s in c. In a column, paint every cell, header included, with
// some colour (Plain for none) to keep the column aligned.
func (p Palette) Paint(c Colour, s string) string {
	if !p.On {
		return s
	}
	return "\033[" + string(c) + "m" + s + "\033[0m"
}

// StateColour is the colour of an instance's state word: green running,
// red failed, yellow on its way somewhere, plain otherwise (stopped).
func StateColour(state string) Colour {
	switch {
	case state == "running":
		return Green
	case strings.HasPrefix(state, "failed"):
		return Red
	case strings.HasPrefix(state, "activating"), strings.HasPrefix(state, "deactivating"),
		strings.HasPrefix(state, "reloading"), strings.HasPrefix(state, "active/"):
		return Yellow
	}
	return Plain
}
