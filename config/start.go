package config

import (
	"slices"
	"strconv"
	"strings"
)

// Layer returns the start e asks for, the one layering of every start: the
// CLI's `start` (its flags, and --template), the dashboard's form and a
// fleet file's entries. Each of name, processor, network and group is e's
// when e sets it, else tpl's (nil: no template), else ""; the processor
// parameters are kato.toml's [defaults], then tpl's, then e's. The
// processor DefaultProcessor is "", as the registry names [processor].
// Nothing is validated: the caller knows which names the user typed.
func (c *Config) Layer(e, tpl *Entry) *Entry {
	out := &Entry{ID: e.ID, APIPort: e.APIPort, ZMQPort: e.ZMQPort, Template: e.Template, Host: e.Host,
		Set: map[string]bool{}, Lines: e.Lines, Line: e.Line}
	pick := func(key string, get func(*Entry) string) string {
		switch {
		case e.Set[key]:
			out.Set[key] = true
			return get(e)
		case tpl != nil && tpl.Set[key]:
			out.Set[key] = true
			return get(tpl)
		}
		return ""
	}
	out.Name = pick("name", func(x *Entry) string { return x.Name })
	out.Processor = pick("processor", func(x *Entry) string { return x.Processor })
	if out.Processor == DefaultProcessor {
		out.Processor = ""
	}
	out.Network = pick("network", func(x *Entry) string { return x.Network })
	out.Group = pick("group", func(x *Entry) string { return x.Group })
	switch {
	case e.Set["weight"]:
		out.Weight, out.Set["weight"] = e.Weight, true
	case tpl != nil && tpl.Set["weight"]:
		out.Weight, out.Set["weight"] = tpl.Weight, true
	}
	params := c.Defaults.Clone()
	if params == nil {
		params = Parameters{}
	}
	for _, layer := range []*Entry{tpl, e} {
		if layer == nil {
			continue
		}
		for k, v := range layer.Parameters {
			params[k] = v
			out.Set[k] = true
		}
	}
	out.Parameters = params
	return out
}

// ParseParam reads a processor parameter given as text (a field of the
// dashboard's form) by the table Params: field is the name the value came
// under, for the error. A switch is "on" or "true"; a value that is not of
// the parameter's kind, or breaks its rule, is a *FieldError naming field.
func ParseParam(row Param, field, s string) (any, error) {
	var v any
	switch row.Kind {
	case String:
		v = s
	case Int:
		n, err := strconv.ParseInt(s, 0, 0)
		if err != nil {
			return nil, &FieldError{Field: field, Value: s, Rule: "must be a whole number"}
		}
		v = int(n)
	case Float:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, &FieldError{Field: field, Value: s, Rule: "must be a number"}
		}
		v = f
	case Bool:
		if s != "on" && s != "true" {
			return nil, &FieldError{Field: field, Value: s, Rule: "is a switch: on, or left out"}
		}
		v = !row.Negated
	}
	if row.rule != nil {
		if rule := row.rule(v); rule != "" {
			return nil, &FieldError{Field: field, Value: FormatValue(v), Rule: rule}
		}
	}
	return v, nil
}

// ParamFlagNamed returns the row of Params whose flag is flag.
func ParamFlagNamed(flag string) (Param, bool) {
	for _, row := range Params {
		if row.Flag == flag {
			return row, true
		}
	}
	return Param{}, false
}

// TemplateNamed returns the [templates.NAME] of kato.toml called name, or
// a *FieldError naming field and the templates there are.
func (c *Config) TemplateNamed(field, name string) (*Entry, error) {
	if t, ok := c.Templates[name]; ok {
		return t, nil
	}
	names := make([]string, 0, len(c.Templates))
	for n := range c.Templates {
		names = append(names, n)
	}
	slices.Sort(names)
	return nil, &FieldError{Field: field, Value: name, Rule: "must name a [templates.NAME] of kato.toml: " + NamesOrNone(names)}
}

// NamesOrNone lists names for an error message, or says there are none.
func NamesOrNone(names []string) string {
	if len(names) == 0 {
		return "there are none"
	}
	return strings.Join(names, ", ")
}
