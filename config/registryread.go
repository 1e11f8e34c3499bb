package config

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2/unstable"
)

// decodeRegistryFast reads a registry written in the shape encodeRegistry
// gives it, and reports false for anything else: a file outside that shape,
// or one whose entries break a rule. decodeRegistry then reads the file
// again with the full decoder, which accepts or refuses it and words the
// error, so the fast reader changes nothing but the time a registry of many
// entries takes (the full decoder parses a 1,000-entry file ~8× slower).
//
// It takes the expressions of go-toml's parser, which checks the syntax,
// and decodes only values of the kinds the writer writes: basic strings
// without other escapes than \" \\ \n \t \r \b \f, decimal integers, plain
// floats, booleans, offset date-times in RFC 3339 form and arrays of
// strings; only bare keys; every table and key once.
func decodeRegistryFast(data []byte) (*Registry, bool) {
	// The full decoder refuses control characters that go-toml's parser
	// may accept in comments; such files are left to it.
	if !utf8.Valid(data) || bytes.ContainsFunc(data, func(r rune) bool {
		return (r < 0x20 && r != '\t' && r != '\n') || r == 0x7f
	}) {
		return nil, false
	}
	// A written entry is two tables of some 600 bytes in all.
	n := len(data)/600 + 1
	fr := fastRegistry{r: &Registry{Instances: make(map[string]*Instance, n)}, tables: make(map[string]bool, 2*n),
		params: make(map[string]map[string]any, n)}
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		if !fr.expression(&p, p.Expression()) {
			return nil, false
		}
	}
	if p.Error() != nil {
		return nil, false
	}
	r := fr.r
	defaults := DefaultParameters() // Merge copies it
	for id, in := range r.Instances {
		params, err := defaults.Merge(fr.params[id])
		if err != nil {
			return nil, false
		}
		in.Parameters = params
	}
	if _, err := r.validate(); err != nil {
		return nil, false
	}
	return r, true
}

// fastRegistry is the state of decodeRegistryFast: the registry so far and
// the table the key/values that follow belong to.
type fastRegistry struct {
	r *Registry
	// params are the raw parameters of each instance, merged over the
	// defaults once every table is read, as the full decoder does.
	params map[string]map[string]any
	// tables are the tables defined by a header, and keys the keys set in
	// each: TOML allows each once.
	tables map[string]bool
	keys   []string
	// The current table: an instance, its parameters or a group.
	in     *Instance
	inID   string
	param  map[string]any
	group  string
	groupV *Group
}

// expression decodes one top-level expression; false means the file is
// not in the writer's shape.
func (fr *fastRegistry) expression(p *unstable.Parser, e *unstable.Node) bool {
	switch e.Kind {
	case unstable.Table:
		return fr.table(p, e)
	case unstable.KeyValue:
		return fr.keyValue(p, e)
	}
	return false
}

// bareKey returns the parts of a key, false when one is quoted.
func bareKey(p *unstable.Parser, it unstable.Iterator) ([]string, bool) {
	var parts []string
	for it.Next() {
		n := it.Node()
		raw := p.Raw(n.Raw)
		if len(raw) == 0 || raw[0] == '"' || raw[0] == '\'' {
			return nil, false
		}
		parts = append(parts, string(n.Data))
	}
	return parts, len(parts) > 0
}

func (fr *fastRegistry) table(p *unstable.Parser, e *unstable.Node) bool {
	key, ok := bareKey(p, e.Key())
	if !ok {
		return false
	}
	name := strings.Join(key, ".")
	if fr.tables[name] {
		return false
	}
	fr.tables[name] = true
	fr.keys = fr.keys[:0]
	fr.in, fr.param, fr.groupV = nil, nil, nil
	switch {
	case len(key) == 1 && key[0] == "instances":
		return true
	case len(key) == 1 && key[0] == "groups":
		if fr.r.Groups == nil {
			fr.r.Groups = map[string]Group{}
		}
		return true
	case len(key) == 2 && key[0] == "instances":
		fr.in, fr.inID = fr.instance(key[1]), key[1]
		return true
	case len(key) == 3 && key[0] == "instances" && key[2] == "parameters":
		fr.instance(key[1])
		fr.param = make(map[string]any, len(Params))
		fr.params[key[1]] = fr.param
		return true
	case len(key) == 2 && key[0] == "groups":
		if fr.r.Groups == nil {
			fr.r.Groups = map[string]Group{}
		}
		fr.group, fr.groupV = key[1], &Group{}
		fr.r.Groups[key[1]] = Group{}
		return true
	}
	return false
}

// instance returns the entry id, made as the full decoder makes it when
// first named.
func (fr *fastRegistry) instance(id string) *Instance {
	in, ok := fr.r.Instances[id]
	if !ok {
		in = &Instance{ID: id, Network: NetworkHost}
		fr.r.Instances[id] = in
	}
	return in
}

func (fr *fastRegistry) keyValue(p *unstable.Parser, e *unstable.Node) bool {
	key, ok := bareKey(p, e.Key())
	if !ok || len(key) != 1 || slices.Contains(fr.keys, key[0]) {
		return false
	}
	fr.keys = append(fr.keys, key[0])
	v := e.Value()
	switch {
	case fr.param != nil:
		x, ok := scalar(p, v)
		if !ok {
			return false
		}
		if _, isTime := x.(time.Time); isTime {
			return false
		}
		fr.param[key[0]] = x
		return true
	case fr.in != nil:
		return fr.instanceField(p, key[0], v)
	case fr.groupV != nil:
		if !groupField(p, fr.groupV, key[0], v) {
			return false
		}
		fr.r.Groups[fr.group] = *fr.groupV
		return true
	}
	return false
}

func (fr *fastRegistry) instanceField(p *unstable.Parser, key string, v *unstable.Node) bool {
	in := fr.in
	var ok bool
	switch key {
	case "name":
		in.Name, ok = str(p, v)
	case "unit":
		in.Unit, ok = str(p, v)
	case "api_port":
		in.APIPort, ok = integer(p, v)
	case "zmq_port":
		in.ZMQPort, ok = integer(p, v)
	case "command":
		in.Command, ok = strs(p, v)
	case "processor":
		in.Processor, ok = str(p, v)
	case "network":
		in.Network, ok = str(p, v)
	case "group":
		in.Group, ok = str(p, v)
	case "weight":
		in.Weight, ok = integer(p, v)
	case "created":
		in.Created, ok = datetime(p, v)
	case "updated":
		in.Updated, ok = datetime(p, v)
	}
	return ok
}

func groupField(p *unstable.Parser, g *Group, key string, v *unstable.Node) bool {
	var ok bool
	switch key {
	case "front":
		g.Front, ok = integer(p, v)
	case "address":
		g.Address, ok = str(p, v)
	case "balance":
		g.Balance, ok = str(p, v)
	case "ready":
		g.Ready, ok = str(p, v)
	case "template":
		g.Template, ok = str(p, v)
	case "processor":
		g.Processor, ok = str(p, v)
	case "surge":
		g.Surge, ok = integer(p, v)
	}
	return ok
}

// scalar returns a parameter's value as the full decoder gives it: int64,
// float64, bool, string or time.Time.
func scalar(p *unstable.Parser, v *unstable.Node) (any, bool) {
	switch v.Kind {
	case unstable.String:
		return str(p, v)
	case unstable.Bool:
		return string(v.Data) == "true", true
	case unstable.Integer:
		return int64Of(p.Raw(v.Raw))
	case unstable.Float:
		return floatOf(p.Raw(v.Raw))
	case unstable.DateTime:
		return datetime(p, v)
	}
	return nil, false
}

// str reads a basic string whose only escapes are \" \\ \n \t \r \b \f.
func str(p *unstable.Parser, v *unstable.Node) (string, bool) {
	if v.Kind != unstable.String {
		return "", false
	}
	raw := p.Raw(v.Raw)
	if len(raw) < 2 || raw[0] != '"' || bytes.HasPrefix(raw, []byte(`"""`)) {
		return "", false
	}
	for i := 1; i < len(raw)-1; i++ {
		c := raw[i]
		if c < 0x20 && c != '\t' {
			return "", false
		}
		if c == '\\' {
			i++
			if i >= len(raw)-1 || !bytes.ContainsRune([]byte(`"\ntrbf`), rune(raw[i])) {
				return "", false
			}
		}
	}
	return string(v.Data), true
}

func strs(p *unstable.Parser, v *unstable.Node) ([]string, bool) {
	if v.Kind != unstable.Array {
		return nil, false
	}
	out := []string{}
	it := v.Children()
	for it.Next() {
		s, ok := str(p, it.Node())
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func integer(p *unstable.Parser, v *unstable.Node) (int, bool) {
	if v.Kind != unstable.Integer {
		return 0, false
	}
	n, ok := int64Of(p.Raw(v.Raw))
	if !ok || int64(int(n)) != n {
		return 0, false
	}
	return int(n), true
}

// int64Of reads a decimal integer without sign, underscores or leading
// zeros, or with a leading minus.
func int64Of(raw []byte) (int64, bool) {
	digits := bytes.TrimPrefix(raw, []byte{'-'})
	if len(digits) == 0 || (digits[0] == '0' && len(digits) > 1) {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// floatOf reads a float of the form -?INT(.DIGITS)?([eE][+-]?DIGITS)?,
// with a fraction or an exponent; not inf, nan or underscores.
func floatOf(raw []byte) (float64, bool) {
	b := bytes.TrimPrefix(raw, []byte{'-'})
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == 0 || (b[0] == '0' && i > 1) {
		return 0, false
	}
	digitsFrom := func(j int) int {
		k := j
		for k < len(b) && b[k] >= '0' && b[k] <= '9' {
			k++
		}
		return k
	}
	shaped := false
	if i < len(b) && b[i] == '.' {
		j := digitsFrom(i + 1)
		if j == i+1 {
			return 0, false
		}
		i, shaped = j, true
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digitsFrom(i)
		if j == i {
			return 0, false
		}
		i, shaped = j, true
	}
	if i != len(b) || !shaped {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// datetime reads an offset date-time in RFC 3339 form with an upper-case T
// and Z, as the full decoder parses it: in time.Local's zone when the
// offset is Local's.
func datetime(p *unstable.Parser, v *unstable.Node) (time.Time, bool) {
	if v.Kind != unstable.DateTime {
		return time.Time{}, false
	}
	raw := p.Raw(v.Raw)
	// YYYY-MM-DDTHH:MM:SS, then an optional fraction and Z or ±HH:MM.
	const shape = "0000-00-00T00:00:00"
	if len(raw) < len(shape) {
		return time.Time{}, false
	}
	for i := 0; i < len(shape); i++ {
		if want := shape[i]; (want == '0' && (raw[i] < '0' || raw[i] > '9')) || (want != '0' && raw[i] != want) {
			return time.Time{}, false
		}
	}
	rest := raw[len(shape):]
	if len(rest) > 0 && rest[0] == '.' {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 1 {
			return time.Time{}, false
		}
		rest = rest[j:]
	}
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' &&
		isDigits(rest[1:3]) && isDigits(rest[4:6]):
	default:
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(time.RFC3339Nano, string(raw), time.Local)
	return t, err == nil
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
