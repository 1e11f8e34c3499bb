package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"

	"github.com/kato-manager/kato-manager/units"
)

// A fleet file describes a set of instances for `kato-manager apply` and
// `diff`: YAML as in the KATO multi-instance guide, JSON of the same shape,
// or TOML with one [[instances]] table per entry.
//
//	instances:
//	  - id: sentiment-analyzer
//	    name: "Sentiment Analysis"
//	    port: 8001
//	    indexer_type: VI
//	    max_predictions: 50
//	templates:
//	  small: {max_predictions: 10}
//
// Every file is read into one tree of nodes that remember their line, and
// that tree is checked by one set of rules whatever the format.

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
	Template  string
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

// Fleet is a fleet file read and checked.
type Fleet struct {
	Path      string
	Entries   []*Entry
	Templates map[string]*Entry
}

// entryField is one key of a fleet entry other than a processor parameter:
// the one place entry keys are defined. inTemplate says whether a template
// may set it; set stores the node's value in e or returns the rule it
// breaks.
type entryField struct {
	key        string
	inTemplate bool
	set        func(e *Entry, n *node) string
}

var entryFields = []entryField{
	{key: "id", set: func(e *Entry, n *node) string {
		s, rule := n.str()
		if rule == "" {
			rule = units.InstanceIDRule(s)
		}
		e.ID = s
		return rule
	}},
	{key: "name", inTemplate: true, set: func(e *Entry, n *node) string {
		s, rule := n.str()
		if rule == "" {
			rule = ruleOf(ValidateName(s))
		}
		e.Name = s
		return rule
	}},
	{key: "port", set: func(e *Entry, n *node) string { return n.port(&e.APIPort) }},
	{key: "zmq_port", set: func(e *Entry, n *node) string { return n.port(&e.ZMQPort) }},
	{key: "processor", inTemplate: true, set: func(e *Entry, n *node) string {
		s, rule := n.str()
		e.Processor = s
		return rule
	}},
	{key: "network", inTemplate: true, set: func(e *Entry, n *node) string {
		s, rule := n.str()
		if rule == "" && s != NetworkHost && s != NetworkPrivate {
			rule = "must be host or private"
		}
		e.Network = s
		return rule
	}},
	{key: "group", inTemplate: true, set: func(e *Entry, n *node) string {
		s, rule := n.str()
		if rule == "" {
			rule = units.GroupNameRule(s)
		}
		e.Group = s
		return rule
	}},
	{key: "host", set: func(e *Entry, n *node) string {
		s, rule := n.str()
		if rule == "" {
			rule = ruleOf(CheckHost(s))
		}
		e.Host = s
		return rule
	}},
	{key: "template", set: func(e *Entry, n *node) string {
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

// FileError is one problem of a fleet file: where it is, which entry and
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

// FileErrors are all the problems found in a fleet file, in line order. A
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

func (es FileErrors) sorted() FileErrors {
	slices.SortStableFunc(es, func(a, b *FileError) int { return a.Line - b.Line })
	return es
}

// LoadFleet reads the fleet file at path and resolves it against c (see
// ParseFleet and Resolve): the instances it describes, or every problem of
// the file at once as FileErrors; the Fleet is the whole file. Only the
// entries of host are resolved (see Fleet.OfHost), "" being this host's,
// for each host's kato-manager resolves its own against its own kato.toml.
func (c *Config) LoadFleet(path, host string) ([]Desired, *Fleet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read fleet file: %w", err)
	}
	return c.ReadFleet(path, data, host)
}

// ReadFleet is LoadFleet of a file's content; path names it in errors and
// its extension gives the format. The Fleet returned is the whole file.
func (c *Config) ReadFleet(path string, data []byte, host string) ([]Desired, *Fleet, error) {
	f, err := ParseFleet(path, data)
	var errs FileErrors
	if err != nil && !errors.As(err, &errs) {
		return nil, nil, err
	}
	if f == nil {
		return nil, nil, err
	}
	want, rerr := c.Resolve(f.OfHost(host))
	var more FileErrors
	if errors.As(rerr, &more) {
		errs = append(errs, more...)
	}
	if len(errs) > 0 {
		return nil, nil, errs.sorted()
	}
	return want, f, nil
}

// FleetFormats are the formats of a fleet file by extension.
var FleetFormats = map[string]string{".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}

// ParseFleet reads a fleet file's content; path names the file in errors
// and its extension the format. On FileErrors the Fleet holds what could be
// read, so that Resolve can find the problems that remain; a file that
// cannot be parsed at all gives a nil Fleet.
func ParseFleet(path string, data []byte) (*Fleet, error) {
	format, ok := FleetFormats[strings.ToLower(filepath.Ext(path))]
	if !ok {
		return nil, &FieldError{Field: "file", Value: path, Rule: "must end in .yaml, .yml, .json or .toml"}
	}
	var root *node
	var err error
	if format == "toml" {
		root, err = tomlTree(data)
	} else {
		root, err = yamlTree(data)
	}
	if err != nil {
		var fe *FileError
		if errors.As(err, &fe) {
			fe.File = path
			return nil, FileErrors{fe}
		}
		return nil, FileErrors{{File: path, Rule: err.Error()}}
	}
	f, errs := readFleet(path, root)
	if len(errs) > 0 {
		return f, errs.sorted()
	}
	return f, nil
}

// Hosts returns the hosts the entries name, sorted, without this host's "".
func (f *Fleet) Hosts() []string {
	var hosts []string
	for _, e := range f.Entries {
		if e.Host != "" && !slices.Contains(hosts, e.Host) {
			hosts = append(hosts, e.Host)
		}
	}
	slices.Sort(hosts)
	return hosts
}

// OfHost returns the fleet of one host: the entries whose host is host, ""
// for those without one, with all the templates.
func (f *Fleet) OfHost(host string) *Fleet {
	out := &Fleet{Path: f.Path, Templates: f.Templates}
	for _, e := range f.Entries {
		if e.Host == host {
			out.Entries = append(out.Entries, e)
		}
	}
	return out
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

// node is one value of a fleet file with the line it is on.
type node struct {
	line  int
	kind  nodeKind
	keys  []string // mapping keys, in order
	vals  []*node  // mapping values or list items
	lines []int    // the line of each mapping key
	value any      // scalar: string, int64, float64, bool or nil
	text  string   // the scalar as written
}

type nodeKind int

const (
	scalarNode nodeKind = iota
	mapNode
	listNode
)

func (n *node) get(key string) *node {
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

func (n *node) display() string {
	switch n.kind {
	case mapNode:
		return "{…}"
	case listNode:
		return "[…]"
	}
	if s, ok := n.value.(string); ok {
		return s
	}
	return n.text
}

func (n *node) str() (string, string) {
	if s, ok := n.value.(string); ok && n.kind == scalarNode {
		return s, ""
	}
	return "", "must be a string"
}

func (n *node) port(p *int) string {
	v, ok := n.value.(int64)
	if !ok || n.kind != scalarNode {
		return "must be an integer"
	}
	if !units.ValidPort(int(v)) {
		return units.PortRule
	}
	*p = int(v)
	return ""
}

// yamlTree reads YAML, and JSON as the YAML it is.
func yamlTree(data []byte) (*node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &node{kind: mapNode, line: 1}, nil
	}
	w := &yamlWalk{}
	return w.node(doc.Content[0], 0)
}

// Bounds of a YAML tree: an alias that contains itself would recurse
// forever, and aliases of aliases can stand for more nodes than memory
// holds.
const (
	maxYAMLDepth = 32
	maxYAMLNodes = 200000
)

// yamlWalk turns a yaml.Node tree into nodes, aliases resolved, within the
// bounds above.
type yamlWalk struct{ nodes int }

// yamlError turns yaml's "yaml: line N: msg" into a FileError at line N.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				return &FileError{Line: n, Rule: text}
			}
		}
	}
	return &FileError{Rule: msg}
}

func (w *yamlWalk) node(y *yaml.Node, depth int) (*node, error) {
	line := y.Line
	for y.Kind == yaml.AliasNode && y.Alias != nil {
		y = y.Alias
		depth++
		if depth > maxYAMLDepth {
			return nil, &FileError{Line: line, Rule: "aliases nest too deep (does one refer to itself?)"}
		}
	}
	if depth > maxYAMLDepth {
		return nil, &FileError{Line: line, Rule: fmt.Sprintf("values nest more than %d deep", maxYAMLDepth)}
	}
	if w.nodes++; w.nodes > maxYAMLNodes {
		return nil, &FileError{Line: line, Rule: fmt.Sprintf("the file stands for more than %d values (aliases included)", maxYAMLNodes)}
	}
	n := &node{line: line}
	switch y.Kind {
	case yaml.MappingNode:
		n.kind = mapNode
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, &FileError{Line: k.Line, Rule: "a key must be a plain name"}
			}
			if k.Value == "<<" {
				return nil, &FileError{Line: k.Line, Rule: "merge keys (<<) are not supported; use a template"}
			}
			child, err := w.node(v, depth+1)
			if err != nil {
				return nil, err
			}
			n.keys, n.vals, n.lines = append(n.keys, k.Value), append(n.vals, child), append(n.lines, k.Line)
		}
	case yaml.SequenceNode:
		n.kind = listNode
		for _, item := range y.Content {
			child, err := w.node(item, depth+1)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, child)
		}
	case yaml.ScalarNode:
		n.text = y.Value
		switch y.ShortTag() {
		case "!!int":
			var v int64
			if err := y.Decode(&v); err != nil {
				n.value = y.Value // out of range: reported as not an integer
			} else {
				n.value = v
			}
		case "!!float":
			var v float64
			if err := y.Decode(&v); err != nil {
				return nil, &FileError{Line: y.Line, Rule: err.Error()}
			}
			n.value = v
		case "!!bool":
			var v bool
			if err := y.Decode(&v); err != nil {
				return nil, &FileError{Line: y.Line, Rule: err.Error()}
			}
			n.value = v
		case "!!null":
			n.value = nil
		default:
			n.value = y.Value
		}
	default:
		return nil, &FileError{Line: y.Line, Rule: "unsupported YAML node"}
	}
	return n, nil
}

// tomlTree reads TOML. The decoder keeps positions to itself: the line of
// a table is that of its header, found with keyLine, and the line of each
// key of an [[instances]] entry is found by reading the lines after its
// header; those of an array of inline tables (`instances = [{…}, …]`) by
// inlineTableLines.
func tomlTree(data []byte) (*node, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &FileError{Line: pe.Position.Line, Rule: pe.Message}
		}
		return nil, err
	}
	lines := strings.Split(string(data), "\n")
	headers := map[string][]int{} // [[name]] -> lines of its headers
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[[") {
			if end := strings.Index(l, "]]"); end > 0 {
				name := strings.TrimSpace(l[2:end])
				headers[name] = append(headers[name], i+1)
			}
		}
	}
	keyAfter := func(start int, key string) int {
		for i := start; i < len(lines); i++ {
			l := strings.TrimSpace(lines[i])
			if i > start-1 && strings.HasPrefix(l, "[") {
				break
			}
			if k, _, ok := strings.Cut(l, "="); ok && strings.Trim(strings.TrimSpace(k), `"'`) == key {
				return i + 1
			}
		}
		return start
	}
	var conv func(v any, line int, path toml.Key) *node
	conv = func(v any, line int, path toml.Key) *node {
		n := &node{line: line}
		switch x := v.(type) {
		case map[string]any:
			n.kind = mapNode
			for _, k := range sortedNames(x) {
				kp := append(slices.Clone(path), k)
				kl := keyLine(data, kp)
				if kl == 0 {
					kl = line
				}
				n.keys, n.lines = append(n.keys, k), append(n.lines, kl)
				n.vals = append(n.vals, conv(x[k], kl, kp))
			}
		case []map[string]any:
			n.kind = listNode
			hs := headers[path.String()]
			for i, item := range x {
				l := line
				if i < len(hs) {
					l = hs[i]
				}
				child := &node{kind: mapNode, line: l}
				for _, k := range sortedNames(item) {
					kl := l
					if i < len(hs) {
						kl = keyAfter(l, k)
					}
					child.keys, child.lines = append(child.keys, k), append(child.lines, kl)
					child.vals = append(child.vals, conv(item[k], kl, nil))
				}
				n.vals = append(n.vals, child)
			}
		case []any:
			n.kind = listNode
			var inline []inlineTable
			if len(path) == 1 {
				inline = inlineTableLines(data, path[0])
			}
			for i, item := range x {
				m, isTable := item.(map[string]any)
				if !isTable || len(inline) != len(x) {
					n.vals = append(n.vals, conv(item, line, nil))
					continue
				}
				child := &node{kind: mapNode, line: inline[i].line}
				for _, k := range sortedNames(m) {
					kl := inline[i].keys[k]
					if kl == 0 {
						kl = inline[i].line
					}
					child.keys, child.lines = append(child.keys, k), append(child.lines, kl)
					child.vals = append(child.vals, conv(m[k], kl, nil))
				}
				n.vals = append(n.vals, child)
			}
		default:
			n.value = v
			n.text = fmt.Sprint(v)
			if s, ok := v.(string); ok {
				n.text = s
			}
		}
		return n
	}
	return conv(raw, 1, nil), nil
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
		line := keyLine(data, toml.Key{"templates", name})
		if rule := units.GroupNameRule(name); rule != "" {
			errs = append(errs, &FileError{File: path, Line: line, Field: "templates", Value: name, Rule: "name " + rule})
		}
		n := &node{kind: mapNode, line: line}
		for _, k := range sortedNames(raw[name]) {
			kl := lineOr(keyLine(data, toml.Key{"templates", name, k}), line)
			v := raw[name][k]
			child := &node{line: kl, value: v, text: fmt.Sprint(v)}
			switch v.(type) {
			case map[string]any:
				child.kind = mapNode
			case []any, []map[string]any:
				child.kind = listNode
			}
			n.keys, n.lines, n.vals = append(n.keys, k), append(n.lines, kl), append(n.vals, child)
		}
		e, es := readEntry(path, n, "template "+name, true)
		errs = append(errs, es...)
		out[name] = e
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
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

// readFleet checks the tree of a fleet file and builds the Fleet from the
// entries it could read, with every problem found.
func readFleet(path string, root *node) (*Fleet, FileErrors) {
	var errs FileErrors
	fail := func(line int, id, field, value, rule string) {
		errs = append(errs, &FileError{File: path, Line: line, ID: id, Field: field, Value: value, Rule: rule})
	}
	f := &Fleet{Path: path, Templates: map[string]*Entry{}}
	if root.kind != mapNode {
		fail(root.line, "", "", "", "the file must be a mapping with the key instances")
		return f, errs
	}
	for i, k := range root.keys {
		if k != "instances" && k != "templates" {
			fail(root.lines[i], "", k, root.vals[i].display(), "is not a key of a fleet file: must be instances or templates")
		}
	}
	if t := root.get("templates"); t != nil {
		if t.kind != mapNode {
			fail(t.line, "", "templates", t.display(), "must be a mapping of template names to settings")
		} else {
			for i, name := range t.keys {
				label := "template " + name
				if rule := units.GroupNameRule(name); rule != "" {
					fail(t.lines[i], "", "templates", name, "name "+rule)
				}
				e, es := readEntry(path, t.vals[i], label, true)
				errs = append(errs, es...)
				f.Templates[name] = e
			}
		}
	}
	list := root.get("instances")
	switch {
	case list == nil:
		fail(root.line, "", "instances", "", "must be set: the list of instances")
	case list.kind != listNode:
		fail(list.line, "", "instances", list.display(), "must be a list of instances")
	default:
		for i, item := range list.vals {
			label := fmt.Sprintf("instance %d", i+1)
			if item.kind == mapNode {
				if idNode := item.get("id"); idNode != nil {
					if s, ok := idNode.value.(string); ok && s != "" {
						label = s
					}
				}
			}
			e, es := readEntry(path, item, label, false)
			errs = append(errs, es...)
			if e != nil {
				f.Entries = append(f.Entries, e)
			}
		}
	}
	// Across entries: one id once, one port for one instance of a host.
	type hostPort struct {
		host string
		port int
	}
	ids := map[string]*Entry{}
	ports := map[hostPort]string{}
	for _, e := range f.Entries {
		if e.ID == "" {
			continue
		}
		if first, ok := ids[e.ID]; ok {
			fail(e.Lines["id"], e.ID, "id", e.ID, fmt.Sprintf("is already the id of the entry on line %d", first.Line))
			continue
		}
		ids[e.ID] = e
		for _, p := range []struct {
			key  string
			port int
		}{{"port", e.APIPort}, {"zmq_port", e.ZMQPort}} {
			if p.port == 0 {
				continue
			}
			if owner, taken := ports[hostPort{e.Host, p.port}]; taken {
				fail(e.Lines[p.key], e.ID, p.key, strconv.Itoa(p.port), "is already a port of instance "+owner)
				continue
			}
			ports[hostPort{e.Host, p.port}] = e.ID
		}
	}
	return f, errs
}

// readEntry reads one instance entry or template: every key it has is
// checked, and every problem reported.
func readEntry(path string, n *node, label string, template bool) (*Entry, FileErrors) {
	var errs FileErrors
	fail := func(line int, field, value, rule string) {
		errs = append(errs, &FileError{File: path, Line: line, ID: label, Field: field, Value: value, Rule: rule})
	}
	if n.kind != mapNode {
		what := "an instance"
		if template {
			what = "a template"
		}
		fail(n.line, "", "", what+" must be a mapping of keys to values")
		return nil, errs
	}
	e := &Entry{Parameters: map[string]any{}, Set: map[string]bool{}, Lines: map[string]int{}, Line: n.line}
	for i, key := range n.keys {
		v, line := n.vals[i], n.lines[i]
		if field, ok := entryFieldNamed(key); ok {
			if template && !field.inTemplate {
				fail(line, key, v.display(), "cannot be set in a template: it is each instance's own")
				continue
			}
			if rule := field.set(e, v); rule != "" {
				fail(line, key, v.display(), rule)
				continue
			}
			e.Set[key], e.Lines[key] = true, line
			continue
		}
		name := key
		if newName, ok := renamedParams[key]; ok {
			if n.get(newName) != nil {
				fail(line, key, v.display(), "is the old name of "+newName+"; give only "+newName)
				continue
			}
			name = newName
		}
		row, ok := ParamNamed(name)
		if !ok {
			fail(line, key, v.display(), "is not a key of an instance: must be one of "+strings.Join(EntryKeys(), ", "))
			continue
		}
		if v.kind != scalarNode {
			fail(line, key, v.display(), row.Kind.rule())
			continue
		}
		val, err := DefaultParameters().Merge(map[string]any{name: v.value})
		if err != nil {
			fail(line, key, v.display(), ruleOf(err))
			continue
		}
		value := val[name]
		if row.rule != nil {
			if rule := row.rule(value); rule != "" {
				fail(line, key, v.display(), rule)
				continue
			}
		}
		e.Parameters[name], e.Set[name], e.Lines[name] = value, true, line
	}
	if !template && !e.Set["id"] && !slices.ContainsFunc(errs, func(fe *FileError) bool { return fe.Field == "id" }) {
		fail(n.line, "id", "", "must be set")
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

// Desired is an instance as a fleet file wants it: the registry fields a
// fleet file decides, a zero port meaning "keep the registered one, or
// allocate one", and where the entry is.
type Desired struct {
	Instance
	Entry *Entry
}

// Resolve turns the fleet's entries into the instances they describe: each
// entry over its template (the file's templates, then kato.toml's) over the
// [defaults] of kato.toml. Processors are looked up in kato.toml. Every
// problem is returned at once.
func (c *Config) Resolve(f *Fleet) ([]Desired, error) {
	var errs FileErrors
	out := make([]Desired, 0, len(f.Entries))
	for _, e := range f.Entries {
		fail := func(field, value, rule string) {
			errs = append(errs, &FileError{File: f.Path, Line: lineOr(e.Lines[field], e.Line), ID: e.ID, Field: field, Value: value, Rule: rule})
		}
		var tpl *Entry
		if e.Template != "" {
			if t, ok := f.Templates[e.Template]; ok {
				tpl = t
			} else if t, ok := c.Templates[e.Template]; ok {
				tpl = t
			} else {
				fail("template", e.Template, "must name a template of the file or of kato.toml: "+orNone(c.templateNames(f)))
				continue
			}
		}
		pick := func(key string, get func(*Entry) string) string {
			if e.Set[key] {
				return get(e)
			}
			if tpl != nil && tpl.Set[key] {
				return get(tpl)
			}
			return ""
		}
		d := Desired{Entry: e, Instance: Instance{ID: e.ID, Unit: units.InstanceUnit(e.ID), APIPort: e.APIPort, ZMQPort: e.ZMQPort}}
		d.Name = pick("name", func(x *Entry) string { return x.Name })
		if d.Name == "" {
			d.Name = DefaultInstanceName
		}
		procName := pick("processor", func(x *Entry) string { return x.Processor })
		proc, err := c.ProcessorNamed(procName)
		if err != nil {
			fail("processor", procName, ruleOf(err))
			continue
		}
		if procName == DefaultProcessor {
			procName = ""
		}
		d.Processor = procName
		d.Network = pick("network", func(x *Entry) string { return x.Network })
		if d.Network == "" {
			d.Network = proc.Network
		}
		d.Group = pick("group", func(x *Entry) string { return x.Group })
		d.Parameters = c.Defaults.Clone()
		if tpl != nil {
			for k, v := range tpl.Parameters {
				d.Parameters[k] = v
			}
		}
		for k, v := range e.Parameters {
			d.Parameters[k] = v
		}
		if err := d.Parameters.Validate(); err != nil {
			var fe *FieldError
			errors.As(err, &fe)
			fail(fe.Field, fe.Value, fe.Rule)
			continue
		}
		out = append(out, d)
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	return out, nil
}

func lineOr(line, fallback int) int {
	if line > 0 {
		return line
	}
	return fallback
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "there are none"
	}
	return strings.Join(names, ", ")
}

func (c *Config) templateNames(f *Fleet) []string {
	seen := map[string]bool{}
	for n := range f.Templates {
		seen[n] = true
	}
	for n := range c.Templates {
		seen[n] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// DefaultInstanceName is the display name of an instance that gives none.
const DefaultInstanceName = "KatoProcessor"

// Action is what a plan does to one instance.
type Action int

// The actions of a plan.
const (
	Keep   Action = iota // registered and as the file wants it
	Create               // in the file, not registered
	Change               // registered, with settings that differ
	Remove               // registered, not in the file, and --prune
	// Restart is an instance registered as the file wants it whose unit
	// does not run that: it is not running, or its process was started
	// with other settings. PlanFleet never plans it (it reads no unit);
	// the supervisor turns a Keep into it.
	Restart
)

// Symbol is the mark diff prints before the instance: "+", "~", "-", "^"
// or "=".
func (a Action) Symbol() string { return [...]string{"=", "+", "~", "-", "^"}[a] }

func (a Action) String() string {
	return [...]string{"keep", "create", "change", "remove", "restart"}[a]
}

// FieldChange is one field of an instance that a plan changes.
type FieldChange struct {
	Field    string
	Old, New string // "" for a field the instance did not have
}

// Step is what a plan does to one instance.
type Step struct {
	Action  Action
	ID      string
	Changes []FieldChange
	// Want is the instance as it will be registered (ports 0 when still to
	// be allocated); Have the registered one, nil for Create.
	Want *Desired
	Have *Instance
}

// Plan is every step of an apply, in the order of the file, removals last.
type Plan struct {
	Steps []Step
}

// Pending reports whether the plan changes anything.
func (p Plan) Pending() bool {
	for _, s := range p.Steps {
		if s.Action != Keep {
			return true
		}
	}
	return false
}

// Count returns how many steps have the action a.
func (p Plan) Count(a Action) int {
	n := 0
	for _, s := range p.Steps {
		if s.Action == a {
			n++
		}
	}
	return n
}

// PlanFleet compares the instances a fleet file wants with the registry.
// A port the file leaves out keeps the registered one. With prune, the
// registered instances the file does not name are removed. A port the file
// gives that an instance kept outside the file holds is a FileError.
func PlanFleet(path string, want []Desired, reg *Registry, prune bool) (Plan, error) {
	var plan Plan
	var errs FileErrors
	inFile := map[string]bool{}
	for _, d := range want {
		inFile[d.ID] = true
	}
	owners := map[int]string{}
	for id, in := range reg.Instances {
		if !inFile[id] && !prune {
			owners[in.APIPort] = id
			if in.ZMQPort != 0 {
				owners[in.ZMQPort] = id
			}
		}
	}
	for i := range want {
		d := &want[i]
		for _, p := range []struct {
			key  string
			port int
		}{{"port", d.APIPort}, {"zmq_port", d.ZMQPort}} {
			if owner, ok := owners[p.port]; ok && p.port != 0 {
				errs = append(errs, &FileError{File: path, Line: lineOr(d.Entry.Lines[p.key], d.Entry.Line), ID: d.ID, Field: p.key, Value: strconv.Itoa(p.port),
					Rule: "is a port of instance " + owner + ", which the file does not name (remove it, or apply with --prune)"})
			}
		}
		have, ok := reg.Instances[d.ID]
		if !ok {
			plan.Steps = append(plan.Steps, Step{Action: Create, ID: d.ID, Want: d, Changes: fieldChanges(nil, &d.Instance)})
			continue
		}
		if d.APIPort == 0 {
			d.APIPort = have.APIPort
		}
		if d.ZMQPort == 0 {
			d.ZMQPort = have.ZMQPort
		}
		changes := fieldChanges(have, &d.Instance)
		action := Keep
		if len(changes) > 0 {
			action = Change
		}
		plan.Steps = append(plan.Steps, Step{Action: action, ID: d.ID, Want: d, Have: have, Changes: changes})
	}
	if prune {
		for _, in := range reg.Sorted() {
			if !inFile[in.ID] {
				plan.Steps = append(plan.Steps, Step{Action: Remove, ID: in.ID, Have: in})
			}
		}
	}
	if len(errs) > 0 {
		return Plan{}, errs.sorted()
	}
	return plan, nil
}

// fleetFields are the fields of an instance a fleet file decides, with how
// each reads; the processor parameters follow in table order.
var fleetFields = []struct {
	key string
	get func(*Instance) string
}{
	{"name", func(in *Instance) string { return in.Name }},
	{"port", func(in *Instance) string { return portText(in.APIPort) }},
	{"zmq_port", func(in *Instance) string { return portText(in.ZMQPort) }},
	{"processor", func(in *Instance) string { return processorText(in.Processor) }},
	{"network", func(in *Instance) string { return in.Network }},
	{"group", func(in *Instance) string { return in.Group }},
}

func portText(p int) string {
	if p == 0 {
		return "(next free)"
	}
	return strconv.Itoa(p)
}

func processorText(p string) string {
	if p == "" {
		return DefaultProcessor
	}
	return p
}

// fieldChanges lists the fields that differ between have (nil: none) and
// want, in the order diff prints them.
func fieldChanges(have, want *Instance) []FieldChange {
	var out []FieldChange
	for _, f := range fleetFields {
		n, o := f.get(want), ""
		if have != nil {
			o = f.get(have)
		}
		if have == nil && n == "" {
			continue
		}
		if n != o {
			out = append(out, FieldChange{Field: f.key, Old: o, New: n})
		}
	}
	for _, row := range Params {
		n := FormatValue(want.Parameters[row.Name])
		o := ""
		if have != nil {
			o = FormatValue(have.Parameters[row.Name])
		}
		if n != o {
			out = append(out, FieldChange{Field: row.Name, Old: o, New: n})
		}
	}
	return out
}

// Export writes the registry as a fleet file in format (yaml, json or
// toml) that PlanFleet finds nothing to do with: every instance with its
// ports, processor, network and group, and the parameters that differ from
// defaults, the [defaults] of kato.toml.
func Export(reg *Registry, defaults Parameters, format string) ([]byte, error) {
	type entry = map[string]any
	var list []entry
	var keys [][]string
	for _, in := range reg.Sorted() {
		e := entry{"id": in.ID, "name": in.Name, "port": in.APIPort,
			"processor": processorText(in.Processor), "network": in.Network}
		order := []string{"id", "name", "port"}
		if in.ZMQPort != 0 {
			e["zmq_port"] = in.ZMQPort
			order = append(order, "zmq_port")
		}
		order = append(order, "processor", "network")
		if in.Group != "" {
			e["group"] = in.Group
			order = append(order, "group")
		}
		for _, row := range Params {
			if v := in.Parameters[row.Name]; FormatValue(v) != FormatValue(defaults[row.Name]) {
				e[row.Name] = v
				order = append(order, row.Name)
			}
		}
		list = append(list, e)
		keys = append(keys, order)
	}
	switch format {
	case "json":
		return jsonOf(list, keys)
	case "yaml":
		root := &yaml.Node{Kind: yaml.MappingNode}
		items := &yaml.Node{Kind: yaml.SequenceNode}
		for i, e := range list {
			m := &yaml.Node{Kind: yaml.MappingNode}
			for _, k := range keys[i] {
				var v yaml.Node
				if err := v.Encode(e[k]); err != nil {
					return nil, err
				}
				m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &v)
			}
			items.Content = append(items.Content, m)
		}
		root.Content = []*yaml.Node{{Kind: yaml.ScalarNode, Value: "instances"}, items}
		var buf bytes.Buffer
		buf.WriteString("# Exported by kato-manager: `kato-manager apply -f FILE` of it changes nothing.\n")
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(root); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case "toml":
		var buf bytes.Buffer
		buf.WriteString("# Exported by kato-manager: `kato-manager apply -f FILE` of it changes nothing.\n")
		if len(list) == 0 {
			buf.WriteString("instances = []\n")
		}
		for i, e := range list {
			buf.WriteString("\n[[instances]]\n")
			for _, k := range keys[i] {
				v, err := tomlValue(e[k])
				if err != nil {
					return nil, err
				}
				buf.WriteString(k + " = " + v + "\n")
			}
		}
		return buf.Bytes(), nil
	}
	return nil, &FieldError{Field: "format", Value: format, Rule: "must be yaml, json or toml"}
}

// jsonOf writes the entries as JSON with their keys in order.
func jsonOf(list []map[string]any, keys [][]string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("{\n  \"instances\": [")
	for i, e := range list {
		if i > 0 {
			buf.WriteString(",")
		}
		buf.WriteString("\n    {")
		for j, k := range keys[i] {
			if j > 0 {
				buf.WriteString(", ")
			}
			v, err := tomlValue(e[k]) // TOML's strings, numbers and booleans are JSON's
			if err != nil {
				return nil, err
			}
			buf.WriteString(strconv.Quote(k) + ": " + v)
		}
		buf.WriteString("}")
	}
	if len(list) > 0 {
		buf.WriteString("\n  ")
	}
	buf.WriteString("]\n}\n")
	return buf.Bytes(), nil
}

// tomlValue renders a scalar as a TOML (and JSON) value.
func tomlValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return jsonString(x), nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEn") {
			s += ".0"
		}
		return s, nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	return "", fmt.Errorf("cannot export value %v of type %T", v, v)
}

// jsonString quotes s for JSON and TOML alike: both read \", \\, \n, \t
// and \uXXXX.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
