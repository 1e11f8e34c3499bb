package main

import (
	"io"
	"os"

	"github.com/kato-manager/kato-manager/textview"
)

// palette is the palette for w: colour only on a terminal, and not when
// the environment has NO_COLOR set to anything but "" (no-color.org) or
// the command line has --no-color.
func (a *app) palette(w io.Writer) textview.Palette {
	if a.noColor || os.Getenv("NO_COLOR") != "" {
		return textview.Palette{}
	}
	return textview.Palette{On: textview.Terminal(w)}
}
