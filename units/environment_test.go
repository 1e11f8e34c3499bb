package units

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// hostileName is a processor name holding everything that means something in
// a unit file, an environment file, a shell or JSON.
const hostileName = `Q"uote's back\slash \\double $HOME ${X} $$ %i %% ` + "`id` <&> ünïcødé ☃ 日本  two  spaces end\\"

// contractSettings are the processor contract's settings with their
// defaults, in MANIFEST order, as config.Parameters.Settings returns them.
func contractSettings() []Setting {
	return []Setting{
		{"INDEXER_TYPE", "indexer_type", "VI"},
		{"MAX_PATTERN_LENGTH", "max_pattern_length", 0},
		{"PERSISTENCE", "persistence", 5},
		{"SMOOTHNESS", "smoothness", 3},
		{"AUTO_ACT_METHOD", "auto_act_method", "none"},
		{"AUTO_ACT_THRESHOLD", "auto_act_threshold", 0.8},
		{"ALWAYS_UPDATE_FREQUENCIES", "always_update_frequencies", false},
		{"MAX_PREDICTIONS", "max_predictions", 100},
		{"RECALL_THRESHOLD", "recall_threshold", 0.1},
		{"QUIESCENCE", "quiescence", 3},
		{"SEARCH_DEPTH", "search_depth", 10},
		{"SORT", "sort", true},
		{"PROCESS_PREDICTIONS", "process_predictions", true},
		{"LOG_LEVEL", "", "INFO"},
	}
}

var plainEnv = ProcessorEnv{
	Generation: GenerationA,
	ID:         "processor-1",
	Name:       "Main Processor",
	Settings:   contractSettings(),
	MongoURL:   "mongodb://localhost:27017",
	Hostname:   "kato-processor-1",
	RestPort:   8000,
	ZMQPort:    5555,
}

var hostileEnv = ProcessorEnv{
	Generation: GenerationB,
	ID:         "hostile_1",
	Name:       hostileName,
	Settings: []Setting{
		{"INDEXER_TYPE", "indexer_type", `V"I\`},
		{"RECALL_THRESHOLD", "recall_threshold", 0.05},
		{"SORT", "sort", false},
		{"LOG_LEVEL", "", "DEBUG $LEVEL"},
	},
	MongoURL: "mongodb://user:p%40ss@db:27017/?opt=${X}",
	Hostname: " spaced host ",
	RestPort: 9000,
	ZMQPort:  6000,
}

func TestRenderEnvironmentGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  ProcessorEnv
	}{
		{"environment_plain.env", plainEnv},
		{"environment_hostile.env", hostileEnv},
		{"environment_hostile_a.env", func() ProcessorEnv { e := hostileEnv; e.Generation = GenerationA; return e }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.env.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			checkGolden(t, tc.name, RenderEnvironment(tc.env))
		})
	}
}

// TestRenderEnvironmentReadsBack decodes the rendered file as systemd does
// and checks that each generation sees exactly what the processor contract
// says it reads, every value as given.
func TestRenderEnvironmentReadsBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  ProcessorEnv
	}{
		{"plain", plainEnv},
		{"hostile", hostileEnv},
		{"empty text", ProcessorEnv{Generation: GenerationB, ID: "x", Settings: []Setting{{"T", "t", 1.0}}}},
		{"small threshold", ProcessorEnv{Generation: GenerationA, ID: "x", Settings: []Setting{{"T", "t", 1e-7}}}},
	} {
		for _, gen := range []string{GenerationA, GenerationB} {
			t.Run(tc.name+"/"+gen, func(t *testing.T) {
				env := tc.env
				env.Generation = gen
				assignments := decodeEnvFile(t, RenderEnvironment(env))
				var keys []string
				for _, a := range assignments {
					keys = append(keys, a.key)
				}
				got := envMap(assignments)
				want := map[string]string{
					"PROCESSOR_ID":   env.ID,
					"PROCESSOR_NAME": env.Name,
					"HOSTNAME":       env.Hostname,
					"MONGO_BASE_URL": env.MongoURL,
				}
				wantKeys := []string{"PROCESSOR_ID", "PROCESSOR_NAME"}
				if gen == GenerationA {
					wantKeys = append(wantKeys, "MANIFEST")
				}
				wantKeys = append(wantKeys, "HOSTNAME")
				for _, s := range env.Settings {
					if gen == GenerationB || s.Manifest == "" {
						wantKeys = append(wantKeys, s.Env)
						want[s.Env] = FormatSetting(s.Value)
					}
				}
				wantKeys = append(wantKeys, "MONGO_BASE_URL")
				if gen == GenerationA {
					wantKeys = append(wantKeys, "REST_PORT", "ZMQ_PORT", "SOURCES", "TARGETS", "AS_INPUTS", "KATO_ZMQ_IMPLEMENTATION")
					want["REST_PORT"], want["ZMQ_PORT"] = strconv.Itoa(env.RestPort), strconv.Itoa(env.ZMQPort)
					want["SOURCES"], want["TARGETS"], want["AS_INPUTS"], want["KATO_ZMQ_IMPLEMENTATION"] = "[]", "[]", "[]", "improved"
				} else {
					wantKeys = append(wantKeys, "PORT")
					want["PORT"] = strconv.Itoa(env.RestPort)
				}
				if !slices.Equal(keys, wantKeys) {
					t.Fatalf("variables = %q, want %q", keys, wantKeys)
				}
				for key, value := range want {
					if got[key] != value {
						t.Errorf("%s = %q, want %q", key, got[key], value)
					}
				}
				if gen == GenerationB {
					return
				}
				dec := json.NewDecoder(strings.NewReader(got["MANIFEST"]))
				dec.UseNumber()
				var m map[string]any
				if err := dec.Decode(&m); err != nil {
					t.Fatalf("MANIFEST %q is not a JSON object: %v", got["MANIFEST"], err)
				}
				wantManifest := map[string]any{"id": env.ID, "name": env.Name}
				for _, s := range env.Settings {
					if s.Manifest == "" {
						continue
					}
					switch v := s.Value.(type) {
					case int:
						wantManifest[s.Manifest] = json.Number(strconv.Itoa(v))
					case float64:
						wantManifest[s.Manifest] = json.Number(strconv.FormatFloat(v, 'g', -1, 64))
					default:
						wantManifest[s.Manifest] = v
					}
				}
				if !reflect.DeepEqual(m, wantManifest) {
					t.Errorf("MANIFEST = %v, want %v", m, wantManifest)
				}
			})
		}
	}
}

func TestManifestKeyOrder(t *testing.T) {
	got := manifest(plainEnv)
	want := `{"id":"processor-1","name":"Main Processor","indexer_type":"VI","max_pattern_length":0,"persistence":5,` +
		`"smoothness":3,"auto_act_method":"none","auto_act_threshold":0.8,"always_update_frequencies":false,` +
		`"max_predictions":100,"recall_threshold":0.1,"quiescence":3,"search_depth":10,"sort":true,"process_predictions":true}`
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
			var m map[string]any
			if err := json.Unmarshal([]byte(got["MANIFEST"]), &m); err != nil {
				t.Errorf("MANIFEST %q is not JSON: %v", got["MANIFEST"], err)
			}
		})
	}
}

func TestRenderEnvironmentNonFiniteThreshold(t *testing.T) {
	env := plainEnv
	env.Settings = contractSettings()
	env.Settings[8].Value = math.NaN()
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
	if len(assignments) != 12 {
		t.Errorf("got %d assignments, want 12: %q", len(assignments), assignments)
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
		{name: "empty id", change: func(e *ProcessorEnv) { e.ID = "" }, wantErr: `invalid instance id "": must be 1 to 64 characters long`},
		{name: "id with slash", change: func(e *ProcessorEnv) { e.ID = "a/b" }, wantErr: `invalid instance id "a/b"`},
		{name: "newline in name", change: func(e *ProcessorEnv) { e.Name = "a\nb" }, wantErr: `invalid name "a\nb": must not contain control characters`},
		{name: "unknown generation", change: func(e *ProcessorEnv) { e.Generation = "d" }, wantErr: `invalid generation "d": must be a, b or c`},
		{name: "tab in indexer type", change: func(e *ProcessorEnv) { e.Settings = []Setting{{"INDEXER_TYPE", "indexer_type", "V\tI"}} }, wantErr: `invalid INDEXER_TYPE "V\tI": must not contain control characters`},
		{name: "NUL in log level", change: func(e *ProcessorEnv) { e.Settings = []Setting{{"LOG_LEVEL", "", "a\x00"}} }, wantErr: `invalid LOG_LEVEL "a\x00": must not contain control characters`},
		{name: "bad variable name", change: func(e *ProcessorEnv) { e.Settings = []Setting{{"A=B", "", "x"}} }, wantErr: `invalid setting variable "A=B"`},
		{name: "unsupported value", change: func(e *ProcessorEnv) { e.Settings = []Setting{{"A", "", []int{1}}} }, wantErr: `invalid A [1]: must be a string`},
		{name: "invalid UTF-8 in mongo url", change: func(e *ProcessorEnv) { e.MongoURL = "mongodb://\xff" }, wantErr: `invalid mongo_url "mongodb://\xff": must be valid UTF-8`},
		{name: "byte order mark in hostname", change: func(e *ProcessorEnv) { e.Hostname = "\uFEFFh" }, wantErr: `invalid hostname "\ufeffh": must not contain U+FEFF or Unicode noncharacters`},
		{name: "NaN threshold", change: func(e *ProcessorEnv) { e.Settings = []Setting{{"RECALL_THRESHOLD", "recall_threshold", math.NaN()}} }, wantErr: "invalid RECALL_THRESHOLD NaN: must be a finite number"},
		{name: "infinite threshold", change: func(e *ProcessorEnv) { e.Settings = []Setting{{"RECALL_THRESHOLD", "recall_threshold", math.Inf(1)}} }, wantErr: "invalid RECALL_THRESHOLD +Inf: must be a finite number"},
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
