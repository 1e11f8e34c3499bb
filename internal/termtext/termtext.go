// Package termtext makes text from elsewhere safe to print on a terminal:
// processors' log lines, the KG service's error text. A terminal acts on
// control characters (ESC starts sequences that move the cursor, retitle
// the window, or on some terminals answer back into the input), so every
// character that is not printable is shown as an escape instead, the way
// Go quotes strings: \x1b, \u009b, \u202e. Machine-readable output (JSON)
// needs none of this: the encoder escapes control characters itself.
package termtext

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s for one line of a table or a message: every character
// that is not graphic, tab and newline included, is escaped, as is every
// byte that is not UTF-8.
func Line(s string) string { return escape(s, false) }

// Text returns s for a block of text: as Line, but tabs and newlines stay.
func Text(s string) string { return escape(s, true) }

func escape(s string, keepLayout bool) string {
	if safe(s, keepLayout) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case printable(r, keepLayout):
			b.WriteString(s[i : i+size])
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	return b.String()
}

// printable reports whether r may reach a terminal as it is. Graphic
// characters and the space do; controls (C0, DEL, C1), and format
// characters such as the bidirectional overrides that make text read
// differently from what it is, do not.
func printable(r rune, keepLayout bool) bool {
	if keepLayout && (r == '\t' || r == '\n') {
		return true
	}
	return unicode.IsGraphic(r)
}

// safe reports whether s needs no escaping, without allocating.
func safe(s string, keepLayout bool) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !printable(r, keepLayout) {
			return false
		}
		i += size
	}
	return true
}
