package units

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Generations of the KATO processor, which read their settings differently
// (see the processor contract).
const (
	// GenerationA reads its settings only from MANIFEST, a JSON object.
	GenerationA = "a"
	// GenerationB reads one environment variable per setting and PORT.
	GenerationB = "b"
)

// Setting is one processor parameter as the environment file carries it:
// the variable a generation-B processor reads, the MANIFEST key a
// generation-A processor reads ("" when both read the variable), and the
// value, a string, int, float64 or bool.
type Setting struct {
	Env      string
	Manifest string
	Value    any
}

// ProcessorEnv is everything a KATO processor reads from its environment.
// RenderEnvironment turns it into the instance's environment file.
type ProcessorEnv struct {
	// Generation is GenerationA, GenerationB or GenerationC.
	Generation string
	// ID is the instance id (PROCESSOR_ID, MANIFEST id).
	ID string
	// Name is the human-readable processor name (PROCESSOR_NAME, MANIFEST name).
	Name string
	// Settings are the processor parameters, in the order they are written.
	Settings []Setting
	// MongoURL is the MongoDB the processor uses (MONGO_BASE_URL).
	MongoURL string
	// Hostname is the host name the processor announces (HOSTNAME).
	Hostname string
	// RestPort is the port the processor serves HTTP on (REST_PORT for
	// generation A, PORT for generation B).
	RestPort int
	// ZMQPort is generation A's ZMQ engine port (ZMQ_PORT).
	ZMQPort int
	// ServiceName is generation C's SERVICE_NAME, the knowledge base its
	// replicas share.
	ServiceName string
	// Workers is generation C's uvicorn worker count (KATO_WORKERS).
	Workers int
	// Stores are generation C's shared stores.
	Stores Stores
}

// Validate reports the first value of env that the environment file cannot
// carry faithfully: an unknown generation, an id ValidateInstanceID
// rejects, text that is not UTF-8 or holds control characters, a variable
// name that is not one, or a number that is not finite. Range checks of the
// settings belong to the configuration; Validate only guards what
// RenderEnvironment writes.
func (env ProcessorEnv) Validate() error {
	if env.Generation != GenerationA && env.Generation != GenerationB && env.Generation != GenerationC {
		return fmt.Errorf("invalid generation %q: must be %s, %s or %s", env.Generation, GenerationA, GenerationB, GenerationC)
	}
	if env.Generation == GenerationC {
		if rule := ServiceNameRule(env.ServiceName); rule != "" {
			return fmt.Errorf("invalid service_name %q: %s", env.ServiceName, rule)
		}
		if env.Workers < 1 {
			return fmt.Errorf("invalid workers %d: must be at least 1", env.Workers)
		}
		if _, err := env.Stores.variables(); err != nil {
			return err
		}
	}
	if err := ValidateInstanceID(env.ID); err != nil {
		return err
	}
	for _, f := range []struct{ field, value string }{
		{"name", env.Name},
		{"mongo_url", env.MongoURL},
		{"hostname", env.Hostname},
	} {
		if err := checkText(f.value); err != nil {
			return fmt.Errorf("invalid %s %q: %w", f.field, f.value, err)
		}
	}
	for _, s := range env.Settings {
		if !validEnvName(s.Env) {
			return fmt.Errorf("invalid setting variable %q: must be upper-case letters, digits and '_'", s.Env)
		}
		switch v := s.Value.(type) {
		case string:
			if err := checkText(v); err != nil {
				return fmt.Errorf("invalid %s %q: %w", s.Env, v, err)
			}
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("invalid %s %v: must be a finite number", s.Env, v)
			}
		case int, bool:
		default:
			return fmt.Errorf("invalid %s %v: must be a string, an integer, a number or a boolean", s.Env, v)
		}
	}
	return nil
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// RenderEnvironment renders the environment file of one instance, the file
// kato@.service names in EnvironmentFile= (see InstanceEnvironmentFile).
//
// Generation A gets what the old script passed its containers: PROCESSOR_ID,
// PROCESSOR_NAME, MANIFEST (id, name and every setting with a MANIFEST key),
// HOSTNAME, the settings without a MANIFEST key (LOG_LEVEL), MONGO_BASE_URL,
// REST_PORT, ZMQ_PORT, SOURCES, TARGETS and AS_INPUTS (all "[]") and
// KATO_ZMQ_IMPLEMENTATION=improved. Generation B gets PROCESSOR_ID,
// PROCESSOR_NAME, HOSTNAME, MONGO_BASE_URL, one variable per setting and
// PORT. Generation C gets what generation B gets but MONGO_BASE_URL, and
// SERVICE_NAME, KATO_WORKERS, KATO_ARCHITECTURE_MODE=hybrid and the
// variables of its stores (see Stores), credentials included: the file is
// root's and only systemd reads it, for this instance alone.
//
// Every value is double-quoted, which systemd reads verbatim apart from the
// escaped '"' and '\': '$' and '%' are not expanded there.
//
// env should have passed Validate. If it has not, text systemd would refuse
// to load (invalid UTF-8, NUL, U+FEFF, noncharacters) is replaced by U+FFFD so
// that the file still loads, and a number that is not finite is written to
// MANIFEST as null.
func RenderEnvironment(env ProcessorEnv) []byte {
	var b bytes.Buffer
	// A comment line ending in a backslash would continue onto the next
	// line and swallow an assignment; commentText never ends in one.
	fmt.Fprintf(&b, "# Environment of KATO processor instance %s (generation %s), generated by kato-manager.\n", commentText(env.ID), commentText(env.Generation))
	b.WriteString("# kato-manager rewrites this file whenever it configures the instance:\n")
	b.WriteString("# change the instance with kato-manager rather than editing this file.\n")
	vars := []struct{ key, value string }{
		{"PROCESSOR_ID", env.ID},
		{"PROCESSOR_NAME", env.Name},
	}
	if env.Generation == GenerationA {
		vars = append(vars, struct{ key, value string }{"MANIFEST", manifest(env)})
	}
	vars = append(vars, struct{ key, value string }{"HOSTNAME", env.Hostname})
	for _, s := range env.Settings {
		if env.Generation != GenerationA || s.Manifest == "" {
			vars = append(vars, struct{ key, value string }{s.Env, FormatSetting(s.Value)})
		}
	}
	if env.Generation != GenerationC {
		vars = append(vars, struct{ key, value string }{"MONGO_BASE_URL", env.MongoURL})
	} else {
		vars = append(vars, []struct{ key, value string }{
			{"SERVICE_NAME", env.ServiceName},
			{"KATO_WORKERS", strconv.Itoa(env.Workers)},
			{"KATO_ARCHITECTURE_MODE", "hybrid"},
		}...)
		// Validate refuses stores that do not parse; an unchecked env
		// gets none rather than half of them.
		stores, _ := env.Stores.variables()
		for _, v := range stores {
			vars = append(vars, struct{ key, value string }{v.key, v.value})
		}
	}
	if env.Generation == GenerationA {
		vars = append(vars, []struct{ key, value string }{
			{"REST_PORT", strconv.Itoa(env.RestPort)},
			{"ZMQ_PORT", strconv.Itoa(env.ZMQPort)},
			{"SOURCES", "[]"},
			{"TARGETS", "[]"},
			{"AS_INPUTS", "[]"},
			{"KATO_ZMQ_IMPLEMENTATION", "improved"},
		}...)
	} else {
		vars = append(vars, struct{ key, value string }{"PORT", strconv.Itoa(env.RestPort)})
	}
	for _, v := range vars {
		b.WriteString(v.key)
		b.WriteByte('=')
		b.WriteString(quoteEnvValue(v.value))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// FormatSetting renders a setting's value as the environment file carries
// it: numbers in their shortest exact form, booleans as true or false.
func FormatSetting(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return formatFloat(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// manifest renders id, name and the settings with a MANIFEST key as one JSON
// object, keys in a fixed order, so that the file only changes when a
// setting does.
func manifest(env ProcessorEnv) string {
	var b strings.Builder
	b.WriteString(`{"id":`)
	b.WriteString(jsonString(env.ID))
	b.WriteString(`,"name":`)
	b.WriteString(jsonString(env.Name))
	for _, s := range env.Settings {
		if s.Manifest == "" {
			continue
		}
		b.WriteString(",")
		b.WriteString(jsonString(s.Manifest))
		b.WriteString(":")
		switch x := s.Value.(type) {
		case string:
			b.WriteString(jsonString(x))
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				b.WriteString("null")
			} else {
				b.WriteString(formatFloat(x))
			}
		case int, bool:
			b.WriteString(FormatSetting(x))
		default:
			b.WriteString("null")
		}
	}
	b.WriteByte('}')
	return b.String()
}

// formatFloat writes f in the shortest form that reads back as f, so 0.1
// stays 0.1. For finite values the result is also a valid JSON number.
func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// quoteEnvValue quotes s as a double-quoted environment file value. Inside
// double quotes systemd unescapes '\' followed by one of "\`$ and keeps every
// other character as it is, so escaping '"' and '\' is enough to carry any
// loadable text unchanged, newlines included.
func quoteEnvValue(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		switch {
		case r == utf8.RuneError && size == 1, !loadableRune(r):
			b.WriteRune(utf8.RuneError)
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// jsonString quotes s as a JSON string. Unlike encoding/json it leaves '<',
// '>' and '&' readable; bytes that are not UTF-8 become U+FFFD.
func jsonString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\u2028', '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// commentText returns id as it may appear in a comment: as it is when it is a
// valid instance id, Go-quoted otherwise, so that it stays on one line and
// never ends in a backslash.
func commentText(id string) string {
	if ValidateInstanceID(id) == nil {
		return id
	}
	return strconv.QuoteToASCII(id)
}
