package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/kato-manager/kato-manager/units"
)

// An entry is the settings of one instance as a person writes them in a
// file, each with its line: an instance of a fleet file (package fleet) or
// a template, of a fleet file or a [templates.NAME] of kato.toml. Both
// files read their entries by the rules here, so that a template means the
// same wherever it is written and an error names the file and line.

// DefaultInstanceName is the display name of an instance that gives none.
const DefaultInstanceName = "KatoProcessor"

// Entry is one instance of a fleet file, or a template, as written: only the
// fields it sets are set, and Set records which.
type Entry struct {
	ID        string
	Name      string
	APIPort   int // the key "port"
	ZMQPort   int
	Processor string
	Network   string
	Group     string
	// Weight is the instance's share of its group's front, 1 to 256; 0
	// when not given.
	Weight int
	// Replicas, when not zero, makes the entry that many instances,
	// ID-1…ID-N, in the group of that name unless it gives one.
	Replicas int
	Template string
	// Host is the [USER@]HOST whose kato-manager runs the instance, over
	// ssh; empty for this host.
	Host string
	// Parameters are the processor parameters the entry gives, by
	// Param.Name (an old name already renamed).
	Parameters map[string]any
	// Set holds the keys the entry gives, as Param.Name for parameters and
	// the entry key otherwise; Lines holds the line of each.
	Set   map[string]bool
	Lines map[string]int
	// Line is where the entry starts.
	Line int
}

// entryField is one key of a fleet entry other than a processor parameter:
// the one place entry keys are defined. inTemplate says whether a template
// may set it; set stores the node's value in e or returns the rule it
// breaks.
type entryField struct {
	key        string
	inTemplate bool
	set        func(e *Entry, n *Node) string
}

var entryFields = []entryField{
	{key: "id", set: func(e *Entry, n *Node) string {
		s, rule := n.str()
		if rule == "" {
			rule = units.InstanceIDRule(s)
		}
		e.ID = s
		return rule
	}},
	{key: "name", inTemplate: true, set: func(e *Entry, n *Node) string {
		s, rule := n.str()
		if rule == "" {
			rule = ruleOf(ValidateName(s))
		}
		e.Name = s
		return rule
	}},
	{key: "port", set: func(e *Entry, n *Node) string { return n.port(&e.APIPort) }},
	{key: "zmq_port", set: func(e *Entry, n *Node) string { return n.port(&e.ZMQPort) }},
	{key: "processor", inTemplate: true, set: func(e *Entry, n *Node) string {
		s, rule := n.str()
		e.Processor = s
		return rule
	}},
	{key: "network", inTemplate: true, set: func(e *Entry, n *Node) string {
		s, rule := n.str()
		if rule == "" && s != NetworkHost && s != NetworkPrivate {
			rule = "must be host or private"
		}
		e.Network = s
		return rule
	}},
	{key: "group", inTemplate: true, set: func(e *Entry, n *Node) string {
		s, rule := n.str()
		if rule == "" {
			rule = units.GroupNameRule(s)
		}
		e.Group = s
		return rule
	}},
	{key: "weight", inTemplate: true, set: func(e *Entry, n *Node) string {
		v, ok := n.Value.(int64)
		if !ok || n.Kind != ScalarNode {
			return "must be an integer"
		}
		if v < 1 || v > MaxWeight {
			return WeightRule
		}
		e.Weight = int(v)
		return ""
	}},
	{key: "replicas", set: func(e *Entry, n *Node) string {
		v, ok := n.Value.(int64)
		if !ok || n.Kind != ScalarNode {
			return "must be an integer"
		}
		if v < 1 || v > MaxReplicas {
			return fmt.Sprintf("must be between 1 and %d", MaxReplicas)
		}
		e.Replicas = int(v)
		return ""
	}},
	{key: "host", set: func(e *Entry, n *Node) string {
		s, rule := n.str()
		if rule == "" {
			rule = ruleOf(CheckHost(s))
		}
		e.Host = s
		return rule
	}},
	{key: "template", set: func(e *Entry, n *Node) string {
		s, rule := n.str()
		e.Template = s
		return rule
	}},
}

// EntryKeys returns the keys an instance entry of a fleet file may have, the
// processor parameters last, in table order.
func EntryKeys() []string {
	keys := make([]string, 0, len(entryFields)+len(Params))
	for _, f := range entryFields {
		keys = append(keys, f.key)
	}
	for _, p := range Params {
		keys = append(keys, p.Name)
	}
	return keys
}

// FileError is one problem of a fleet file or of kato.toml's templates:
// where it is, which entry and
// field, the value and the rule it breaks.
type FileError struct {
	File  string
	Line  int
	ID    string // the entry's id, or "template NAME"
	Field string
	Value string
	Rule  string
}

func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.ID != "" {
		b.WriteString(e.ID + ": ")
	}
	if e.Field == "" {
		b.WriteString(e.Rule)
		return b.String()
	}
	b.WriteString((&FieldError{Field: e.Field, Value: e.Value, Rule: e.Rule}).Error())
	return b.String()
}

// FileErrors are all the problems found in a file, in line order. A
// command that gets them changes nothing.
type FileErrors []*FileError

func (es FileErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes FileErrors a *FieldError to errors.As: bad input.
func (es FileErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = &FieldError{Field: e.Field, Value: e.Value, Rule: e.Rule}
	}
	return out
}

// Sorted orders es by line, in place, and returns it.
func (es FileErrors) Sorted() FileErrors {
	slices.SortStableFunc(es, func(a, b *FileError) int { return a.Line - b.Line })
	return es
}

// CheckHost checks a [USER@]HOST as ssh will be given it: not empty, not
// looking like an ssh option, and with no character a shell or ssh would
// read as something else.
func CheckHost(h string) error {
	user, name, hasUser := strings.Cut(h, "@")
	if !hasUser {
		user, name = "", h
	}
	switch {
	case name == "":
		return errors.New("empty host")
	case hasUser && user == "":
		return fmt.Errorf("empty user in %q", h)
	case strings.HasPrefix(h, "-"):
		return fmt.Errorf("%q starts with -", h)
	}
	for _, part := range []string{user, name} {
		for _, r := range part {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:[]%", r)
			if !ok {
				return fmt.Errorf("character %q not allowed in %q", r, h)
			}
		}
	}
	return nil
}

// Node is one value of a settings file with the line it is on: an entry
// of a fleet file or a [templates.NAME] table of kato.toml as read, before
// ReadEntry checks it by the rules of an entry.
type Node struct {
	Line     int
	Kind     NodeKind
	Keys     []string // mapping keys, in order
	Vals     []*Node  // mapping values or list items
	KeyLines []int    // the line of each mapping key
	Value    any      // scalar: string, int64, float64, bool or nil
	Text     string   // the scalar as written
}

// NodeKind is what a Node holds.
type NodeKind int

// The kinds of Node.
const (
	ScalarNode NodeKind = iota
	MapNode
	ListNode
)

// Get returns the value of the mapping key key, nil when n has none.
func (n *Node) Get(key string) *Node {
	for i, k := range n.Keys {
		if k == key {
			return n.Vals[i]
		}
	}
	return nil
}

// Display is n as an error shows it.
func (n *Node) Display() string {
	switch n.Kind {
	case MapNode:
		return "{…}"
	case ListNode:
		return "[…]"
	}
	if s, ok := n.Value.(string); ok {
		return s
	}
	return n.Text
}

func (n *Node) str() (string, string) {
	if s, ok := n.Value.(string); ok && n.Kind == ScalarNode {
		return s, ""
	}
	return "", "must be a string"
}

func (n *Node) port(p *int) string {
	v, ok := n.Value.(int64)
	if !ok || n.Kind != ScalarNode {
		return "must be an integer"
	}
	if !units.ValidPort(int(v)) {
		return units.PortRule
	}
	*p = int(v)
	return ""
}

// configTemplates reads the [templates.NAME] tables of kato.toml by the
// rules of a fleet file's templates.
func configTemplates(path string, data []byte, raw map[string]map[string]any) (map[string]*Entry, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	out := map[string]*Entry{}
	var errs FileErrors
	for _, name := range sortedNames(anyMap(raw)) {
		line := KeyLine(data, toml.Key{"templates", name})
		if rule := units.GroupNameRule(name); rule != "" {
			errs = append(errs, &FileError{File: path, Line: line, Field: "templates", Value: name, Rule: "name " + rule})
		}
		n := &Node{Kind: MapNode, Line: line}
		for _, k := range sortedNames(raw[name]) {
			kl := lineOr(KeyLine(data, toml.Key{"templates", name, k}), line)
			v := raw[name][k]
			child := &Node{Line: kl, Value: v, Text: fmt.Sprint(v)}
			switch v.(type) {
			case map[string]any:
				child.Kind = MapNode
			case []any, []map[string]any:
				child.Kind = ListNode
			}
			n.Keys, n.KeyLines, n.Vals = append(n.Keys, k), append(n.KeyLines, kl), append(n.Vals, child)
		}
		e, es := ReadEntry(path, n, "template "+name, true)
		errs = append(errs, es...)
		out[name] = e
	}
	if len(errs) > 0 {
		return nil, errs.Sorted()
	}
	return out, nil
}

func anyMap[V any](m map[string]V) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ReadEntry reads one instance entry or template of the file path from n:
// every key it has is checked, and every problem reported; label names the
// entry in errors.
func ReadEntry(path string, n *Node, label string, template bool) (*Entry, FileErrors) {
	var errs FileErrors
	fail := func(line int, field, value, rule string) {
		errs = append(errs, &FileError{File: path, Line: line, ID: label, Field: field, Value: value, Rule: rule})
	}
	if n.Kind != MapNode {
		what := "an instance"
		if template {
			what = "a template"
		}
		fail(n.Line, "", "", what+" must be a mapping of keys to values")
		return nil, errs
	}
	e := &Entry{Parameters: map[string]any{}, Set: map[string]bool{}, Lines: map[string]int{}, Line: n.Line}
	for i, key := range n.Keys {
		v, line := n.Vals[i], n.KeyLines[i]
		if field, ok := entryFieldNamed(key); ok {
			if template && !field.inTemplate {
				fail(line, key, v.Display(), "cannot be set in a template: it is each instance's own")
				continue
			}
			if rule := field.set(e, v); rule != "" {
				fail(line, key, v.Display(), rule)
				continue
			}
			e.Set[key], e.Lines[key] = true, line
			continue
		}
		name := key
		if newName, ok := renamedParams[key]; ok {
			if n.Get(newName) != nil {
				fail(line, key, v.Display(), "is the old name of "+newName+"; give only "+newName)
				continue
			}
			name = newName
		}
		row, ok := ParamNamed(name)
		if !ok {
			fail(line, key, v.Display(), "is not a key of an instance: must be one of "+strings.Join(EntryKeys(), ", "))
			continue
		}
		if v.Kind != ScalarNode {
			fail(line, key, v.Display(), row.Kind.rule())
			continue
		}
		val, err := DefaultParameters().Merge(map[string]any{name: v.Value})
		if err != nil {
			fail(line, key, v.Display(), ruleOf(err))
			continue
		}
		value := val[name]
		if row.rule != nil {
			if rule := row.rule(value); rule != "" {
				fail(line, key, v.Display(), rule)
				continue
			}
		}
		e.Parameters[name], e.Set[name], e.Lines[name] = value, true, line
	}
	if !template && !e.Set["id"] && !slices.ContainsFunc(errs, func(fe *FileError) bool { return fe.Field == "id" }) {
		fail(n.Line, "id", "", "must be set")
	}
	return e, errs
}

func entryFieldNamed(key string) (entryField, bool) {
	for _, f := range entryFields {
		if f.key == key {
			return f, true
		}
	}
	return entryField{}, false
}

// ruleOf is the Rule of err's *FieldError, or its message.
func ruleOf(err error) string {
	if err == nil {
		return ""
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Rule
	}
	return err.Error()
}

func lineOr(line, fallback int) int {
	if line > 0 {
		return line
	}
	return fallback
}
