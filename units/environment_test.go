package units

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// hostileName is a processor name holding everything that means something in
// a unit file, an environment file, a shell or JSON.
const hostileName = `Q"uote's back\slash \\double $HOME ${X} $$ %i %% ` + "`id` <&> ünïcødé ☃ 日本  two  spaces end\\"

var plainEnv = ProcessorEnv{
	ID:               "processor-1",
	Name:             "Main Processor",
	IndexerType:      "VI",
	MaxPredictions:   100,
	RecallThreshold:  0.1,
	MaxPatternLength: 0,
	Persistence:      5,
	Quiescence:       3,
	LogLevel:         "INFO",
	MongoURL:         "mongodb://localhost:27017",
	Hostname:         "kato-host",
	RestPort:         8001,
	ZMQPort:          5556,
}

var hostileEnv = ProcessorEnv{
	ID:               "hostile_1",
	Name:             hostileName,
	IndexerType:      `V"I\`,
	MaxPredictions:   50,
	RecallThreshold:  0.05,
	MaxPatternLength: 10,
	Persistence:      7,
	Quiescence:       2,
	LogLevel:         "DEBUG $LEVEL",
	MongoURL:         "mongodb://user:p%40ss@db:27017/?opt=${X}",
	Hostname:         " spaced host ",
	RestPort:         9000,
	ZMQPort:          6000,
}

func TestRenderEnvironmentGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  ProcessorEnv
	}{
		{"environment_plain.env", plainEnv},
		{"environment_hostile.env", hostileEnv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.env.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			checkGolden(t, tc.name, RenderEnvironment(tc.env))
		})
	}
}

// manifestFields mirrors the MANIFEST object for decoding.
type manifestFields struct {
	ID               string  `json:"id"`
	Name             string  `json:"name"`
	IndexerType      string  `json:"indexer_type"`
	MaxPatternLength int     `json:"max_pattern_length"`
	Persistence      int     `json:"persistence"`
	MaxPredictions   int     `json:"max_predictions"`
	RecallThreshold  float64 `json:"recall_threshold"`
	Quiescence       int     `json:"quiescence"`
}

// TestRenderEnvironmentReadsBack decodes the rendered file as systemd does
// and checks that the processor would see every value exactly as given.
func TestRenderEnvironmentReadsBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  ProcessorEnv
	}{
		{"plain", plainEnv},
		{"hostile", hostileEnv},
		{"empty text", ProcessorEnv{ID: "x", RecallThreshold: 1}},
		{"small threshold", ProcessorEnv{ID: "x", RecallThreshold: 1e-7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			assignments := decodeEnvFile(t, RenderEnvironment(env))
			var keys []string
			for _, a := range assignments {
				keys = append(keys, a.key)
			}
			wantKeys := []string{
				"PROCESSOR_ID", "PROCESSOR_NAME", "INDEXER_TYPE", "MAX_PREDICTIONS", "RECALL_THRESHOLD",
				"MAX_PATTERN_LENGTH", "PERSISTENCE", "QUIESCENCE", "LOG_LEVEL", "MONGO_BASE_URL",
				"REST_PORT", "ZMQ_PORT", "PORT", "HOSTNAME", "MANIFEST",
			}
			if !slices.Equal(keys, wantKeys) {
				t.Fatalf("variables = %q, want %q", keys, wantKeys)
			}
			got := envMap(assignments)
			want := map[string]string{
				"PROCESSOR_ID":       env.ID,
				"PROCESSOR_NAME":     env.Name,
				"INDEXER_TYPE":       env.IndexerType,
				"MAX_PREDICTIONS":    strconv.Itoa(env.MaxPredictions),
				"RECALL_THRESHOLD":   strconv.FormatFloat(env.RecallThreshold, 'g', -1, 64),
				"MAX_PATTERN_LENGTH": strconv.Itoa(env.MaxPatternLength),
				"PERSISTENCE":        strconv.Itoa(env.Persistence),
				"QUIESCENCE":         strconv.Itoa(env.Quiescence),
				"LOG_LEVEL":          env.LogLevel,
				"MONGO_BASE_URL":     env.MongoURL,
				"REST_PORT":          strconv.Itoa(env.RestPort),
				"ZMQ_PORT":           strconv.Itoa(env.ZMQPort),
				"PORT":               strconv.Itoa(env.RestPort),
				"HOSTNAME":           env.Hostname,
			}
			for key, value := range want {
				if got[key] != value {
					t.Errorf("%s = %q, want %q", key, got[key], value)
				}
			}
			if threshold, err := strconv.ParseFloat(got["RECALL_THRESHOLD"], 64); err != nil || threshold != env.RecallThreshold {
				t.Errorf("RECALL_THRESHOLD %q reads back as %v (%v), want %v", got["RECALL_THRESHOLD"], threshold, err, env.RecallThreshold)
			}

			var m manifestFields
			dec := json.NewDecoder(strings.NewReader(got["MANIFEST"]))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("MANIFEST %q is not the expected JSON object: %v", got["MANIFEST"], err)
			}
			wantManifest := manifestFields{
				ID: env.ID, Name: env.Name, IndexerType: env.IndexerType,
				MaxPatternLength: env.MaxPatternLength, Persistence: env.Persistence,
				MaxPredictions: env.MaxPredictions, RecallThreshold: env.RecallThreshold,
				Quiescence: env.Quiescence,
			}
			if m != wantManifest {
				t.Errorf("MANIFEST = %+v, want %+v", m, wantManifest)
			}
			assertNumbers(t, got["MANIFEST"])
		})
	}
}

// assertNumbers checks that the numeric MANIFEST fields are JSON numbers,
// not strings.
func assertNumbers(t *testing.T, manifest string) {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(manifest), &raw); err != nil {
		t.Fatalf("MANIFEST: %v", err)
	}
	for _, key := range []string{"max_pattern_length", "persistence", "max_predictions", "recall_threshold", "quiescence"} {
		if _, err := strconv.ParseFloat(string(raw[key]), 64); err != nil {
			t.Errorf("MANIFEST %s = %s, want a JSON number", key, raw[key])
		}
	}
}

func TestManifestKeyOrder(t *testing.T) {
	got := manifest(plainEnv)
	want := `{"id":"processor-1","name":"Main Processor","indexer_type":"VI","max_pattern_length":0,` +
		`"persistence":5,"max_predictions":100,"recall_threshold":0.1,"quiescence":3}`
	if got != want {
		t.Errorf("manifest =\n%s\nwant\n%s", got, want)
	}
}

func TestQuoteEnvValueRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"empty", ""},
		{"plain", "Main Processor"},
		{"double quote", `say "hi"`},
		{"lone double quote", `"`},
		{"backslash", `C:\path\`},
		{"escaped quote lookalike", `\"`},
		{"dollar", "$HOME ${X} $$ $"},
		{"backslash before dollar", `\$HOME`},
		{"backtick", "`id` \\`"},
		{"percent", "%i %% %"},
		{"single quotes", "it's 'quoted'"},
		{"comment chars", "# not a comment ; nor this"},
		{"equals", "a=b=c"},
		{"surrounding spaces", "  padded  "},
		{"unicode", "ünïcødé ☃ 日本 🙂"},
		{"newline", "two\nlines"},
		{"carriage return and tab", "a\r\tb"},
		{"backslash newline", "a\\\nb"},
		{"hostile name", hostileName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quoted := quoteEnvValue(tc.value)
			got := decodeEnvFile(t, []byte("KEY="+quoted+"\nNEXT=\"after\"\n"))
			want := []envAssignment{{"KEY", tc.value}, {"NEXT", "after"}}
			if !slices.Equal(got, want) {
				t.Errorf("quoteEnvValue(%q) = %s, reads back as %q, want %q", tc.value, quoted, got, want)
			}
		})
	}
}

// TestRenderEnvironmentUnloadableText checks that text systemd would refuse
// to load cannot break the file: the other variables survive and each
// unloadable character becomes U+FFFD.
func TestRenderEnvironmentUnloadableText(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"NUL", "a\x00b", "a\uFFFDb"},
		{"byte order mark", "\uFEFFa", "\uFFFDa"},
		{"noncharacter", "a\uFFFEb\U0001FFFF", "a\uFFFDb\uFFFD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := plainEnv
			env.Name = tc.value
			got := envMap(decodeEnvFile(t, RenderEnvironment(env)))
			if got["PROCESSOR_NAME"] != tc.want {
				t.Errorf("PROCESSOR_NAME = %q, want %q", got["PROCESSOR_NAME"], tc.want)
			}
			if got["MANIFEST"] == "" || got["HOSTNAME"] != env.Hostname {
				t.Errorf("variables after PROCESSOR_NAME were lost: %q", got)
			}
			var m manifestFields
			if err := json.Unmarshal([]byte(got["MANIFEST"]), &m); err != nil {
				t.Errorf("MANIFEST %q is not JSON: %v", got["MANIFEST"], err)
			}
		})
	}
}

func TestRenderEnvironmentNonFiniteThreshold(t *testing.T) {
	env := plainEnv
	env.RecallThreshold = math.NaN()
	got := envMap(decodeEnvFile(t, RenderEnvironment(env)))
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(got["MANIFEST"]), &raw); err != nil {
		t.Fatalf("MANIFEST %q is not JSON: %v", got["MANIFEST"], err)
	}
	if string(raw["recall_threshold"]) != "null" {
		t.Errorf("recall_threshold = %s, want null", raw["recall_threshold"])
	}
}

// TestRenderEnvironmentHeaderID checks that an id the caller failed to
// validate cannot break out of the header comment.
func TestRenderEnvironmentHeaderID(t *testing.T) {
	env := plainEnv
	env.ID = "evil\nPROCESSOR_NAME=injected\\"
	assignments := decodeEnvFile(t, RenderEnvironment(env))
	got := envMap(assignments)
	if len(assignments) != 15 {
		t.Errorf("got %d assignments, want 15: %q", len(assignments), assignments)
	}
	if got["PROCESSOR_NAME"] != env.Name || got["PROCESSOR_ID"] != env.ID {
		t.Errorf("PROCESSOR_NAME = %q, PROCESSOR_ID = %q; want %q, %q", got["PROCESSOR_NAME"], got["PROCESSOR_ID"], env.Name, env.ID)
	}
}

func TestProcessorEnvValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*ProcessorEnv)
		wantErr string
	}{
		{name: "plain", change: func(*ProcessorEnv) {}},
		{name: "hostile but loadable", change: func(e *ProcessorEnv) { *e = hostileEnv }},
		{name: "empty id", change: func(e *ProcessorEnv) { e.ID = "" }, wantErr: `invalid instance id "": must not be empty`},
		{name: "id with slash", change: func(e *ProcessorEnv) { e.ID = "a/b" }, wantErr: `invalid instance id "a/b"`},
		{name: "newline in name", change: func(e *ProcessorEnv) { e.Name = "a\nb" }, wantErr: `invalid name "a\nb": must not contain control characters`},
		{name: "tab in indexer type", change: func(e *ProcessorEnv) { e.IndexerType = "V\tI" }, wantErr: `invalid indexer_type "V\tI": must not contain control characters`},
		{name: "NUL in log level", change: func(e *ProcessorEnv) { e.LogLevel = "a\x00" }, wantErr: `invalid log_level "a\x00": must not contain control characters`},
		{name: "invalid UTF-8 in mongo url", change: func(e *ProcessorEnv) { e.MongoURL = "mongodb://\xff" }, wantErr: `invalid mongo_url "mongodb://\xff": must be valid UTF-8`},
		{name: "byte order mark in hostname", change: func(e *ProcessorEnv) { e.Hostname = "\uFEFFh" }, wantErr: `invalid hostname "\ufeffh": must not contain U+FEFF or Unicode noncharacters`},
		{name: "NaN threshold", change: func(e *ProcessorEnv) { e.RecallThreshold = math.NaN() }, wantErr: "invalid recall_threshold NaN: must be a finite number"},
		{name: "infinite threshold", change: func(e *ProcessorEnv) { e.RecallThreshold = math.Inf(1) }, wantErr: "invalid recall_threshold +Inf: must be a finite number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := plainEnv
			tc.change(&env)
			assertError(t, env.Validate(), tc.wantErr)
		})
	}
}

func TestFormatFloat(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0.1, "0.1"},
		{0.05, "0.05"},
		{0.3, "0.3"},
		{0, "0"},
		{1, "1"},
		{1e-7, "1e-07"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			got := formatFloat(tc.in)
			if got != tc.want {
				t.Errorf("formatFloat(%v) = %q, want %q", tc.in, got, tc.want)
			}
			var back float64
			if err := json.Unmarshal([]byte(got), &back); err != nil || back != tc.in {
				t.Errorf("%q read as JSON gives %v (%v), want %v", got, back, err, tc.in)
			}
		})
	}
}

func TestJSONString(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"quote and backslash", `a"b\c`},
		{"html", "<b>&</b>"},
		{"control characters", "\x00\x01\n\r\t\x1f\x7f"},
		{"line separators", "\u2028\u2029"},
		{"unicode", "ünïcødé ☃ 🙂"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quoted := jsonString(tc.in)
			var back string
			if err := json.Unmarshal([]byte(quoted), &back); err != nil || back != tc.in {
				t.Errorf("jsonString(%q) = %s reads back as %q (%v)", tc.in, quoted, back, err)
			}
			if strings.ContainsAny(quoted, "\n\r\x00") {
				t.Errorf("jsonString(%q) = %q holds a raw control character", tc.in, quoted)
			}
		})
	}
	if got := jsonString("<&>"); got != `"<&>"` {
		t.Errorf(`jsonString("<&>") = %s, want "<&>" unescaped`, got)
	}
	if got := jsonString("a\xffb"); got != "\"a\uFFFDb\"" {
		t.Errorf(`jsonString("a\xffb") = %q, want U+FFFD in place of the invalid byte`, got)
	}
}
