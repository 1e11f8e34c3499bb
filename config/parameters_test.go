package config

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// wantFieldError fails t unless err holds a *FieldError with exactly the given
// field, value and rule, and err's message carries that FieldError's message.
func wantFieldError(t *testing.T, err error, field, value, rule string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v: want a *FieldError for %s", err, field)
	}
	if fe.Field != field || fe.Value != value || fe.Rule != rule {
		t.Fatalf("FieldError = {%q %q %q}, want {%q %q %q}", fe.Field, fe.Value, fe.Rule, field, value, rule)
	}
	if !strings.Contains(err.Error(), fe.Error()) {
		t.Fatalf("error %q does not carry %q", err, fe.Error())
	}
}

func TestDefaultParameters(t *testing.T) {
	want := Parameters{IndexerType: "VI", MaxPredictions: 100, RecallThreshold: 0.1, MaxSeqLength: 0, Persistence: 5, Quiescence: 3}
	got := DefaultParameters()
	if got != want {
		t.Fatalf("DefaultParameters() = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("DefaultParameters().Validate() = %v", err)
	}
}

func TestParametersValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Parameters)
		field  string // "" when valid
		value  string
		rule   string
	}{
		{name: "bounds inclusive low", change: func(p *Parameters) {
			p.MaxPredictions, p.RecallThreshold, p.MaxSeqLength, p.Persistence, p.Quiescence = 1, 0, 0, 1, 0
		}},
		{name: "bounds inclusive high", change: func(p *Parameters) {
			p.MaxPredictions, p.RecallThreshold, p.MaxSeqLength, p.Persistence, p.Quiescence = 10000, 1, 100000, 100000, 100000
		}},
		{name: "indexer type", change: func(p *Parameters) { p.IndexerType = "KD" }, field: "indexer_type", value: "KD", rule: "must be VI"},
		{name: "indexer type lower case", change: func(p *Parameters) { p.IndexerType = "vi" }, field: "indexer_type", value: "vi", rule: "must be VI"},
		{name: "indexer type empty", change: func(p *Parameters) { p.IndexerType = "" }, field: "indexer_type", value: "", rule: "must be VI"},
		{name: "max predictions zero", change: func(p *Parameters) { p.MaxPredictions = 0 }, field: "max_predictions", value: "0", rule: "must be between 1 and 10000"},
		{name: "max predictions too many", change: func(p *Parameters) { p.MaxPredictions = 10001 }, field: "max_predictions", value: "10001", rule: "must be between 1 and 10000"},
		{name: "recall threshold above one", change: func(p *Parameters) { p.RecallThreshold = 1.5 }, field: "recall_threshold", value: "1.5", rule: "must be between 0 and 1"},
		{name: "recall threshold negative", change: func(p *Parameters) { p.RecallThreshold = -0.01 }, field: "recall_threshold", value: "-0.01", rule: "must be between 0 and 1"},
		{name: "recall threshold NaN", change: func(p *Parameters) { p.RecallThreshold = math.NaN() }, field: "recall_threshold", value: "NaN", rule: "must be between 0 and 1"},
		{name: "max seq length negative", change: func(p *Parameters) { p.MaxSeqLength = -1 }, field: "max_seq_length", value: "-1", rule: "must be between 0 and 100000"},
		{name: "max seq length too long", change: func(p *Parameters) { p.MaxSeqLength = 100001 }, field: "max_seq_length", value: "100001", rule: "must be between 0 and 100000"},
		{name: "persistence zero", change: func(p *Parameters) { p.Persistence = 0 }, field: "persistence", value: "0", rule: "must be between 1 and 100000"},
		{name: "quiescence negative", change: func(p *Parameters) { p.Quiescence = -3 }, field: "quiescence", value: "-3", rule: "must be between 0 and 100000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultParameters()
			tc.change(&p)
			err := p.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			wantFieldError(t, err, tc.field, tc.value, tc.rule)
		})
	}
}

func TestFieldErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  FieldError
		want string
	}{
		{"number", FieldError{"recall_threshold", "1.5", "must be between 0 and 1"}, "invalid recall_threshold 1.5: must be between 0 and 1"},
		{"negative number", FieldError{"quiescence", "-3", "r"}, "invalid quiescence -3: r"},
		{"empty", FieldError{"id", "", "must be 1 to 64 characters long"}, `invalid id "": must be 1 to 64 characters long`},
		{"space", FieldError{"name", "Main Processor", "r"}, `invalid name "Main Processor": r`},
		{"newline", FieldError{"name", "a\nb", "r"}, `invalid name "a\nb": r`},
		{"quote", FieldError{"id", `a"b`, "r"}, `invalid id "a\"b": r`},
		{"url", FieldError{"kg.service_url", "ftp://host:21/x", "r"}, "invalid kg.service_url ftp://host:21/x: r"},
		{"path", FieldError{"kg.db_path", "relative/kg.db", "r"}, "invalid kg.db_path relative/kg.db: r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Fatalf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidateID(t *testing.T) {
	const charRule = "must contain only letters, digits, '-' and '_'"
	const lenRule = "must be 1 to 64 characters long"
	for _, tc := range []struct {
		name string
		id   string
		rule string // "" when valid
	}{
		{"simple", "processor-1", ""},
		{"underscore and digits", "Proc_2025", ""},
		{"single character", "a", ""},
		{"64 characters", strings.Repeat("x", 64), ""},
		{"empty", "", lenRule},
		{"65 characters", strings.Repeat("x", 65), lenRule},
		{"space", "my proc", charRule},
		{"dot", "a.b", charRule},
		{"slash", "a/b", charRule},
		{"at sign", "a@b", charRule},
		{"leading space is not trimmed", " a", charRule},
		{"non-ASCII letter", "prozessör", charRule},
		{"newline", "a\n", charRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateID(tc.id)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("ValidateID(%q) = %v, want nil", tc.id, err)
				}
				return
			}
			wantFieldError(t, err, "id", tc.id, tc.rule)
		})
	}
}

func TestValidateName(t *testing.T) {
	const lenRule = "must be 1 to 128 characters long"
	const ctlRule = "must not contain control characters or line breaks"
	for _, tc := range []struct {
		name  string
		value string
		rule  string // "" when valid
	}{
		{"words", "Main Processor", ""},
		{"punctuation and unicode", `Zoë's "NLP" (v2) — test`, ""},
		{"128 multibyte characters", strings.Repeat("é", 128), ""},
		{"empty", "", lenRule},
		{"129 characters", strings.Repeat("n", 129), lenRule},
		{"newline", "a\nb", ctlRule},
		{"tab", "a\tb", ctlRule},
		{"carriage return", "a\r", ctlRule},
		{"escape", "a\x1b[31m", ctlRule},
		{"DEL", "a\x7f", ctlRule},
		{"line separator", "a\u2028b", ctlRule},
		{"invalid UTF-8", "a\xffb", "must be valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateName(tc.value)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("ValidateName(%q) = %v, want nil", tc.value, err)
				}
				return
			}
			wantFieldError(t, err, "name", tc.value, tc.rule)
		})
	}
}

func TestGenerateID(t *testing.T) {
	for _, tc := range []struct {
		name string
		now  time.Time
		pid  int
		want string
	}{
		{"utc", time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC), 4242, "kato-20250101-120000-4242"},
		{"other zone is converted to utc", time.Date(2025, 1, 1, 14, 30, 5, 999, time.FixedZone("EET", 2*3600)), 1, "kato-20250101-123005-1"},
		{"large pid", time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC), 4194304, "kato-20991231-235959-4194304"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := GenerateID(tc.now, tc.pid)
			if got != tc.want {
				t.Fatalf("GenerateID() = %q, want %q", got, tc.want)
			}
			if err := ValidateID(got); err != nil {
				t.Fatalf("GenerateID() produced an invalid id: %v", err)
			}
		})
	}
}
