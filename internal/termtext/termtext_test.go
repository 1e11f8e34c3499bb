package termtext

import "testing"

func TestEscape(t *testing.T) {
	for _, tc := range []struct {
		name, in, line, text string
	}{
		{"plain", "ready on 8001 — ok ✓ 日本", "ready on 8001 — ok ✓ 日本", "ready on 8001 — ok ✓ 日本"},
		{"escape sequences", "\x1b]0;owned\x07\x1b[2J", `\x1b]0;owned\x07\x1b[2J`, `\x1b]0;owned\x07\x1b[2J`},
		{"tab and newline", "a\tb\nc\r", `a\x09b\x0ac\x0d`, "a\tb\nc\\x0d"},
		{"DEL and NUL", "a\x7fb\x00", `a\x7fb\x00`, `a\x7fb\x00`},
		{"C1 controls", "a\u009b31mb\u0085", `a\u009b31mb\u0085`, `a\u009b31mb\u0085`},
		{"bidirectional override", "file\u202eexe.txt\u2066", `file\u202eexe.txt\u2066`, `file\u202eexe.txt\u2066`},
		{"not UTF-8", "hi\xff\xc3", `hi\xff\xc3`, `hi\xff\xc3`},
		{"replacement character stays", "bad \uFFFD byte", "bad \uFFFD byte", "bad \uFFFD byte"},
		{"tag character", "a\U000E0041", `a\U000e0041`, `a\U000e0041`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Line(tc.in); got != tc.line {
				t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.line)
			}
			if got := Text(tc.in); got != tc.text {
				t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.text)
			}
		})
	}
}
