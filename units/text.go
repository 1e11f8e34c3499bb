package units

import (
	"errors"
	"unicode"
	"unicode/utf8"
)

// checkText returns the rule s breaks as text systemd reads from a unit file
// or an environment file, or nil. systemd refuses such files unless they are
// UTF-8 without NUL, U+FEFF or noncharacters; control characters are refused
// as well, because in a unit file a newline would start a new directive and
// in a name or a URL they are never meant.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("must be valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("must not contain control characters")
		}
		if !loadableRune(r) {
			return errors.New("must not contain U+FEFF or Unicode noncharacters")
		}
	}
	return nil
}

// loadableRune reports whether systemd accepts r in a file it loads: every
// Unicode scalar value except NUL, the byte order mark and noncharacters.
func loadableRune(r rune) bool {
	switch {
	case r == 0, r == '\uFEFF':
		return false
	case r >= 0xFDD0 && r <= 0xFDEF, r&0xFFFE == 0xFFFE:
		return false
	}
	return true
}
