package units

import (
	"slices"
	"strings"
	"testing"
)

// cEnv is a generation-C instance with every store, passwords included.
var cEnv = ProcessorEnv{
	Generation:  GenerationC,
	ID:          "replica-1",
	Name:        "Replica $1",
	Settings:    contractSettings(),
	MongoURL:    "mongodb://never-used:27017",
	Hostname:    "kato-replica-1",
	RestPort:    8101,
	ServiceName: "edge",
	Workers:     4,
	Stores: Stores{
		ClickHouseURL: "https://kato:ch%22pa$s@ch.example:9440/kato_kb",
		RedisURL:      "rediss://:r%24dis@redis.example:6380/2",
		QdrantURL:     "http://:q-key@qdrant.example",
	},
}

// TestRenderEnvironmentGenerationC decodes a generation-C file as systemd
// does and checks it carries what the contract says generation C reads:
// generation B's setting variables, PORT, SERVICE_NAME, KATO_WORKERS,
// KATO_ARCHITECTURE_MODE and the stores' variables, and no MongoDB.
func TestRenderEnvironmentGenerationC(t *testing.T) {
	if err := cEnv.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	assignments := decodeEnvFile(t, RenderEnvironment(cEnv))
	got := envMap(assignments)
	want := map[string]string{
		"PROCESSOR_ID": "replica-1", "PROCESSOR_NAME": "Replica $1", "HOSTNAME": "kato-replica-1", "PORT": "8101",
		"SERVICE_NAME": "edge", "KATO_WORKERS": "4", "KATO_ARCHITECTURE_MODE": "hybrid",
		"MAX_PATTERN_LENGTH": "0", "RECALL_THRESHOLD": "0.1", "SORT": "true", "PROCESS_PREDICTIONS": "true", "LOG_LEVEL": "INFO",
		"CLICKHOUSE_HOST": "ch.example", "CLICKHOUSE_PORT": "9440", "CLICKHOUSE_DB": "kato_kb", "CLICKHOUSE_USER": "kato",
		"CLICKHOUSE_PASSWORD": `ch"pa$s`, "CLICKHOUSE_SECURE": "true",
		"REDIS_URL": "rediss://:r%24dis@redis.example:6380/2", "REDIS_ENABLED": "true", "REDIS_TLS": "true",
		"QDRANT_HOST": "qdrant.example", "QDRANT_PORT": "6333", "QDRANT_API_KEY": "q-key", "QDRANT_HTTPS": "false",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"MONGO_BASE_URL", "MANIFEST", "REST_PORT", "ZMQ_PORT"} {
		if _, ok := got[k]; ok {
			t.Errorf("generation C got %s=%q, which it does not read", k, got[k])
		}
	}
}

// TestRenderEnvironmentGenerationCWithoutStores checks that without a
// Redis, generation C is told so (sessions stay in its memory) and gets no
// store variables at all.
func TestRenderEnvironmentGenerationCWithoutStores(t *testing.T) {
	env := cEnv
	env.Stores = Stores{}
	got := envMap(decodeEnvFile(t, RenderEnvironment(env)))
	if got["REDIS_ENABLED"] != "false" {
		t.Errorf("REDIS_ENABLED = %q, want false", got["REDIS_ENABLED"])
	}
	for k := range got {
		if strings.HasPrefix(k, "CLICKHOUSE_") || strings.HasPrefix(k, "QDRANT_") || k == "REDIS_URL" {
			t.Errorf("got %s without that store", k)
		}
	}
}

func TestStoreRule(t *testing.T) {
	for _, tc := range []struct {
		name, store, url string
		ok               bool
	}{
		{"empty", "redis", "", true},
		{"redis", "redis", "redis://127.0.0.1:6379/0", true},
		{"redis with user", "redis", "redis://kato:secret@127.0.0.1", true},
		{"redis over http", "redis", "http://127.0.0.1:6379", false},
		{"redis without host", "redis", "redis:///0", false},
		{"redis bad port", "redis", "redis://h:99999", false},
		{"clickhouse", "clickhouse", "http://default@127.0.0.1:8123/kato", true},
		{"clickhouse native scheme", "clickhouse", "tcp://127.0.0.1:9000", false},
		{"clickhouse nested path", "clickhouse", "http://h/a/b", false},
		{"qdrant", "qdrant", "https://:key@q:6334", true},
		{"qdrant with path", "qdrant", "http://q:6333/collections", false},
		{"query", "qdrant", "http://q:6333?x=1", false},
		{"newline", "redis", "redis://h:1\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rule := StoreRule(tc.store, tc.url)
			if (rule == "") != tc.ok {
				t.Errorf("StoreRule(%q, %q) = %q, want ok=%v", tc.store, tc.url, rule, tc.ok)
			}
		})
	}
}

func TestProcessorEnvValidateGenerationC(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*ProcessorEnv)
		wantErr string
	}{
		{"no service name", func(e *ProcessorEnv) { e.ServiceName = "" }, `invalid service_name "": must be 1 to 64 letters`},
		{"service name with a slash", func(e *ProcessorEnv) { e.ServiceName = "a/b" }, `invalid service_name "a/b"`},
		{"no workers", func(e *ProcessorEnv) { e.Workers = 0 }, "invalid workers 0: must be at least 1"},
		// The password never shows in the message.
		{"bad store", func(e *ProcessorEnv) { e.Stores.RedisURL = "http://:hunter2@h:1" }, "invalid stores.redis_url http://REDACTED@h:1: must be redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := cEnv
			tc.change(&env)
			err := env.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestGenerationCKeysOrder keeps the file stable: the same env renders the
// same variables in the same order.
func TestGenerationCKeysOrder(t *testing.T) {
	var keys []string
	for _, a := range decodeEnvFile(t, RenderEnvironment(cEnv)) {
		keys = append(keys, a.key)
	}
	i := slices.Index(keys, "SERVICE_NAME")
	if i < 0 || !slices.Equal(keys[i:i+4], []string{"SERVICE_NAME", "KATO_WORKERS", "KATO_ARCHITECTURE_MODE", "CLICKHOUSE_HOST"}) || keys[len(keys)-1] != "PORT" {
		t.Errorf("variables = %q", keys)
	}
}
