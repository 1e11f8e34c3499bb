package config

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/units"
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
	// The contract's defaults, key by key.
	want := Parameters{
		"indexer_type": "VI", "max_pattern_length": 0, "persistence": 5, "smoothness": 3,
		"auto_act_method": "none", "auto_act_threshold": 0.8, "always_update_frequencies": false,
		"max_predictions": 100, "recall_threshold": 0.1, "quiescence": 3, "search_depth": 10,
		"sort": true, "process_predictions": true, "log_level": "INFO",
	}
	got := DefaultParameters()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DefaultParameters() = %v, want %v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("DefaultParameters().Validate() = %v", err)
	}
}

// TestParamsTable checks the table against the processor contract: the
// thirteen MANIFEST settings besides id and name with the old script's
// flags, and that flag, variable, key and name each name one row.
func TestParamsTable(t *testing.T) {
	contract := map[string]string{ // MANIFEST key -> old script's flag
		"indexer_type": "indexer-type", "max_pattern_length": "max-seq-length", "persistence": "persistence",
		"smoothness": "smoothness", "auto_act_method": "auto-act-method", "auto_act_threshold": "auto-act-threshold",
		"always_update_frequencies": "update-frequencies", "max_predictions": "max-predictions",
		"recall_threshold": "recall-threshold", "quiescence": "quiescence", "search_depth": "search-depth",
		"sort": "no-sort", "process_predictions": "no-predictions",
	}
	seen := map[string]string{}
	once := func(kind, v, row string) {
		t.Helper()
		if v == "" {
			return
		}
		if other, dup := seen[kind+" "+v]; dup {
			t.Errorf("%s %q is used by %s and %s", kind, v, other, row)
		}
		seen[kind+" "+v] = row
	}
	manifestKeys := 0
	for _, p := range Params {
		once("name", p.Name, p.Name)
		once("flag", p.Flag, p.Name)
		once("short", p.Short, p.Name)
		once("env", p.Env, p.Name)
		once("manifest", p.Manifest, p.Name)
		if p.Manifest != "" {
			manifestKeys++
			if flag, ok := contract[p.Manifest]; !ok || flag != p.Flag {
				t.Errorf("%s: MANIFEST key %q with flag --%s, contract says --%s", p.Name, p.Manifest, p.Flag, flag)
			}
			if p.Manifest != p.Name {
				t.Errorf("%s: MANIFEST key %q differs from the name", p.Name, p.Manifest)
			}
		}
		if p.Env != strings.ToUpper(p.Name) {
			t.Errorf("%s: variable %s, want %s", p.Name, p.Env, strings.ToUpper(p.Name))
		}
		if !p.Kind.holds(p.Default) {
			t.Errorf("%s: default %v is not of its kind", p.Name, p.Default)
		}
		if p.Negated && p.Kind != Bool {
			t.Errorf("%s: only a Bool can be negated", p.Name)
		}
		if p.Usage == "" {
			t.Errorf("%s: no usage", p.Name)
		}
	}
	if manifestKeys+2 != 15 {
		t.Errorf("%d MANIFEST settings + id and name, want the contract's 15 keys", manifestKeys)
	}
	if p, ok := ParamNamed("log_level"); !ok || p.Short != "l" || p.Env != "LOG_LEVEL" || p.Manifest != "" {
		t.Errorf("log_level row = %+v", p)
	}
}

func TestParametersValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(Parameters)
		field  string // "" when valid
		value  string
		rule   string
	}{
		{name: "bounds inclusive low", change: func(p Parameters) {
			p["max_predictions"], p["recall_threshold"], p["max_pattern_length"], p["persistence"], p["quiescence"] = 1, 0.0, 0, 1, 0
			p["smoothness"], p["auto_act_threshold"], p["search_depth"] = 0, 0.0, 1
		}},
		{name: "bounds inclusive high", change: func(p Parameters) {
			p["max_predictions"], p["recall_threshold"], p["max_pattern_length"], p["persistence"], p["quiescence"] = 10000, 1.0, 100000, 100000, 100000
			p["smoothness"], p["auto_act_threshold"], p["search_depth"] = 100000, 1.0, 100000
		}},
		{name: "indexer type", change: func(p Parameters) { p["indexer_type"] = "KD" }, field: "indexer_type", value: "KD", rule: "must be VI"},
		{name: "indexer type empty", change: func(p Parameters) { p["indexer_type"] = "" }, field: "indexer_type", value: "", rule: "must be VI"},
		{name: "max predictions zero", change: func(p Parameters) { p["max_predictions"] = 0 }, field: "max_predictions", value: "0", rule: "must be between 1 and 10000"},
		{name: "recall threshold above one", change: func(p Parameters) { p["recall_threshold"] = 1.5 }, field: "recall_threshold", value: "1.5", rule: "must be between 0 and 1"},
		{name: "recall threshold NaN", change: func(p Parameters) { p["recall_threshold"] = math.NaN() }, field: "recall_threshold", value: "NaN", rule: "must be between 0 and 1"},
		{name: "max pattern length negative", change: func(p Parameters) { p["max_pattern_length"] = -1 }, field: "max_pattern_length", value: "-1", rule: "must be between 0 and 100000"},
		{name: "persistence zero", change: func(p Parameters) { p["persistence"] = 0 }, field: "persistence", value: "0", rule: "must be between 1 and 100000"},
		{name: "quiescence negative", change: func(p Parameters) { p["quiescence"] = -3 }, field: "quiescence", value: "-3", rule: "must be between 0 and 100000"},
		{name: "smoothness negative", change: func(p Parameters) { p["smoothness"] = -1 }, field: "smoothness", value: "-1", rule: "must be between 0 and 100000"},
		{name: "search depth zero", change: func(p Parameters) { p["search_depth"] = 0 }, field: "search_depth", value: "0", rule: "must be between 1 and 100000"},
		{name: "auto act threshold", change: func(p Parameters) { p["auto_act_threshold"] = 2.0 }, field: "auto_act_threshold", value: "2", rule: "must be between 0 and 1"},
		{name: "auto act method", change: func(p Parameters) { p["auto_act_method"] = "Not a word" }, field: "auto_act_method", value: "Not a word", rule: "must be 1 to 64 lower-case letters, digits and '_', starting with a letter"},
		{name: "log level", change: func(p Parameters) { p["log_level"] = "TRACE" }, field: "log_level", value: "TRACE", rule: "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"},
		{name: "wrong type", change: func(p Parameters) { p["sort"] = "yes" }, field: "sort", value: "yes", rule: "must be true or false"},
		{name: "missing", change: func(p Parameters) { delete(p, "quiescence") }, field: "quiescence", value: "", rule: "must be set"},
		{name: "unknown", change: func(p Parameters) { p["speed"] = 1 }, field: "speed", value: "1", rule: unknownParamRule("speed")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultParameters()
			tc.change(p)
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

// TestParamFlags checks every row's flag: given on the command line, it sets
// exactly its parameter, and its environment variable and MANIFEST key
// carry the value.
func TestParamFlags(t *testing.T) {
	values := map[Kind]string{String: "x", Int: "7", Float: "0.25", Bool: "true"}
	for _, row := range Params {
		t.Run(row.Flag, func(t *testing.T) {
			fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
			pf := AddParamFlags(fs)
			arg := "--" + row.Flag
			value := values[row.Kind]
			switch {
			case row.Name == "log_level":
				value = "DEBUG"
			case row.Name == "indexer_type":
				value = "VI"
			}
			if row.Kind != Bool {
				arg += "=" + value
			}
			if err := fs.Parse([]string{arg}); err != nil {
				t.Fatal(err)
			}
			base := DefaultParameters()
			got, given, err := pf.Apply(base)
			if err != nil {
				t.Fatal(err)
			}
			if len(given) != 1 || given[0] != "--"+row.Flag {
				t.Errorf("given = %q", given)
			}
			var want any
			switch row.Kind {
			case String:
				want = value
			case Int:
				want = 7
			case Float:
				want = 0.25
			case Bool:
				want = !row.Negated
			}
			if got[row.Name] != want {
				t.Errorf("%s = %v, want %v", row.Name, got[row.Name], want)
			}
			for name, v := range got {
				if name != row.Name && v != base[name] {
					t.Errorf("%s also changed %s to %v", arg, name, v)
				}
			}
			var setting *units.Setting
			for _, s := range got.Settings() {
				if s.Env == row.Env {
					setting = &s
				}
			}
			if setting == nil || setting.Value != want || setting.Manifest != row.Manifest {
				t.Errorf("setting for %s = %+v", row.Env, setting)
			}
		})
	}
	t.Run("short flags and bad values name the flag", func(t *testing.T) {
		fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
		pf := AddParamFlags(fs)
		if err := fs.Parse([]string{"-l", "WARNING", "--recall-threshold", "1.5"}); err != nil {
			t.Fatal(err)
		}
		_, _, err := pf.Apply(DefaultParameters())
		wantFieldError(t, err, "--recall-threshold", "1.5", "must be between 0 and 1")
	})
	t.Run("no flags keep the base", func(t *testing.T) {
		fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
		pf := AddParamFlags(fs)
		base := DefaultParameters()
		base["max_predictions"] = 42
		got, given, err := pf.Apply(base)
		if err != nil || len(given) != 0 || !reflect.DeepEqual(got, base) {
			t.Fatalf("Apply = %v %v %v", got, given, err)
		}
	})
}

func TestParametersMerge(t *testing.T) {
	got, err := DefaultParameters().Merge(map[string]any{"max_seq_length": int64(9), "recall_threshold": int64(1), "sort": false})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultParameters()
	want["max_pattern_length"], want["recall_threshold"], want["sort"] = 9, 1.0, false
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Merge = %v, want %v", got, want)
	}
	_, err = DefaultParameters().Merge(map[string]any{"max_predictions": 1.5})
	wantFieldError(t, err, "max_predictions", "1.5", "must be an integer")
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
