package units

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with the current output")

// checkGolden compares got with testdata/name, or rewrites the file with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./units -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test ./units -update if the change is intended)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// envAssignment is one variable as systemd's EnvironmentFile= parser yields it.
type envAssignment struct{ key, value string }

// decodeEnvFile reads data the way systemd 252 reads an EnvironmentFile=. It
// follows the parser's states: unquoted, single-quoted and double-quoted
// values, backslash escapes, and comments, where a trailing backslash
// continues the comment onto the next line. The file ends at a NUL byte.
func decodeEnvFile(t testing.TB, data []byte) []envAssignment {
	t.Helper()
	const (
		preKey = iota
		inKey
		preValue
		inValue
		valueEscape
		singleQuote
		doubleQuote
		doubleQuoteEscape
		comment
		commentEscape
	)
	isNewline := func(c byte) bool { return c == '\n' || c == '\r' }
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || isNewline(c) }

	var (
		out        []envAssignment
		key, value []byte
		keyTrail   = -1 // start of trailing whitespace in key, or -1
		valueTrail = -1 // start of trailing whitespace in an unquoted value, or -1
		state      = preKey
	)
	push := func() {
		k := key
		if keyTrail >= 0 {
			k = k[:keyTrail]
		}
		out = append(out, envAssignment{string(k), string(value)})
		key, value, keyTrail, valueTrail = nil, nil, -1, -1
	}
	for _, c := range data {
		if c == 0 {
			break
		}
		switch state {
		case preKey:
			switch {
			case c == '#' || c == ';':
				state = comment
			case !isSpace(c):
				state = inKey
				keyTrail = -1
				key = append(key, c)
			}
		case inKey:
			switch {
			case isNewline(c):
				state = preKey
				key, keyTrail = nil, -1
			case c == '=':
				state = preValue
				valueTrail = -1
			default:
				if !isSpace(c) {
					keyTrail = -1
				} else if keyTrail < 0 {
					keyTrail = len(key)
				}
				key = append(key, c)
			}
		case preValue:
			switch {
			case isNewline(c):
				state = preKey
				push()
			case c == '\'':
				state = singleQuote
			case c == '"':
				state = doubleQuote
			case c == '\\':
				state = valueEscape
			case !isSpace(c):
				state = inValue
				value = append(value, c)
			}
		case inValue:
			switch {
			case isNewline(c):
				state = preKey
				if valueTrail >= 0 {
					value = value[:valueTrail]
				}
				push()
			case c == '\\':
				state = valueEscape
				valueTrail = -1
			default:
				if !isSpace(c) {
					valueTrail = -1
				} else if valueTrail < 0 {
					valueTrail = len(value)
				}
				value = append(value, c)
			}
		case valueEscape:
			state = inValue
			if !isNewline(c) {
				value = append(value, c)
			}
		case singleQuote:
			if c == '\'' {
				state = preValue
			} else {
				value = append(value, c)
			}
		case doubleQuote:
			switch c {
			case '"':
				state = preValue
			case '\\':
				state = doubleQuoteEscape
			default:
				value = append(value, c)
			}
		case doubleQuoteEscape:
			state = doubleQuote
			switch {
			case strings.IndexByte("\"\\`$", c) >= 0:
				value = append(value, c)
			case c != '\n':
				value = append(value, '\\', c)
			}
		case comment:
			switch {
			case c == '\\':
				state = commentEscape
			case isNewline(c):
				state = preKey
			}
		case commentEscape:
			state = comment
		}
	}
	switch state {
	case preValue, inValue, valueEscape, singleQuote, doubleQuote, doubleQuoteEscape:
		if state == inValue && valueTrail >= 0 {
			value = value[:valueTrail]
		}
		push()
	}
	for _, a := range out {
		if !utf8.ValidString(a.key) || !utf8.ValidString(a.value) {
			t.Fatalf("environment file assignment %q=%q is not UTF-8: systemd refuses to load the file", a.key, a.value)
		}
	}
	return out
}

// envMap turns decoded assignments into a map, the last assignment winning
// as in systemd.
func envMap(assignments []envAssignment) map[string]string {
	m := make(map[string]string, len(assignments))
	for _, a := range assignments {
		m[a.key] = a.value
	}
	return m
}

// decodeExecLine reads the value of an ExecStart= line the way systemd does
// for one command: it splits the line into words, unquoting them and undoing
// C escapes, resolves "%%" in each word, then "$$" as the service manager
// does when it runs the command. Any other specifier or variable reference
// fails the test, since the rendered line must not contain one.
func decodeExecLine(t *testing.T, line string) []string {
	t.Helper()
	words, err := splitCommandLine(line)
	if err != nil {
		t.Fatalf("split command line %q: %v", line, err)
	}
	for i, w := range words {
		w, err = unescapeSpecifiers(w)
		if err != nil {
			t.Fatalf("command line %q word %d: %v", line, i, err)
		}
		w, err = unescapeVariables(w)
		if err != nil {
			t.Fatalf("command line %q word %d: %v", line, i, err)
		}
		words[i] = w
	}
	return words
}

// splitCommandLine splits s into words by systemd's quoting rules (see
// systemd.syntax(7)): words are separated by whitespace; a quote may open only
// at the start of a word and must be followed by whitespace or the end when it
// closes; C escapes are undone inside and outside quotes.
func splitCommandLine(s string) ([]string, error) {
	var words []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return words, nil
		}
		var word strings.Builder
		quote := byte(0)
		if s[0] == '"' || s[0] == '\'' {
			quote, s = s[0], s[1:]
		}
		for {
			if s == "" {
				if quote != 0 {
					return nil, fmt.Errorf("unterminated %c quote", quote)
				}
				break
			}
			c := s[0]
			if quote == 0 && (c == ' ' || c == '\t') {
				break
			}
			if quote != 0 && c == quote {
				s = s[1:]
				if s != "" && s[0] != ' ' && s[0] != '\t' {
					return nil, fmt.Errorf("closing quote followed by %q", s[0])
				}
				break
			}
			if c == '\\' {
				r, rest, err := cUnescape(s[1:])
				if err != nil {
					return nil, err
				}
				word.WriteString(r)
				s = rest
				continue
			}
			word.WriteByte(c)
			s = s[1:]
		}
		words = append(words, word.String())
	}
}

// cUnescape undoes the C escape at the start of s (just after the
// backslash) and returns its value and the rest of s.
func cUnescape(s string) (string, string, error) {
	if s == "" {
		return "", "", fmt.Errorf("backslash at end of line")
	}
	simple := map[byte]string{
		'a': "\a", 'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t", 'v': "\v",
		'\\': "\\", '"': "\"", '\'': "'", 's': " ",
	}
	if v, ok := simple[s[0]]; ok {
		return v, s[1:], nil
	}
	number := func(digits, base int, asRune bool) (string, string, error) {
		if len(s) < 1+digits {
			return "", "", fmt.Errorf("short escape \\%s", s)
		}
		n, err := strconv.ParseUint(s[1:1+digits], base, 32)
		if err != nil {
			return "", "", fmt.Errorf("bad escape \\%s: %v", s[:1+digits], err)
		}
		if asRune {
			return string(rune(n)), s[1+digits:], nil
		}
		return string([]byte{byte(n)}), s[1+digits:], nil
	}
	switch s[0] {
	case 'x':
		return number(2, 16, false)
	case 'u':
		return number(4, 16, true)
	case 'U':
		return number(8, 16, true)
	case '0', '1', '2', '3', '4', '5', '6', '7':
		n, err := strconv.ParseUint(s[:3], 8, 8)
		if err != nil {
			return "", "", fmt.Errorf("bad octal escape \\%s: %v", s[:3], err)
		}
		return string([]byte{byte(n)}), s[3:], nil
	}
	return "", "", fmt.Errorf("unknown escape \\%c", s[0])
}

// unescapeSpecifiers resolves "%%" to '%' and refuses any other specifier.
func unescapeSpecifiers(s string) (string, error) {
	return unescapeDoubled(s, '%', "specifier")
}

// unescapeVariables resolves "$$" to '$' and refuses any variable reference.
func unescapeVariables(s string) (string, error) {
	return unescapeDoubled(s, '$', "variable reference")
}

func unescapeDoubled(s string, c byte, what string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != c {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == c {
			b.WriteByte(c)
			i++
			continue
		}
		return "", fmt.Errorf("unescaped %s at %q", what, s[i:])
	}
	return b.String(), nil
}

// unitFile is a unit file read as sections of key=value lines.
type unitFile map[string]map[string][]string

// parseUnitFile reads an INI-style unit file, failing the test on any line
// that is neither blank, a comment, a section header nor an assignment, on an
// assignment outside a section and on a line continued with a backslash.
func parseUnitFile(t *testing.T, name string, data []byte) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: continuation lines are not expected: %q", name, i+1, line)
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				t.Fatalf("%s:%d: malformed section header %q", name, i+1, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || strings.TrimSpace(key) == "" {
				t.Fatalf("%s:%d: not an assignment: %q", name, i+1, line)
			}
			if section == "" {
				t.Fatalf("%s:%d: assignment outside a section: %q", name, i+1, line)
			}
			key = strings.TrimSpace(key)
			u[section][key] = append(u[section][key], strings.TrimSpace(value))
		}
	}
	return u
}

// TestDecodeEnvFile pins the decoder to systemd's documented behaviour
// (systemd.exec(5), EnvironmentFile=), so the round trips above test the
// renderer against systemd's rules rather than against themselves.
func TestDecodeEnvFile(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []envAssignment
	}{
		{"unquoted trims surrounding spaces", "A=  x  y  \n", []envAssignment{{"A", "x  y"}}},
		{"unquoted backslash keeps next character", `A=a\\b\"c` + "\n", []envAssignment{{"A", `a\b"c`}}},
		{"unquoted line continuation", "A=a\\\nb\n", []envAssignment{{"A", "ab"}}},
		{"single quotes are verbatim", `A='a\b"$c'` + "\n", []envAssignment{{"A", `a\b"$c`}}},
		{"double quotes unescape four characters", "A=\"\\\" \\\\ \\` \\$\"\n", []envAssignment{{"A", "\" \\ ` $"}}},
		{"double quotes keep other backslashes", `A="\n\q"` + "\n", []envAssignment{{"A", `\n\q`}}},
		{"double quotes span lines", "A=\"a\nb\"\nB=c\n", []envAssignment{{"A", "a\nb"}, {"B", "c"}}},
		{"double quotes continuation", "A=\"a\\\nb\"\n", []envAssignment{{"A", "ab"}}},
		{"no expansion", `A="$HOME ${X} %i"` + "\n", []envAssignment{{"A", "$HOME ${X} %i"}}},
		{"comments and blank lines", "# c\n; c\n\nA=1\n", []envAssignment{{"A", "1"}}},
		{"comment continued by backslash swallows a line", "# c \\\nA=1\nB=2\n", []envAssignment{{"B", "2"}}},
		{"line without equals is ignored", "junk\nA=1\n", []envAssignment{{"A", "1"}}},
		{"last line without newline", `A="x"`, []envAssignment{{"A", "x"}}},
		{"NUL ends the file", "A=1\nB=\"x\x00y\"\nC=3\n", []envAssignment{{"A", "1"}, {"B", "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decodeEnvFile(t, []byte(tc.file)); !slices.Equal(got, tc.want) {
				t.Errorf("decodeEnvFile(%q) = %q, want %q", tc.file, got, tc.want)
			}
		})
	}
}

// TestSplitCommandLine pins the command line decoder to systemd.syntax(7)
// and systemd.service(5).
func TestSplitCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       []string
		wantErr    bool
	}{
		{name: "words", line: "/bin/echo a  b", want: []string{"/bin/echo", "a", "b"}},
		{name: "double quotes group", line: `/bin/echo "two two" 'one'`, want: []string{"/bin/echo", "two two", "one"}},
		{name: "empty quoted word", line: `/bin/echo ""`, want: []string{"/bin/echo", ""}},
		{name: "C escapes", line: `"a\tb\x41\101\u00e9\s\\\""`, want: []string{"a\tbAAé \\\""}},
		{name: "escape outside quotes", line: `a\sb`, want: []string{"a b"}},
		{name: "unterminated quote", line: `"abc`, wantErr: true},
		{name: "text after closing quote", line: `"a"b`, wantErr: true},
		{name: "unknown escape", line: `"\q"`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := splitCommandLine(tc.line)
			if tc.wantErr {
				if err == nil {
					t.Errorf("splitCommandLine(%q) = %q, want an error", tc.line, got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("splitCommandLine(%q) = %q, %v; want %q", tc.line, got, err, tc.want)
			}
		})
	}
	for _, s := range []string{"%i", "a%", "$HOME", "${X}", "a$"} {
		if _, err := unescapeSpecifiers(s); strings.Contains(s, "%") && err == nil {
			t.Errorf("unescapeSpecifiers(%q) accepted a specifier", s)
		}
		if _, err := unescapeVariables(s); strings.Contains(s, "$") && err == nil {
			t.Errorf("unescapeVariables(%q) accepted a variable reference", s)
		}
	}
}
