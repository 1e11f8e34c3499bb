package fleet

import (
	"bytes"
	"strings"
)

// inlineTable is where one inline table of an array sits in a TOML
// document: the line of its "{" and the line of each of its keys.
type inlineTable struct {
	line int
	keys map[string]int
}

// inlineTableLines finds the root key's array of inline tables
// (`instances = [{id = "a"}, …]`) in the valid TOML document data and
// returns where each of its tables and their keys are, in order; nil when
// the key is not set to an array at the root. The decoder keeps positions
// to itself, so this reads the text: strings and comments are skipped,
// nested arrays and tables are stepped over.
func inlineTableLines(data []byte, key string) []inlineTable {
	start, line := rootAssignment(data, key)
	if start < 0 {
		return nil
	}
	var (
		out       []inlineTable
		stack     []byte // the open '[' and '{'
		expectKey bool
	)
	entry := func() *inlineTable {
		if len(stack) == 2 && stack[0] == '[' && stack[1] == '{' && len(out) > 0 {
			return &out[len(out)-1]
		}
		return nil
	}
	for i := start; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\n':
			line++
		case c == ' ' || c == '\t' || c == '\r':
		case c == '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			end, lines := skipString(data, i)
			if e := entry(); e != nil && expectKey {
				text := string(data[i+1 : end])
				e.keys[text] = line
				expectKey = false
			}
			line += lines
			i = end
		case c == '[' || c == '{':
			if len(stack) == 0 && c != '[' {
				return nil
			}
			stack = append(stack, c)
			if c == '{' && len(stack) == 2 && stack[0] == '[' {
				out = append(out, inlineTable{line: line, keys: map[string]int{}})
				expectKey = true
			}
		case c == ']' || c == '}':
			stack = stack[:max(0, len(stack)-1)]
			if len(stack) == 0 {
				return out
			}
		case c == ',':
			expectKey = entry() != nil
		case c == '=':
			expectKey = false
		default:
			if len(stack) == 0 {
				return nil // not an array
			}
			j := i
			for j < len(data) && isBareKeyByte(data[j]) {
				j++
			}
			if j == i {
				continue
			}
			if e := entry(); e != nil && expectKey {
				e.keys[string(data[i:j])] = line
				expectKey = false
			}
			i = j - 1
		}
	}
	return out
}

// rootAssignment returns the offset just after the "=" of key's assignment
// at the root of the document (before any table header) and its line; -1
// when there is none.
func rootAssignment(data []byte, key string) (int, int) {
	offset := 0
	for n, l := range bytes.SplitAfter(data, []byte("\n")) {
		t := strings.TrimSpace(string(l))
		if strings.HasPrefix(t, "[") {
			return -1, 0
		}
		for _, k := range []string{key, `"` + key + `"`, "'" + key + "'"} {
			if rest, ok := strings.CutPrefix(t, k); ok {
				if rest = strings.TrimLeft(rest, " \t"); strings.HasPrefix(rest, "=") {
					return offset + bytes.IndexByte(l, '=') + 1, n + 1
				}
			}
		}
		offset += len(l)
	}
	return -1, 0
}

// skipString returns the offset of the last quote of the string that
// starts at data[i] and how many line breaks it holds.
func skipString(data []byte, i int) (end, lines int) {
	q := data[i]
	triple := i+2 < len(data) && data[i+1] == q && data[i+2] == q
	j := i + 1
	if triple {
		j = i + 3
	}
	for ; j < len(data); j++ {
		switch data[j] {
		case '\n':
			lines++
		case '\\':
			if q == '"' {
				if j+1 < len(data) && data[j+1] == '\n' {
					lines++
				}
				j++
			}
		case q:
			if !triple {
				return j, lines
			}
			if j+2 < len(data) && data[j+1] == q && data[j+2] == q {
				// A closing triple may be followed by up to two more
				// quotes that belong to the string.
				for j+3 < len(data) && data[j+3] == q {
					j++
				}
				return j + 2, lines
			}
		}
	}
	return len(data) - 1, lines
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '+' || c == '.'
}
