package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Parameters are the settings of one KATO processor instance. The [defaults]
// section of kato.toml holds the values new instances start from; each registry
// entry keeps the values its instance was started with.
type Parameters struct {
	IndexerType     string  `toml:"indexer_type"`     // only "VI"
	MaxPredictions  int     `toml:"max_predictions"`  // 1..10000
	RecallThreshold float64 `toml:"recall_threshold"` // 0..1 inclusive
	MaxSeqLength    int     `toml:"max_seq_length"`   // 0 (unlimited)..100000
	Persistence     int     `toml:"persistence"`      // 1..100000
	Quiescence      int     `toml:"quiescence"`       // 0..100000
}

// DefaultParameters returns the processor parameters used when neither
// kato.toml nor the command line sets them.
func DefaultParameters() Parameters {
	return Parameters{
		IndexerType:     "VI",
		MaxPredictions:  100,
		RecallThreshold: 0.1,
		MaxSeqLength:    0,
		Persistence:     5,
		Quiescence:      3,
	}
}

// Validate reports the first parameter that breaks its rule as a *FieldError
// whose Field is the TOML key, such as "recall_threshold".
func (p Parameters) Validate() error {
	if p.IndexerType != "VI" {
		return &FieldError{Field: "indexer_type", Value: p.IndexerType, Rule: "must be VI"}
	}
	if err := intBetween("max_predictions", p.MaxPredictions, 1, 10000); err != nil {
		return err
	}
	if !(p.RecallThreshold >= 0 && p.RecallThreshold <= 1) {
		return &FieldError{Field: "recall_threshold", Value: formatFloat(p.RecallThreshold), Rule: "must be between 0 and 1"}
	}
	if err := intBetween("max_seq_length", p.MaxSeqLength, 0, 100000); err != nil {
		return err
	}
	if err := intBetween("persistence", p.Persistence, 1, 100000); err != nil {
		return err
	}
	return intBetween("quiescence", p.Quiescence, 0, 100000)
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

// maxIDLength and maxNameLength bound instance identifiers and display names.
const (
	maxIDLength   = 64
	maxNameLength = 128
)

// ValidateID reports whether id can identify an instance: 1 to 64 letters,
// digits, '-' or '_'. The id becomes part of a systemd unit name, so it is
// checked as given and never rewritten.
func ValidateID(id string) error {
	if id == "" || len(id) > maxIDLength {
		return &FieldError{Field: "id", Value: id, Rule: fmt.Sprintf("must be 1 to %d characters long", maxIDLength)}
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' {
			continue
		}
		return &FieldError{Field: "id", Value: id, Rule: "must contain only letters, digits, '-' and '_'"}
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
