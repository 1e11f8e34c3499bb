package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/internal/suggest"
	"github.com/kato-manager/kato-manager/units"
)

// Kind is the type of a processor parameter's value.
type Kind int

// The kinds of processor parameters and the Go type their values have in
// Parameters.
const (
	String Kind = iota // string
	Int                // int
	Float              // float64
	Bool               // bool
)

// Param is one setting of the KATO processor, defined once: the table Params
// drives the flags of `start`, validation, the [defaults] section of
// kato.toml, registry entries, the environment file, MANIFEST and what list
// and status show. Adding a parameter is adding a row to Params.
type Param struct {
	// Name is the key in [defaults], in a registry entry's parameters and in
	// `list --json`.
	Name string
	// Flag is the long flag of `start`, the old script's spelling; Short is
	// its one-letter form or "".
	Flag, Short string
	// Negated marks a Bool parameter whose flag is a switch that sets it to
	// false, such as --no-sort; other Bool flags set their parameter to true.
	Negated bool
	// Env is the environment variable a generation-B processor reads it from.
	Env string
	// Manifest is the key of MANIFEST a generation-A processor reads it from;
	// "" means both generations read it from Env.
	Manifest string
	Kind     Kind
	// Default is the built-in value, of the Go type Kind names.
	Default any
	// Usage is the flag's help text.
	Usage string
	// rule returns the rule v breaks, or "" when v is valid.
	rule func(v any) string
}

// Params is the table of processor parameters, in MANIFEST order. The
// instance's id and name, the other two MANIFEST keys, come from the instance.
var Params = []Param{
	{Name: "indexer_type", Flag: "indexer-type", Env: "INDEXER_TYPE", Manifest: "indexer_type", Kind: String, Default: "VI",
		Usage: "vector indexer type (VI only)", rule: oneOf("VI")},
	{Name: "max_pattern_length", Flag: "max-seq-length", Env: "MAX_PATTERN_LENGTH", Manifest: "max_pattern_length", Kind: Int, Default: 0,
		Usage: "longest pattern learned before auto-learning (0 = unlimited)", rule: intRange(0, 100000)},
	{Name: "persistence", Flag: "persistence", Env: "PERSISTENCE", Manifest: "persistence", Kind: Int, Default: 5,
		Usage: "persistence", rule: intRange(1, 100000)},
	{Name: "smoothness", Flag: "smoothness", Env: "SMOOTHNESS", Manifest: "smoothness", Kind: Int, Default: 3,
		Usage: "smoothness", rule: intRange(0, 100000)},
	{Name: "auto_act_method", Flag: "auto-act-method", Env: "AUTO_ACT_METHOD", Manifest: "auto_act_method", Kind: String, Default: "none",
		Usage: "auto-act method", rule: word},
	{Name: "auto_act_threshold", Flag: "auto-act-threshold", Env: "AUTO_ACT_THRESHOLD", Manifest: "auto_act_threshold", Kind: Float, Default: 0.8,
		Usage: "auto-act threshold (0-1)", rule: floatRange(0, 1)},
	{Name: "always_update_frequencies", Flag: "update-frequencies", Env: "ALWAYS_UPDATE_FREQUENCIES", Manifest: "always_update_frequencies", Kind: Bool, Default: false,
		Usage: "always update pattern frequencies"},
	{Name: "max_predictions", Flag: "max-predictions", Env: "MAX_PREDICTIONS", Manifest: "max_predictions", Kind: Int, Default: 100,
		Usage: "maximum predictions", rule: intRange(1, 10000)},
	{Name: "recall_threshold", Flag: "recall-threshold", Env: "RECALL_THRESHOLD", Manifest: "recall_threshold", Kind: Float, Default: 0.1,
		Usage: "recall threshold (0-1)", rule: floatRange(0, 1)},
	{Name: "quiescence", Flag: "quiescence", Env: "QUIESCENCE", Manifest: "quiescence", Kind: Int, Default: 3,
		Usage: "quiescence period", rule: intRange(0, 100000)},
	{Name: "search_depth", Flag: "search-depth", Env: "SEARCH_DEPTH", Manifest: "search_depth", Kind: Int, Default: 10,
		Usage: "search depth", rule: intRange(1, 100000)},
	{Name: "sort", Flag: "no-sort", Negated: true, Env: "SORT", Manifest: "sort", Kind: Bool, Default: true,
		Usage: "do not sort symbols within events"},
	{Name: "process_predictions", Flag: "no-predictions", Negated: true, Env: "PROCESS_PREDICTIONS", Manifest: "process_predictions", Kind: Bool, Default: true,
		Usage: "do not compute predictions"},
	{Name: "log_level", Flag: "log-level", Short: "l", Env: "LOG_LEVEL", Kind: String, Default: "INFO",
		Usage: "processor log level: DEBUG, INFO, WARNING, ERROR or CRITICAL", rule: oneOf(logLevels...)},
}

// renamedParams maps the old names of parameters, still accepted in
// kato.toml and the registry, to their names in Params. An entry is written
// back under the new name.
var renamedParams = map[string]string{"max_seq_length": "max_pattern_length"}

// ParamNamed returns the row of Params called name.
func ParamNamed(name string) (Param, bool) {
	for _, p := range Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// Parameters are the settings of one KATO processor instance, keyed by
// Param.Name, each value of the Go type its Kind names. The [defaults]
// section of kato.toml holds the values new instances start from; each
// registry entry keeps the values its instance was started with.
type Parameters map[string]any

// DefaultParameters returns the processor parameters used when neither
// kato.toml nor the command line sets them.
func DefaultParameters() Parameters {
	p := make(Parameters, len(Params))
	for _, row := range Params {
		p[row.Name] = row.Default
	}
	return p
}

// Clone returns a copy of p that can be changed without changing p.
func (p Parameters) Clone() Parameters {
	c := make(Parameters, len(p))
	for k, v := range p {
		c[k] = v
	}
	return c
}

// Int, Float, Bool and String return a parameter's value, or the zero value
// when p does not hold it with that type.
func (p Parameters) Int(name string) int       { v, _ := p[name].(int); return v }
func (p Parameters) Float(name string) float64 { v, _ := p[name].(float64); return v }
func (p Parameters) Bool(name string) bool     { v, _ := p[name].(bool); return v }
func (p Parameters) String(name string) string { v, _ := p[name].(string); return v }

// Validate reports the first parameter, in table order, that is missing,
// has the wrong type or breaks its rule, as a *FieldError whose Field is its
// name, such as "recall_threshold".
func (p Parameters) Validate() error {
	for _, row := range Params {
		v, ok := p[row.Name]
		if !ok {
			return &FieldError{Field: row.Name, Value: "", Rule: "must be set"}
		}
		if !row.Kind.holds(v) {
			return &FieldError{Field: row.Name, Value: fmt.Sprint(v), Rule: row.Kind.rule()}
		}
		if row.rule != nil {
			if rule := row.rule(v); rule != "" {
				return &FieldError{Field: row.Name, Value: FormatValue(v), Rule: rule}
			}
		}
	}
	for name, v := range p {
		if _, ok := ParamNamed(name); !ok {
			return &FieldError{Field: name, Value: FormatValue(v), Rule: unknownParamRule(name)}
		}
	}
	return nil
}

// unknownParamRule is the rule a parameter name that is none breaks, with
// the nearest names there are.
func unknownParamRule(name string) string {
	rule := "is not a processor parameter (see the settings table in docs/processors.md, or kato-manager start --help)"
	names := make([]string, len(Params))
	for i, row := range Params {
		names[i] = row.Name
	}
	if near := suggest.DidYouMean(name, names); near != "" {
		rule += "; " + near
	}
	return rule
}

// Merge returns p with the values of raw, as decoded from TOML (integers as
// int64), put over it: old names are renamed, integers are accepted for
// numbers, and an unknown name or a value of the wrong type is a *FieldError
// named by the key as written. Rules are checked by Validate.
func (p Parameters) Merge(raw map[string]any) (Parameters, error) {
	out := p.Clone()
	for _, key := range sortedNames(raw) {
		v := raw[key]
		name := key
		if newName, ok := renamedParams[key]; ok {
			if _, both := raw[newName]; both {
				return nil, &FieldError{Field: key, Value: FormatValue(v), Rule: "is the old name of " + newName + "; give only " + newName}
			}
			name = newName
		}
		row, ok := ParamNamed(name)
		if !ok {
			return nil, &FieldError{Field: key, Value: FormatValue(v), Rule: unknownParamRule(key)}
		}
		switch x := v.(type) {
		case int64:
			switch row.Kind {
			case Int:
				if int64(int(x)) != x {
					return nil, &FieldError{Field: key, Value: FormatValue(v), Rule: "is out of range"}
				}
				v = int(x)
			case Float:
				v = float64(x)
			}
		case int:
			if row.Kind == Float {
				v = float64(x)
			}
		}
		if !row.Kind.holds(v) {
			return nil, &FieldError{Field: key, Value: FormatValue(v), Rule: row.Kind.rule()}
		}
		out[name] = v
	}
	return out, nil
}

func sortedNames(m map[string]any) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func (k Kind) holds(v any) bool {
	switch k {
	case String:
		_, ok := v.(string)
		return ok
	case Int:
		_, ok := v.(int)
		return ok
	case Float:
		_, ok := v.(float64)
		return ok
	case Bool:
		_, ok := v.(bool)
		return ok
	}
	return false
}

func (k Kind) rule() string {
	switch k {
	case String:
		return "must be a string"
	case Int:
		return "must be an integer"
	case Float:
		return "must be a number"
	}
	return "must be true or false"
}

// FormatValue renders a parameter value as the command line and the
// environment file write it: numbers in their shortest exact form, true and
// false for booleans.
func FormatValue(v any) string { return units.FormatSetting(v) }

func oneOf(values ...string) func(any) string {
	rule := "must be " + values[0]
	if len(values) > 1 {
		rule = "must be one of " + strings.Join(values, ", ")
	}
	return func(v any) string {
		if slices.Contains(values, v.(string)) {
			return ""
		}
		return rule
	}
}

func intRange(lo, hi int) func(any) string {
	return func(v any) string {
		if n := v.(int); n < lo || n > hi {
			return fmt.Sprintf("must be between %d and %d", lo, hi)
		}
		return ""
	}
}

func floatRange(lo, hi float64) func(any) string {
	return func(v any) string {
		if f := v.(float64); !(f >= lo && f <= hi) {
			return fmt.Sprintf("must be between %s and %s", formatFloat(lo), formatFloat(hi))
		}
		return ""
	}
}

// word is the rule of a method name: 1 to 64 lower-case letters, digits and
// '_', starting with a letter.
func word(v any) string {
	const rule = "must be 1 to 64 lower-case letters, digits and '_', starting with a letter"
	s := v.(string)
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return rule
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return rule
		}
	}
	return ""
}

// ParamFlags are the flags of Params registered on one flag set.
type ParamFlags struct {
	fs     *pflag.FlagSet
	values map[string]any // Param.Name -> *string, *int, *float64 or *bool
}

// AddParamFlags registers one flag per row of Params on fs, with the built-in
// defaults shown in the help. Apply reads them after fs is parsed.
func AddParamFlags(fs *pflag.FlagSet) *ParamFlags {
	pf := &ParamFlags{fs: fs, values: make(map[string]any, len(Params))}
	for _, row := range Params {
		var ptr any
		switch row.Kind {
		case String:
			ptr = fs.StringP(row.Flag, row.Short, row.Default.(string), row.Usage)
		case Int:
			ptr = fs.IntP(row.Flag, row.Short, row.Default.(int), row.Usage)
		case Float:
			ptr = fs.Float64P(row.Flag, row.Short, row.Default.(float64), row.Usage)
		case Bool:
			ptr = fs.BoolP(row.Flag, row.Short, false, row.Usage)
		}
		pf.values[row.Name] = ptr
	}
	return pf
}

// Apply returns base with the value of every flag the user gave put over it,
// and those flags as typed ("--max-seq-length"). A value that breaks its rule
// is a *FieldError naming the flag, e.g. `invalid --recall-threshold 1.5: must
// be between 0 and 1`.
func (pf *ParamFlags) Apply(base Parameters) (Parameters, []string, error) {
	out := base.Clone()
	var given []string
	for _, row := range Params {
		if !pf.fs.Changed(row.Flag) {
			continue
		}
		var v any
		switch ptr := pf.values[row.Name].(type) {
		case *string:
			v = *ptr
		case *int:
			v = *ptr
		case *float64:
			v = *ptr
		case *bool:
			v = *ptr != row.Negated
		}
		if row.rule != nil {
			if rule := row.rule(v); rule != "" {
				return nil, nil, &FieldError{Field: "--" + row.Flag, Value: FormatValue(v), Rule: rule}
			}
		}
		out[row.Name] = v
		given = append(given, "--"+row.Flag)
	}
	return out, given, nil
}

// Settings returns the instance's parameters in table order as the
// environment file renders them.
func (p Parameters) Settings() []units.Setting {
	out := make([]units.Setting, 0, len(Params))
	for _, row := range Params {
		out = append(out, units.Setting{Env: row.Env, Manifest: row.Manifest, Value: p[row.Name]})
	}
	return out
}

// FieldError is a setting whose value breaks a rule. Callers may rewrite Field
// to the name the user typed (a flag, an environment variable) before printing.
type FieldError struct {
	Field string // where the value came from, e.g. "ports.api_start"
	Value string // the offending value as text
	Rule  string // what the value must satisfy, e.g. "must be between 1 and 65535"
}

// Error renders "invalid <Field> <Value>: <Rule>", quoting the value when it
// is empty or holds characters that would make the message ambiguous.
func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %s: %s", e.Field, displayValue(e.Value), e.Rule)
}

// displayValue quotes v unless it is a non-empty run of characters that read
// unambiguously in a message: letters, digits and common punctuation of
// numbers, paths, URLs and lists.
func displayValue(v string) string {
	if v == "" {
		return strconv.Quote(v)
	}
	for _, r := range v {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-+:/@,=[]~%*", r) {
			continue
		}
		return strconv.Quote(v)
	}
	return v
}

// maxNameLength bounds instance display names.
const maxNameLength = 128

// ValidateID reports whether id can identify an instance, by the rule of
// units.InstanceIDRule: 1 to 64 letters, digits, '-' or '_'. The id becomes
// part of a systemd unit name, so it is checked as given and never
// rewritten.
func ValidateID(id string) error {
	if rule := units.InstanceIDRule(id); rule != "" {
		return &FieldError{Field: "id", Value: id, Rule: rule}
	}
	return nil
}

// ValidateName reports whether name can be an instance's display name: free
// text of 1 to 128 characters without control characters or line breaks.
func ValidateName(name string) error {
	if !utf8.ValidString(name) {
		return &FieldError{Field: "name", Value: name, Rule: "must be valid UTF-8"}
	}
	if n := utf8.RuneCountInString(name); n == 0 || n > maxNameLength {
		return &FieldError{Field: "name", Value: name, Rule: fmt.Sprintf("must be 1 to %d characters long", maxNameLength)}
	}
	if hasControl(name) {
		return &FieldError{Field: "name", Value: name, Rule: "must not contain control characters or line breaks"}
	}
	return nil
}

// GenerateID returns an instance id built from the moment (in UTC) and the
// process id of the caller, e.g. "kato-20250101-120000-4242", for instances
// started without an explicit id.
func GenerateID(now time.Time, pid int) string {
	return fmt.Sprintf("kato-%s-%d", now.UTC().Format("20060102-150405"), pid)
}

// hasControl reports whether s holds a control character or a Unicode line
// or paragraph separator, none of which survive a unit or environment file.
func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return true
		}
	}
	return false
}

// intBetween checks lo <= v <= hi.
func intBetween(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return &FieldError{Field: field, Value: strconv.Itoa(v), Rule: fmt.Sprintf("must be between %d and %d", lo, hi)}
	}
	return nil
}

// checkPort checks that v is a port number, units.ValidPort's rule, and
// names field when it is not.
func checkPort(field string, v int) error {
	if !units.ValidPort(v) {
		return &FieldError{Field: field, Value: strconv.Itoa(v), Rule: units.PortRule}
	}
	return nil
}

// positiveSeconds checks that v is a finite number greater than zero.
func positiveSeconds(field string, v float64) error {
	if !(v > 0) {
		return &FieldError{Field: field, Value: formatFloat(v), Rule: "must be greater than 0"}
	}
	if math.IsInf(v, 1) {
		return &FieldError{Field: field, Value: formatFloat(v), Rule: "must be a finite number of seconds"}
	}
	return nil
}

func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}
