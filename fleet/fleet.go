package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"

	"github.com/kato-manager/kato-manager/config"
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

// Fleet is a fleet file read and checked.
type Fleet struct {
	Path      string
	Entries   []*config.Entry
	Templates map[string]*config.Entry
	// Groups are the file's groups:, which an apply stores in the
	// registry, over kato.toml's [groups.NAME] of the same name;
	// HasGroups says the file has the key (an empty mapping clears them).
	Groups    map[string]config.Group
	HasGroups bool
	// groupLines are the line of each group.
	groupLines map[string]int
}

// groupKeys are the keys of a group in a fleet file, as in kato.toml.
var groupKeys = []string{"front", "address", "balance", "ready", "template", "processor", "surge"}

// readGroup reads one group of a fleet file's groups:.
func readGroup(n *config.Node, fail func(line int, field, value, rule string)) config.Group {
	var g config.Group
	if n.Kind != config.MapNode {
		fail(n.Line, "", n.Display(), "must be a mapping of "+strings.Join(groupKeys, ", "))
		return g
	}
	for i, k := range n.Keys {
		v := n.Vals[i]
		if k == "front" || k == "surge" {
			p, ok := v.Value.(int64)
			if !ok || v.Kind != config.ScalarNode {
				fail(n.KeyLines[i], k, v.Display(), "must be an integer")
				continue
			}
			if k == "front" {
				g.Front = int(p)
			} else {
				g.Surge = int(p)
			}
			continue
		}
		s, ok := v.Value.(string)
		if !ok || v.Kind != config.ScalarNode {
			if slices.Contains(groupKeys, k) {
				fail(n.KeyLines[i], k, v.Display(), "must be a string")
			} else {
				fail(n.KeyLines[i], k, v.Display(), "is not a key of a group: must be one of "+strings.Join(groupKeys, ", "))
			}
			continue
		}
		switch k {
		case "address":
			g.Address = s
		case "balance":
			g.Balance = s
		case "ready":
			g.Ready = s
		case "template":
			g.Template = s
		case "processor":
			g.Processor = s
		default:
			fail(n.KeyLines[i], k, s, "is not a key of a group: must be one of "+strings.Join(groupKeys, ", "))
		}
	}
	return g
}

// LoadFleet reads the fleet file at path and resolves it against c (see
// ParseFleet and Resolve): the instances it describes, or every problem of
// the file at once as FileErrors; the Fleet is the whole file. Only the
// entries of host are resolved (see Fleet.OfHost), "" being this host's,
// for each host's kato-manager resolves its own against its own kato.toml.
func LoadFleet(c *config.Config, path, host string) ([]Desired, *Fleet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read fleet file: %w", err)
	}
	return ReadFleet(c, path, data, host)
}

// ReadFleet is LoadFleet of a file's content; path names it in errors and
// its extension gives the format. The Fleet returned is the whole file.
func ReadFleet(c *config.Config, path string, data []byte, host string) ([]Desired, *Fleet, error) {
	f, err := ParseFleet(path, data)
	var errs config.FileErrors
	if err != nil && !errors.As(err, &errs) {
		return nil, nil, err
	}
	if f == nil {
		return nil, nil, err
	}
	want, rerr := Resolve(c, f.OfHost(host))
	var more config.FileErrors
	if errors.As(rerr, &more) {
		errs = append(errs, more...)
	}
	// The file's groups by kato.toml's rules, one front per port.
	fronts := map[int]string{}
	for _, name := range slices.Sorted(maps.Keys(f.Groups)) {
		g := f.Groups[name]
		err := c.CheckGroup(name, g)
		if err == nil && g.Front != 0 {
			if other, ok := fronts[g.Front]; ok {
				err = &config.FieldError{Field: "groups." + name + ".front", Value: strconv.Itoa(g.Front), Rule: "must differ from the front of group " + other}
			}
			fronts[g.Front] = name
		}
		var fe *config.FieldError
		if errors.As(err, &fe) {
			errs = append(errs, &config.FileError{File: path, Line: f.groupLines[name], ID: "group " + name, Field: strings.TrimPrefix(fe.Field, "groups."+name+"."), Value: fe.Value, Rule: fe.Rule})
		}
	}
	if host == "" {
		errs = append(errs, f.checkRemoteMembers(c)...)
	}
	if len(errs) > 0 {
		return nil, nil, errs.Sorted()
	}
	return want, f, nil
}

// checkRemoteMembers refuses an entry on another host, in a group whose
// front runs here, that names its host by a loopback address: the front
// reaches members on other hosts at their hosts' addresses.
func (f *Fleet) checkRemoteMembers(c *config.Config) config.FileErrors {
	var errs config.FileErrors
	for _, e := range f.Entries {
		if e.Host == "" || !config.IsLoopbackHost(e.Host) {
			continue
		}
		group := e.Group
		if group == "" && e.Template != "" {
			if t, ok := f.Templates[e.Template]; ok {
				group = t.Group
			} else if t, ok := c.Templates[e.Template]; ok {
				group = t.Group
			}
		}
		if group == "" && e.Replicas > 0 {
			group = e.ID
		}
		g, ok := f.Groups[group]
		if !ok {
			g, ok = c.Groups[group]
		}
		if group == "" || !ok || g.Front == 0 {
			continue
		}
		errs = append(errs, &config.FileError{File: f.Path, Line: e.Lines["host"], ID: e.ID, Field: "host", Value: e.Host, Rule: config.RemoteMemberRule})
	}
	return errs
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
		return nil, &config.FieldError{Field: "file", Value: path, Rule: "must end in .yaml, .yml, .json or .toml"}
	}
	var root *config.Node
	var err error
	if format == "toml" {
		root, err = tomlTree(data)
	} else {
		root, err = yamlTree(data)
	}
	if err != nil {
		var fe *config.FileError
		if errors.As(err, &fe) {
			fe.File = path
			return nil, config.FileErrors{fe}
		}
		return nil, config.FileErrors{{File: path, Rule: err.Error()}}
	}
	f, errs := readFleet(path, root)
	if len(errs) > 0 {
		return f, errs.Sorted()
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

// yamlTree reads YAML, and JSON as the YAML it is.
func yamlTree(data []byte) (*config.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &config.Node{Kind: config.MapNode, Line: 1}, nil
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
				return &config.FileError{Line: n, Rule: text}
			}
		}
	}
	return &config.FileError{Rule: msg}
}

func (w *yamlWalk) node(y *yaml.Node, depth int) (*config.Node, error) {
	line := y.Line
	for y.Kind == yaml.AliasNode && y.Alias != nil {
		y = y.Alias
		depth++
		if depth > maxYAMLDepth {
			return nil, &config.FileError{Line: line, Rule: "aliases nest too deep (does one refer to itself?)"}
		}
	}
	if depth > maxYAMLDepth {
		return nil, &config.FileError{Line: line, Rule: fmt.Sprintf("values nest more than %d deep", maxYAMLDepth)}
	}
	if w.nodes++; w.nodes > maxYAMLNodes {
		return nil, &config.FileError{Line: line, Rule: fmt.Sprintf("the file stands for more than %d values (aliases included)", maxYAMLNodes)}
	}
	n := &config.Node{Line: line}
	switch y.Kind {
	case yaml.MappingNode:
		n.Kind = config.MapNode
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, &config.FileError{Line: k.Line, Rule: "a key must be a plain name"}
			}
			if k.Value == "<<" {
				return nil, &config.FileError{Line: k.Line, Rule: "merge keys (<<) are not supported; use a template"}
			}
			child, err := w.node(v, depth+1)
			if err != nil {
				return nil, err
			}
			n.Keys, n.Vals, n.KeyLines = append(n.Keys, k.Value), append(n.Vals, child), append(n.KeyLines, k.Line)
		}
	case yaml.SequenceNode:
		n.Kind = config.ListNode
		for _, item := range y.Content {
			child, err := w.node(item, depth+1)
			if err != nil {
				return nil, err
			}
			n.Vals = append(n.Vals, child)
		}
	case yaml.ScalarNode:
		n.Text = y.Value
		switch y.ShortTag() {
		case "!!int":
			var v int64
			if err := y.Decode(&v); err != nil {
				n.Value = y.Value // out of range: reported as not an integer
			} else {
				n.Value = v
			}
		case "!!float":
			var v float64
			if err := y.Decode(&v); err != nil {
				return nil, &config.FileError{Line: y.Line, Rule: err.Error()}
			}
			n.Value = v
		case "!!bool":
			var v bool
			if err := y.Decode(&v); err != nil {
				return nil, &config.FileError{Line: y.Line, Rule: err.Error()}
			}
			n.Value = v
		case "!!null":
			n.Value = nil
		default:
			n.Value = y.Value
		}
	default:
		return nil, &config.FileError{Line: y.Line, Rule: "unsupported YAML node"}
	}
	return n, nil
}

// tomlTree reads TOML. The decoder keeps positions to itself: the line of
// a table is that of its header, found with keyLine, and the line of each
// key of an [[instances]] entry is found by reading the lines after its
// header; those of an array of inline tables (`instances = [{…}, …]`) by
// inlineTableLines.
func tomlTree(data []byte) (*config.Node, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &config.FileError{Line: pe.Position.Line, Rule: pe.Message}
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
	var conv func(v any, line int, path toml.Key) *config.Node
	conv = func(v any, line int, path toml.Key) *config.Node {
		n := &config.Node{Line: line}
		switch x := v.(type) {
		case map[string]any:
			n.Kind = config.MapNode
			for _, k := range slices.Sorted(maps.Keys(x)) {
				kp := append(slices.Clone(path), k)
				kl := config.KeyLine(data, kp)
				if kl == 0 {
					kl = line
				}
				n.Keys, n.KeyLines = append(n.Keys, k), append(n.KeyLines, kl)
				n.Vals = append(n.Vals, conv(x[k], kl, kp))
			}
		case []map[string]any:
			n.Kind = config.ListNode
			hs := headers[path.String()]
			for i, item := range x {
				l := line
				if i < len(hs) {
					l = hs[i]
				}
				child := &config.Node{Kind: config.MapNode, Line: l}
				for _, k := range slices.Sorted(maps.Keys(item)) {
					kl := l
					if i < len(hs) {
						kl = keyAfter(l, k)
					}
					child.Keys, child.KeyLines = append(child.Keys, k), append(child.KeyLines, kl)
					child.Vals = append(child.Vals, conv(item[k], kl, nil))
				}
				n.Vals = append(n.Vals, child)
			}
		case []any:
			n.Kind = config.ListNode
			var inline []inlineTable
			if len(path) == 1 {
				inline = inlineTableLines(data, path[0])
			}
			for i, item := range x {
				m, isTable := item.(map[string]any)
				if !isTable || len(inline) != len(x) {
					n.Vals = append(n.Vals, conv(item, line, nil))
					continue
				}
				child := &config.Node{Kind: config.MapNode, Line: inline[i].line}
				for _, k := range slices.Sorted(maps.Keys(m)) {
					kl := inline[i].keys[k]
					if kl == 0 {
						kl = inline[i].line
					}
					child.Keys, child.KeyLines = append(child.Keys, k), append(child.KeyLines, kl)
					child.Vals = append(child.Vals, conv(m[k], kl, nil))
				}
				n.Vals = append(n.Vals, child)
			}
		default:
			n.Value = v
			n.Text = fmt.Sprint(v)
			if s, ok := v.(string); ok {
				n.Text = s
			}
		}
		return n
	}
	return conv(raw, 1, nil), nil
}

// readFleet checks the tree of a fleet file and builds the Fleet from the
// entries it could read, with every problem found.
func readFleet(path string, root *config.Node) (*Fleet, config.FileErrors) {
	var errs config.FileErrors
	fail := func(line int, id, field, value, rule string) {
		errs = append(errs, &config.FileError{File: path, Line: line, ID: id, Field: field, Value: value, Rule: rule})
	}
	f := &Fleet{Path: path, Templates: map[string]*config.Entry{}}
	if root.Kind != config.MapNode {
		fail(root.Line, "", "", "", "the file must be a mapping with the key instances")
		return f, errs
	}
	for i, k := range root.Keys {
		if k != "instances" && k != "templates" && k != "groups" {
			fail(root.KeyLines[i], "", k, root.Vals[i].Display(), "is not a key of a fleet file: must be instances, templates or groups")
		}
	}
	if g := root.Get("groups"); g != nil {
		f.HasGroups, f.Groups, f.groupLines = true, map[string]config.Group{}, map[string]int{}
		if g.Kind != config.MapNode {
			fail(g.Line, "", "groups", g.Display(), "must be a mapping of group names to their settings")
		} else {
			for i, name := range g.Keys {
				label := "group " + name
				if rule := units.GroupNameRule(name); rule != "" {
					fail(g.KeyLines[i], "", "groups", name, "name "+rule)
					continue
				}
				f.Groups[name] = readGroup(g.Vals[i], func(line int, field, value, rule string) { fail(line, label, field, value, rule) })
				f.groupLines[name] = g.KeyLines[i]
			}
		}
	}
	if t := root.Get("templates"); t != nil {
		if t.Kind != config.MapNode {
			fail(t.Line, "", "templates", t.Display(), "must be a mapping of template names to settings")
		} else {
			for i, name := range t.Keys {
				label := "template " + name
				if rule := units.GroupNameRule(name); rule != "" {
					fail(t.KeyLines[i], "", "templates", name, "name "+rule)
				}
				e, es := config.ReadEntry(path, t.Vals[i], label, true)
				errs = append(errs, es...)
				f.Templates[name] = e
			}
		}
	}
	list := root.Get("instances")
	switch {
	case list == nil:
		fail(root.Line, "", "instances", "", "must be set: the list of instances")
	case list.Kind != config.ListNode:
		fail(list.Line, "", "instances", list.Display(), "must be a list of instances")
	default:
		for i, item := range list.Vals {
			label := fmt.Sprintf("instance %d", i+1)
			if item.Kind == config.MapNode {
				if idNode := item.Get("id"); idNode != nil {
					if s, ok := idNode.Value.(string); ok && s != "" {
						label = s
					}
				}
			}
			e, es := config.ReadEntry(path, item, label, false)
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
	ids := map[string]*config.Entry{}
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

// ruleOf is the Rule of err's *FieldError, or its message.
func ruleOf(err error) string {
	if err == nil {
		return ""
	}
	var fe *config.FieldError
	if errors.As(err, &fe) {
		return fe.Rule
	}
	return err.Error()
}

// Desired is an instance as a fleet file wants it: the registry fields a
// fleet file decides, a zero port meaning "keep the registered one, or
// allocate one", and where the entry is.
type Desired struct {
	config.Instance
	Entry *config.Entry
}

// Resolve turns the fleet's entries into the instances they describe: each
// entry over its template (the file's templates, then kato.toml's) over the
// [defaults] of kato.toml. Processors are looked up in kato.toml. Every
// problem is returned at once.
func Resolve(c *config.Config, f *Fleet) ([]Desired, error) {
	var errs config.FileErrors
	out := make([]Desired, 0, len(f.Entries))
	entryIDs := map[string]bool{}
	for _, e := range f.Entries {
		entryIDs[e.ID] = true
	}
	for _, e := range f.Entries {
		fail := func(field, value, rule string) {
			errs = append(errs, &config.FileError{File: f.Path, Line: lineOr(e.Lines[field], e.Line), ID: e.ID, Field: field, Value: value, Rule: rule})
		}
		var tpl *config.Entry
		if e.Template != "" {
			if t, ok := f.Templates[e.Template]; ok {
				tpl = t
			} else if t, ok := c.Templates[e.Template]; ok {
				tpl = t
			} else {
				fail("template", e.Template, "must name a template of the file or of kato.toml: "+config.NamesOrNone(templateNames(c, f)))
				continue
			}
		}
		l := c.Layer(e, tpl)
		d := Desired{Entry: e, Instance: config.Instance{ID: e.ID, Unit: units.InstanceUnit(e.ID), APIPort: e.APIPort, ZMQPort: e.ZMQPort}}
		d.Name = l.Name
		if d.Name == "" {
			d.Name = config.DefaultInstanceName
		}
		proc, err := c.ProcessorNamed(l.Processor)
		if err != nil {
			fail("processor", l.Processor, ruleOf(err))
			continue
		}
		d.Processor = l.Processor
		d.Network = l.Network
		if d.Network == "" {
			d.Network = proc.Network
		}
		d.Group = l.Group
		if e.Replicas > 0 && d.Group == "" {
			d.Group = e.ID
		}
		d.Weight = l.Weight
		if d.Weight != 0 && d.Group == "" {
			fail("weight", strconv.Itoa(d.Weight), "goes with a group: it is the instance's share of its group's front")
			continue
		}
		d.Parameters = l.Parameters
		if err := d.Parameters.Validate(); err != nil {
			var fe *config.FieldError
			errors.As(err, &fe)
			fail(fe.Field, fe.Value, fe.Rule)
			continue
		}
		if e.Replicas == 0 {
			out = append(out, d)
			continue
		}
		// replicas: N is N instances ID-1…ID-N, each given the next free
		// ports.
		if e.APIPort != 0 || e.ZMQPort != 0 {
			fail("replicas", strconv.Itoa(e.Replicas), "goes without port and zmq_port: each replica gets the next free ones")
			continue
		}
		for k := 1; k <= e.Replicas; k++ {
			r := d
			r.ID = e.ID + "-" + strconv.Itoa(k)
			if rule := units.InstanceIDRule(r.ID); rule != "" {
				fail("replicas", strconv.Itoa(e.Replicas), "make ids "+e.ID+"-1… that break the rule of ids: "+rule)
				break
			}
			if entryIDs[r.ID] {
				fail("replicas", strconv.Itoa(e.Replicas), "make the id "+r.ID+", which another entry has")
				break
			}
			r.Unit = units.InstanceUnit(r.ID)
			r.Parameters = d.Parameters.Clone()
			out = append(out, r)
		}
	}
	if len(errs) > 0 {
		return nil, errs.Sorted()
	}
	return out, nil
}

func lineOr(line, fallback int) int {
	if line > 0 {
		return line
	}
	return fallback
}

func templateNames(c *config.Config, f *Fleet) []string {
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
	Have *config.Instance
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
func PlanFleet(path string, want []Desired, reg *config.Registry, prune bool) (Plan, error) {
	var plan Plan
	var errs config.FileErrors
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
				errs = append(errs, &config.FileError{File: path, Line: lineOr(d.Entry.Lines[p.key], d.Entry.Line), ID: d.ID, Field: p.key, Value: strconv.Itoa(p.port),
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
		return Plan{}, errs.Sorted()
	}
	return plan, nil
}

// fleetFields are the fields of an instance a fleet file decides, with how
// each reads; the processor parameters follow in table order.
var fleetFields = []struct {
	key string
	get func(*config.Instance) string
}{
	{"name", func(in *config.Instance) string { return in.Name }},
	{"port", func(in *config.Instance) string { return portText(in.APIPort) }},
	{"zmq_port", func(in *config.Instance) string { return portText(in.ZMQPort) }},
	{"processor", func(in *config.Instance) string { return processorText(in.Processor) }},
	{"network", func(in *config.Instance) string { return in.Network }},
	{"group", func(in *config.Instance) string { return in.Group }},
	{"weight", func(in *config.Instance) string { return weightText(in.Weight) }},
}

// weightText shows a member's weight; none given is "".
func weightText(w int) string {
	if w == 0 {
		return ""
	}
	return strconv.Itoa(w)
}

func portText(p int) string {
	if p == 0 {
		return "(next free)"
	}
	return strconv.Itoa(p)
}

func processorText(p string) string {
	if p == "" {
		return config.DefaultProcessor
	}
	return p
}

// fieldChanges lists the fields that differ between have (nil: none) and
// want, in the order diff prints them.
func fieldChanges(have, want *config.Instance) []FieldChange {
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
	for _, row := range config.Params {
		n := config.FormatValue(want.Parameters[row.Name])
		o := ""
		if have != nil {
			o = config.FormatValue(have.Parameters[row.Name])
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
func Export(reg *config.Registry, defaults config.Parameters, format string) ([]byte, error) {
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
		if in.Weight != 0 {
			e["weight"] = in.Weight
			order = append(order, "weight")
		}
		for _, row := range config.Params {
			if v := in.Parameters[row.Name]; config.FormatValue(v) != config.FormatValue(defaults[row.Name]) {
				e[row.Name] = v
				order = append(order, row.Name)
			}
		}
		list = append(list, e)
		keys = append(keys, order)
	}
	groups := exportGroups(reg.Groups)
	switch format {
	case "json":
		if groups != nil {
			return jsonWithGroups(list, keys, groups)
		}
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
		if groups != nil {
			gn := &yaml.Node{Kind: yaml.MappingNode}
			for _, name := range slices.Sorted(maps.Keys(groups)) {
				m := &yaml.Node{Kind: yaml.MappingNode}
				for _, kv := range groups[name] {
					var v yaml.Node
					if err := v.Encode(kv.Value); err != nil {
						return nil, err
					}
					m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: kv.Key}, &v)
				}
				gn.Content = append(gn.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, m)
			}
			root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "groups"}, gn)
		}
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
		for _, name := range slices.Sorted(maps.Keys(groups)) {
			buf.WriteString("\n[groups." + name + "]\n")
			for _, kv := range groups[name] {
				v, err := tomlValue(kv.Value)
				if err != nil {
					return nil, err
				}
				buf.WriteString(kv.Key + " = " + v + "\n")
			}
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
	return nil, CheckExportFormat("format", format)
}

// CheckExportFormat checks a format Export is asked for: yaml, json or
// toml; field names it in the error.
func CheckExportFormat(field, format string) error {
	switch format {
	case "yaml", "json", "toml":
		return nil
	}
	return &config.FieldError{Field: field, Value: format, Rule: "must be yaml, json or toml"}
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

// groupKV is one setting of an exported group.
type groupKV struct {
	Key   string
	Value any
}

// exportGroups returns the settings each group sets, in groupKeys order;
// nil when there is none.
func exportGroups(groups map[string]config.Group) map[string][]groupKV {
	if len(groups) == 0 {
		return nil
	}
	out := map[string][]groupKV{}
	for name, g := range groups {
		kvs := []groupKV{}
		if g.Front != 0 {
			kvs = append(kvs, groupKV{"front", g.Front})
		}
		for _, kv := range []groupKV{{"address", g.Address}, {"balance", g.Balance}, {"ready", g.Ready}, {"template", g.Template}, {"processor", g.Processor}} {
			if kv.Value != "" {
				kvs = append(kvs, kv)
			}
		}
		if g.Surge != 0 {
			kvs = append(kvs, groupKV{"surge", g.Surge})
		}
		out[name] = kvs
	}
	return out
}

// jsonWithGroups is jsonOf with the groups after the instances.
func jsonWithGroups(list []map[string]any, keys [][]string, groups map[string][]groupKV) ([]byte, error) {
	data, err := jsonOf(list, keys)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Write(bytes.TrimSuffix(data, []byte("\n}\n")))
	buf.WriteString(",\n  \"groups\": {")
	for i, name := range slices.Sorted(maps.Keys(groups)) {
		if i > 0 {
			buf.WriteString(",")
		}
		buf.WriteString("\n    " + strconv.Quote(name) + ": {")
		for j, kv := range groups[name] {
			if j > 0 {
				buf.WriteString(", ")
			}
			v, err := tomlValue(kv.Value)
			if err != nil {
				return nil, err
			}
			buf.WriteString(strconv.Quote(kv.Key) + ": " + v)
		}
		buf.WriteString("}")
	}
	buf.WriteString("\n  }\n}\n")
	return buf.Bytes(), nil
}

// GroupChanges lists what storing the file's groups want over the stored
// groups have changes, a line per group as diff prints it: "+ group NAME:
// SETTINGS", "- group NAME" or "~ group NAME: OLD -> NEW".
func GroupChanges(have, want map[string]config.Group) []string {
	text := func(g config.Group) string {
		var parts []string
		for _, kv := range exportGroups(map[string]config.Group{"g": g})["g"] {
			parts = append(parts, fmt.Sprintf("%s %v", kv.Key, kv.Value))
		}
		if len(parts) == 0 {
			return "(no settings)"
		}
		return strings.Join(parts, ", ")
	}
	names := slices.Sorted(maps.Keys(have))
	for n := range want {
		if _, ok := have[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []string
	for _, n := range names {
		h, hok := have[n]
		w, wok := want[n]
		switch {
		case !hok:
			out = append(out, "+ group "+n+": "+text(w))
		case !wok:
			out = append(out, "- group "+n)
		case h != w:
			out = append(out, "~ group "+n+": "+text(h)+" -> "+text(w))
		}
	}
	return out
}

// PlanRegistry plans want against the registry of r as it is now
// (PlanFleet), and returns the registry it read.
func PlanRegistry(r *config.RegistryFile, path string, want []Desired, prune bool) (Plan, *config.Registry, error) {
	reg, err := r.Load()
	if err != nil {
		return Plan{}, nil, err
	}
	plan, err := PlanFleet(path, want, reg, prune)
	return plan, reg, err
}
