package config

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// writeFile writes content to name in a fresh temporary directory and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"processor.command", c.Processor.Command, []string{"/usr/bin/python3", "-m", "kato.services.kato_fastapi"}},
		{"processor.log_level", c.Processor.LogLevel, ""},
		{"processor.generation", c.Processor.Generation, "b"},
		{"processor.ready", c.Processor.Ready, "GET /health"},
		{"processor.stop_timeout", c.Processor.StopTimeout, 3.0},
		{"processor.network", c.Processor.Network, "host"},
		{"processor.ready_timeout", c.Processor.ReadyTimeout, 60.0},
		{"defaults", c.Defaults, DefaultParameters()},
		{"ports", c.Ports, Ports{APIStart: 8000, APIEnd: 8999, ZMQStart: 5555, ZMQEnd: 6554}},
		{"services.units", c.Services.Units, []string{"mongod.service"}},
		{"services.mongo_url", c.Services.MongoURL, "mongodb://localhost:27017"},
		{"kg", c.KG, KG{
			NumWorkers: 1, PollInterval: 5, ServiceEnabled: true, ServiceURL: "http://localhost:8088",
			ServiceTimeout: 1800, MaxRetries: 3, BatchSize: 5, Concurrency: 1, LeaseSeconds: 60, DBPath: "/var/lib/kato/kg/kg.db",
		}},
		{"path", c.Path, ""},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Fatalf("got %#v, want %#v", tc.got, tc.want)
			}
		})
	}
	t.Run("fresh slices", func(t *testing.T) {
		a := Default()
		a.Processor.Command[0] = "/changed"
		a.Services.Units[0] = "changed.service"
		if b := Default(); b.Processor.Command[0] != "/usr/bin/python3" || b.Services.Units[0] != "mongod.service" {
			t.Fatalf("Default() shares slices between calls: %v %v", b.Processor.Command, b.Services.Units)
		}
	})
}

func TestDefaultFileEqualsDefault(t *testing.T) {
	path := writeFile(t, "kato.toml", string(DefaultFile))
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load(default file) = %v", err)
	}
	want := Default()
	want.Path = path
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("default file loads as\n%#v\nwant\n%#v", got, want)
	}
}

// tomlKeys lists the key path of every leaf setting in a struct type.
func tomlKeys(typ reflect.Type, prefix []string) [][]string {
	var keys [][]string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" || name == "" {
			continue
		}
		key := append(append([]string{}, prefix...), name)
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, tomlKeys(f.Type, key)...)
			continue
		}
		keys = append(keys, key)
	}
	return keys
}

func TestDefaultFileSetsEveryKey(t *testing.T) {
	var c Config
	md, err := toml.Decode(string(DefaultFile), &c)
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]string
	for _, key := range tomlKeys(reflect.TypeOf(Config{}), nil) {
		switch strings.Join(key, ".") {
		case "processor.log_level", "processor.workers", "processor.service_name", "processors", "defaults", "groups":
			// The old place of defaults.log_level, and the named
			// processors, which the file shows in a comment; [defaults] is
			// checked key by key below.
			continue
		}
		keys = append(keys, key)
	}
	for _, p := range Params {
		keys = append(keys, []string{"defaults", p.Name})
	}
	if len(keys) != 35+len(Params) {
		t.Fatalf("found %d settings, want %d: %v", len(keys), 35+len(Params), keys)
	}
	for _, key := range keys {
		t.Run(strings.Join(key, "."), func(t *testing.T) {
			if !md.IsDefined(key...) {
				t.Fatalf("kato.toml does not set %s", strings.Join(key, "."))
			}
			line := KeyLine(DefaultFile, key)
			lines := strings.Split(string(DefaultFile), "\n")
			if line < 2 || !strings.HasPrefix(lines[line-2], "# ") {
				t.Fatalf("%s on line %d has no comment line above it", strings.Join(key, "."), line)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "kato.toml")
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load(missing) = %v", err)
	}
	want := Default()
	want.Path = path
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load(missing) = %#v, want %#v", got, want)
	}
}

func TestLoadPartialKeepsDefaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   string
		change func(*Config)
	}{
		{"empty file", "", func(*Config) {}},
		{"comments only", "# nothing set\n", func(*Config) {}},
		{"old processor log level", "[processor]\nlog_level = \"DEBUG\"\n", func(c *Config) { c.Processor.LogLevel = "DEBUG"; c.Defaults["log_level"] = "DEBUG" }},
		{"defaults log level wins", "[processor]\nlog_level = \"DEBUG\"\n[defaults]\nlog_level = \"ERROR\"\n", func(c *Config) { c.Processor.LogLevel = "DEBUG"; c.Defaults["log_level"] = "ERROR" }},
		{"one parameter", "[defaults]\nrecall_threshold = 0.3\n", func(c *Config) { c.Defaults["recall_threshold"] = 0.3 }},
		{"integer for a float parameter", "[defaults]\nauto_act_threshold = 1\n", func(c *Config) { c.Defaults["auto_act_threshold"] = 1.0 }},
		{"old name max_seq_length", "[defaults]\nmax_seq_length = 12\n", func(c *Config) { c.Defaults["max_pattern_length"] = 12 }},
		{"generation a takes its defaults", "[processor]\ngeneration = \"a\"\n", func(c *Config) {
			c.Processor.Generation, c.Processor.Ready, c.Processor.StopTimeout, c.Processor.Network = "a", "GET /{id}/ping", 10, "private"
		}},
		{"generation a on the host network", "[processor]\ngeneration = \"a\"\nnetwork = \"host\"\n", func(c *Config) {
			c.Processor.Generation, c.Processor.Ready, c.Processor.StopTimeout, c.Processor.Network = "a", "GET /{id}/ping", 10, "host"
		}},
		{"named processor", "[processors.v1]\ncommand = [\"/opt/v1/kato\"]\ngeneration = \"a\"\nstop_timeout = 4\n", func(c *Config) {
			c.Processors = map[string]Processor{"v1": {Command: []string{"/opt/v1/kato"}, Generation: "a", Ready: "GET /{id}/ping", ReadyTimeout: 60, StopTimeout: 4, Network: "private",
				LivenessInterval: 10, LivenessTimeout: 2}}
		}},
		{"links", "[services]\nlinks = { qdrant = \"127.0.0.1:6333\" }\n", func(c *Config) { c.Services.Links = map[string]string{"qdrant": "127.0.0.1:6333"} }},
		{"shorter command", "[processor]\ncommand = [\"/opt/kato/bin/kato\"]\n", func(c *Config) { c.Processor.Command = []string{"/opt/kato/bin/kato"} }},
		{"no shared units", "[services]\nunits = []\n", func(c *Config) { c.Services.Units = []string{} }},
		{"kg subset", "[kg]\nnum_workers = 4\nservice_enabled = false\n", func(c *Config) {
			c.KG.NumWorkers = 4
			c.KG.ServiceEnabled = false
		}},
		{"integer for a float", "[kg]\npoll_interval = 2\n", func(c *Config) { c.KG.PollInterval = 2 }},
		{"api range only", "[ports]\napi_start = 9000\napi_end = 9099\n", func(c *Config) {
			c.Ports.APIStart, c.Ports.APIEnd = 9000, 9099
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "kato.toml", tc.file)
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			want := Default()
			want.Path = path
			tc.change(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Load() = %#v\nwant %#v", got, want)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		want []string // substrings of the error besides the path
	}{
		{"unknown section", "[processor]\nlog_level = \"INFO\"\n\n[webui]\nport = 1\n", []string{"line 4:", "unknown key webui: kato.toml has no such key"}},
		{"misspelt key", "[kg]\nnum_workers = 2\nnum_worker = 3\n", []string{"line 3: unknown key kg.num_worker: [kg] has no such key; did you mean kg.num_workers?"}},
		{"misspelt section", "[limit]\ninstance_tasks_max = 64\n", []string{"line 1: unknown key limit: kato.toml has no such key; did you mean limits?"}},
		{"misspelt key of a named processor", "[processors.v1]\ncommand = [\"/bin/true\"]\nstop_timout = 3\n", []string{"line 3: unknown key processors.v1.stop_timout: [processors.v1] has no such key; did you mean processors.v1.stop_timeout?"}},
		{"misspelt key of a nested table", "[kg]\n[kg.retry]\nmax = 1\n", []string{"unknown key kg.retry"}},
		{"top-level key", "verbose = true\n", []string{"line 1:", "unknown key verbose"}},
		{"unterminated string", "[processor]\nlog_level = \"INFO\n", []string{"line 2:"}},
		{"missing equals", "[ports]\napi_start = 8000\napi_end 8999\n", []string{"line 3:"}},
		{"duplicate key", "[kg]\nbatch_size = 5\nbatch_size = 6\n", []string{"line 3:"}},
		{"wrong type", "\n[ports]\napi_start = \"8000\"\n", []string{"line 3", "ports.api_start"}},
		{"invalid value", "[defaults]\nmax_predictions = 100\n\nrecall_threshold = 1.5\n", []string{"line 4: invalid defaults.recall_threshold 1.5: must be between 0 and 1"}},
		{"unknown parameter", "[defaults]\nmax_predictions = 100\nsmoothnes = 2\n", []string{"line 3: invalid defaults.smoothnes 2: is not a processor parameter", "did you mean smoothness?"}},
		{"parameter of the wrong type", "[defaults]\nsort = \"yes\"\n", []string{"line 2: invalid defaults.sort yes: must be true or false"}},
		{"old and new name", "[defaults]\nmax_seq_length = 1\nmax_pattern_length = 2\n", []string{"line 2: invalid defaults.max_seq_length 1: is the old name of max_pattern_length"}},
		{"named processor without command", "[processors.v1]\ngeneration = \"a\"\n", []string{"invalid processors.v1.command []: must name the processor program"}},
		{"named processor called default", "[processors.default]\ncommand = [\"/bin/true\"]\n", []string{"invalid processors default: name is the name of [processor]"}},
		{"unknown generation", "[processor]\ngeneration = \"d\"\n", []string{"line 2: invalid processor.generation d: must be a, b or c"}},
		{"ready not a GET", "[processor]\nready = \"POST /x\"\n", []string{"line 2: invalid processor.ready \"POST /x\": must be GET followed by a path"}},
		{"unknown network", "[processor]\nnetwork = \"bridge\"\n", []string{"line 2: invalid processor.network bridge: must be host or private"}},
		{"invalid nested list entry", "[services]\nunits = [\"mongod.service\", \"redis\"]\n", []string{"line 2: invalid services.units redis:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "kato.toml", tc.file)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load() = %+v, want an error", c)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the file %s", msg, path)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestLoadValidationErrorIsFieldError(t *testing.T) {
	path := writeFile(t, "kato.toml", "[ports]\napi_start = 0\n")
	_, err := Load(path)
	wantFieldError(t, err, "ports.api_start", "0", "must be between 1 and 65535")
	if !strings.Contains(err.Error(), path+": line 2: ") {
		t.Fatalf("error %q does not name file and line", err)
	}
}

func TestConfigValidate(t *testing.T) {
	const portRule = "must be between 1 and 65535"
	const unitRule = "must be a systemd unit name of letters, digits and :-_.\\@ ending in a unit type such as .service"
	const mongoRule = "must be a mongodb:// or mongodb+srv:// connection string"
	const urlRule = "must be an absolute http or https URL"
	const dbURLRule = "must be a postgres:// or postgresql:// URL naming a database (postgres://USER:PASSWORD@HOST:PORT/DATABASE), or empty for the SQLite file at kg.db_path"
	for _, tc := range []struct {
		name   string
		change func(*Config)
		field  string // "" when valid
		value  string
		rule   string
	}{
		{"command empty", func(c *Config) { c.Processor.Command = nil }, "processor.command", "[]", "must name the processor program"},
		{"command relative", func(c *Config) { c.Processor.Command = []string{"python3", "-m", "kato"} }, "processor.command", "python3", "must start with an absolute program path"},
		{"command empty program", func(c *Config) { c.Processor.Command = []string{""} }, "processor.command", "", "must start with an absolute program path"},
		{"command newline in argument", func(c *Config) { c.Processor.Command = []string{"/bin/kato", "a\nb"} }, "processor.command", "a\nb", "must not contain control characters"},
		{"command with spaces in argument", func(c *Config) { c.Processor.Command = []string{"/opt/my kato/run", "--flag=a b"} }, "", "", ""},
		{"log level unknown", func(c *Config) { c.Processor.LogLevel = "TRACE" }, "processor.log_level", "TRACE", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"},
		{"log level lower case", func(c *Config) { c.Processor.LogLevel = "info" }, "processor.log_level", "info", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"},
		{"log level critical", func(c *Config) { c.Processor.LogLevel = "CRITICAL" }, "", "", ""},
		{"ready timeout zero", func(c *Config) { c.Processor.ReadyTimeout = 0 }, "processor.ready_timeout", "0", "must be greater than 0"},
		{"ready timeout infinite", func(c *Config) { c.Processor.ReadyTimeout = math.Inf(1) }, "processor.ready_timeout", "+Inf", "must be a finite number of seconds"},
		{"stop timeout zero", func(c *Config) { c.Processor.StopTimeout = 0 }, "processor.stop_timeout", "0", "must be greater than 0"},
		{"defaults prefixed", func(c *Config) { c.Defaults["recall_threshold"] = 1.5 }, "defaults.recall_threshold", "1.5", "must be between 0 and 1"},
		{"defaults indexer", func(c *Config) { c.Defaults["indexer_type"] = "HNSW" }, "defaults.indexer_type", "HNSW", "must be VI"},
		{"named processor bad network", func(c *Config) {
			p := c.Processor
			p.Network = "none"
			c.Processors = map[string]Processor{"v2": p}
		}, "processors.v2.network", "none", "must be host or private"},
		{"named processor bad name", func(c *Config) { c.Processors = map[string]Processor{"a.b": c.Processor} }, "processors", "a.b", "name must contain only letters, digits, '-' and '_'"},
		{"link name", func(c *Config) { c.Services.Links = map[string]string{"Q": "h:1"} }, "services.links", "Q", "name must contain only lower-case letters, digits and '-'"},
		{"link address", func(c *Config) { c.Services.Links = map[string]string{"q": "h"} }, "services.links.q", "h", "must be host:port"},
		{"api start zero", func(c *Config) { c.Ports.APIStart = 0 }, "ports.api_start", "0", portRule},
		{"api end too high", func(c *Config) { c.Ports.APIEnd = 65536 }, "ports.api_end", "65536", portRule},
		{"zmq start negative", func(c *Config) { c.Ports.ZMQStart = -1 }, "ports.zmq_start", "-1", portRule},
		{"zmq end too high", func(c *Config) { c.Ports.ZMQEnd = 70000 }, "ports.zmq_end", "70000", portRule},
		{"api range reversed", func(c *Config) { c.Ports.APIEnd = 7999 }, "ports.api_end", "7999", "must not be below ports.api_start 8000"},
		{"zmq range reversed", func(c *Config) { c.Ports.ZMQEnd = 5554 }, "ports.zmq_end", "5554", "must not be below ports.zmq_start 5555"},
		{"single port ranges", func(c *Config) { c.Ports = Ports{APIStart: 8000, APIEnd: 8000, ZMQStart: 8001, ZMQEnd: 8001} }, "", "", ""},
		{"ranges overlap", func(c *Config) { c.Ports.ZMQEnd = 8000 }, "ports.zmq_start", "5555", "zmq range 5555-8000 must not overlap api range 8000-8999"},
		{"zmq inside api", func(c *Config) { c.Ports.ZMQStart, c.Ports.ZMQEnd = 8100, 8200 }, "ports.zmq_start", "8100", "zmq range 8100-8200 must not overlap api range 8000-8999"},
		{"api inside zmq", func(c *Config) { c.Ports.APIStart, c.Ports.APIEnd = 6000, 6001 }, "ports.zmq_start", "5555", "zmq range 5555-6554 must not overlap api range 6000-6001"},
		{"units several types", func(c *Config) {
			c.Services.Units = []string{"mongod.service", "redis-server.service", "kato-data.mount", "net@eth0.service", `dev-disk-by\x2dlabel-data.device`, "network-online.target"}
		}, "", "", ""},
		{"unit without suffix", func(c *Config) { c.Services.Units = []string{"mongod"} }, "services.units", "mongod", unitRule},
		{"unit unknown suffix", func(c *Config) { c.Services.Units = []string{"mongod.daemon"} }, "services.units", "mongod.daemon", unitRule},
		{"unit only suffix", func(c *Config) { c.Services.Units = []string{".service"} }, "services.units", ".service", unitRule},
		{"unit with space", func(c *Config) { c.Services.Units = []string{"mongo d.service"} }, "services.units", "mongo d.service", unitRule},
		{"unit with slash", func(c *Config) { c.Services.Units = []string{"../mongod.service"} }, "services.units", "../mongod.service", unitRule},
		{"unit two at signs", func(c *Config) { c.Services.Units = []string{"a@b@c.service"} }, "services.units", "a@b@c.service", unitRule},
		{"unit template without instance", func(c *Config) { c.Services.Units = []string{"kato@.service"} }, "services.units", "kato@.service", "must name a template instance, e.g. foo@bar.service"},
		{"unit too long", func(c *Config) { c.Services.Units = []string{strings.Repeat("m", 248) + ".service"} }, "services.units", strings.Repeat("m", 248) + ".service", "must be at most 255 characters long"},
		{"unit listed twice", func(c *Config) { c.Services.Units = []string{"mongod.service", "mongod.service"} }, "services.units", "mongod.service", "must not be listed twice"},
		{"mongo srv", func(c *Config) {
			c.Services.MongoURL = "mongodb+srv://user:pw@cluster.example.net/kato?retryWrites=true"
		}, "", "", ""},
		{"mongo replica set", func(c *Config) { c.Services.MongoURL = "mongodb://h1:27017,h2:27017/?replicaSet=rs0" }, "", "", ""},
		{"mongo wrong scheme", func(c *Config) { c.Services.MongoURL = "http://localhost:27017" }, "services.mongo_url", "http://localhost:27017", mongoRule},
		{"mongo no host", func(c *Config) { c.Services.MongoURL = "mongodb://" }, "services.mongo_url", "mongodb://", mongoRule},
		{"mongo newline", func(c *Config) { c.Services.MongoURL = "mongodb://localhost\nX=1" }, "services.mongo_url", "mongodb://localhost\nX=1", mongoRule},
		{"kg workers zero", func(c *Config) { c.KG.NumWorkers = 0 }, "kg.num_workers", "0", "must be between 1 and 64"},
		{"kg workers 65", func(c *Config) { c.KG.NumWorkers = 65 }, "kg.num_workers", "65", "must be between 1 and 64"},
		{"kg workers 64", func(c *Config) { c.KG.NumWorkers = 64 }, "", "", ""},
		{"kg poll interval negative", func(c *Config) { c.KG.PollInterval = -5 }, "kg.poll_interval", "-5", "must be a number of seconds from 0.01 to 3600"},
		{"kg poll interval NaN", func(c *Config) { c.KG.PollInterval = math.NaN() }, "kg.poll_interval", "NaN", "must be a number of seconds from 0.01 to 3600"},
		{"kg service disabled", func(c *Config) { c.KG.ServiceEnabled = false }, "", "", ""},
		{"kg url relative", func(c *Config) { c.KG.ServiceURL = "/kg" }, "kg.service_url", "/kg", urlRule},
		{"kg url no host", func(c *Config) { c.KG.ServiceURL = "http://:8088" }, "kg.service_url", "http://:8088", urlRule},
		{"kg url ftp", func(c *Config) { c.KG.ServiceURL = "ftp://kg.example" }, "kg.service_url", "ftp://kg.example", urlRule},
		{"kg url empty", func(c *Config) { c.KG.ServiceURL = "" }, "kg.service_url", "", urlRule},
		{"kg url https with path", func(c *Config) { c.KG.ServiceURL = "https://kg.example:8443/api" }, "", "", ""},
		{"kg service timeout zero", func(c *Config) { c.KG.ServiceTimeout = 0 }, "kg.service_timeout", "0", "must be a number of seconds from 1 to 86400"},
		{"kg max retries negative", func(c *Config) { c.KG.MaxRetries = -1 }, "kg.max_retries", "-1", "must be between 0 and 100"},
		{"kg max retries zero", func(c *Config) { c.KG.MaxRetries = 0 }, "", "", ""},
		{"kg batch size zero", func(c *Config) { c.KG.BatchSize = 0 }, "kg.batch_size", "0", "must be between 1 and 1000"},
		{"kg batch size 1001", func(c *Config) { c.KG.BatchSize = 1001 }, "kg.batch_size", "1001", "must be between 1 and 1000"},
		{"kg lease zero", func(c *Config) { c.KG.LeaseSeconds = 0 }, "kg.lease_seconds", "0", "must be a number of seconds from 1 to 86400"},
		{"kg db path relative", func(c *Config) { c.KG.DBPath = "kg.db" }, "kg.db_path", "kg.db", "must be an absolute path"},
		{"kg db path empty", func(c *Config) { c.KG.DBPath = "" }, "kg.db_path", "", "must be an absolute path"},
		{"kg db url postgres", func(c *Config) { c.KG.DBURL = "postgres://kato:secret@db.example:5432/kato" }, "", "", ""},
		{"kg db url socket", func(c *Config) { c.KG.DBURL = "postgresql:///kato?host=/run/postgresql" }, "", "", ""},
		{"kg db url mysql", func(c *Config) { c.KG.DBURL = "mysql://kato:secret@db/kato" }, "kg.db_url", "mysql://REDACTED@db/kato", dbURLRule},
		{"kg db url no database", func(c *Config) { c.KG.DBURL = "postgres://kato:secret@db.example/" }, "kg.db_url", "postgres://REDACTED@db.example/", dbURLRule},
		{"kg db url password parameter", func(c *Config) { c.KG.DBURL = "postgres://db/?password=secret" }, "kg.db_url", "postgres://db/?password=REDACTED", dbURLRule},
		{"kg db url a path", func(c *Config) { c.KG.DBURL = "/var/lib/kato/kg/kg.db" }, "kg.db_url", "/var/lib/kato/kg/kg.db", dbURLRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(c)
			err := c.Validate()
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

func TestApplyEnv(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    map[string]string
		change func(*KG)
	}{
		{"nothing set", nil, func(*KG) {}},
		{"empty values are unset", map[string]string{"KG_NUM_WORKERS": "", "DB_PATH": ""}, func(*KG) {}},
		{"KG_NUM_WORKERS", map[string]string{"KG_NUM_WORKERS": "8"}, func(k *KG) { k.NumWorkers = 8 }},
		{"KG_NUM_WORKERS with spaces", map[string]string{"KG_NUM_WORKERS": " 8\n"}, func(k *KG) { k.NumWorkers = 8 }},
		{"KG_POLL_INTERVAL", map[string]string{"KG_POLL_INTERVAL": "0.5"}, func(k *KG) { k.PollInterval = 0.5 }},
		{"KG_SERVICE_ENABLED false", map[string]string{"KG_SERVICE_ENABLED": "false"}, func(k *KG) { k.ServiceEnabled = false }},
		{"KG_SERVICE_ENABLED 0", map[string]string{"KG_SERVICE_ENABLED": "0"}, func(k *KG) { k.ServiceEnabled = false }},
		{"KG_SERVICE_ENABLED No", map[string]string{"KG_SERVICE_ENABLED": "No"}, func(k *KG) { k.ServiceEnabled = false }},
		{"KG_SERVICE_ENABLED TRUE", map[string]string{"KG_SERVICE_ENABLED": "TRUE"}, func(*KG) {}},
		{"KG_SERVICE_URL", map[string]string{"KG_SERVICE_URL": "https://kg.internal:9443"}, func(k *KG) { k.ServiceURL = "https://kg.internal:9443" }},
		{"KG_SERVICE_TIMEOUT", map[string]string{"KG_SERVICE_TIMEOUT": "30"}, func(k *KG) { k.ServiceTimeout = 30 }},
		{"KG_MAX_RETRIES", map[string]string{"KG_MAX_RETRIES": "0"}, func(k *KG) { k.MaxRetries = 0 }},
		{"KG_BATCH_SIZE", map[string]string{"KG_BATCH_SIZE": "1000"}, func(k *KG) { k.BatchSize = 1000 }},
		{"KG_LEASE_SECONDS", map[string]string{"KG_LEASE_SECONDS": "120.5"}, func(k *KG) { k.LeaseSeconds = 120.5 }},
		{"KG_CONCURRENCY", map[string]string{"KG_CONCURRENCY": "8"}, func(k *KG) { k.Concurrency = 8 }},
		{"DB_PATH", map[string]string{"DB_PATH": "/srv/kato/queue.db"}, func(k *KG) { k.DBPath = "/srv/kato/queue.db" }},
		{"KG_DB_URL", map[string]string{"KG_DB_URL": "postgres://kato@db/kg"}, func(k *KG) { k.DBURL = "postgres://kato@db/kg" }},
		{"all at once", map[string]string{
			"KG_NUM_WORKERS": "2", "KG_POLL_INTERVAL": "1", "KG_SERVICE_ENABLED": "no", "KG_SERVICE_URL": "http://kg:1",
			"KG_SERVICE_TIMEOUT": "2", "KG_MAX_RETRIES": "7", "KG_BATCH_SIZE": "9", "KG_LEASE_SECONDS": "3", "DB_PATH": "/q.db",
			"KG_CONCURRENCY": "4",
		}, func(k *KG) {
			*k = KG{NumWorkers: 2, PollInterval: 1, ServiceEnabled: false, ServiceURL: "http://kg:1",
				ServiceTimeout: 2, MaxRetries: 7, BatchSize: 9, Concurrency: 4, LeaseSeconds: 3, DBPath: "/q.db"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			if err := c.ApplyEnv(func(k string) string { return tc.env[k] }); err != nil {
				t.Fatalf("ApplyEnv() = %v", err)
			}
			want := Default()
			tc.change(&want.KG)
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("ApplyEnv() gave %#v\nwant %#v", c.KG, want.KG)
			}
		})
	}
}

func TestApplyEnvRejects(t *testing.T) {
	const boolRule = "must be one of true, false, 1, 0, yes, no"
	for _, tc := range []struct {
		name, variable, value string
		wantValue, rule       string
	}{
		{"workers not a number", "KG_NUM_WORKERS", "four", "four", "must be an integer"},
		{"workers fractional", "KG_NUM_WORKERS", "1.5", "1.5", "must be an integer"},
		{"workers zero", "KG_NUM_WORKERS", "0", "0", "must be between 1 and 64"},
		{"workers too many", "KG_NUM_WORKERS", "100", "100", "must be between 1 and 64"},
		{"poll interval not a number", "KG_POLL_INTERVAL", "5s", "5s", "must be a number"},
		{"poll interval zero", "KG_POLL_INTERVAL", "0", "0", "must be a number of seconds from 0.01 to 3600"},
		{"poll interval infinite", "KG_POLL_INTERVAL", "inf", "+Inf", "must be a number of seconds from 0.01 to 3600"},
		{"service enabled word", "KG_SERVICE_ENABLED", "maybe", "maybe", boolRule},
		{"service enabled on", "KG_SERVICE_ENABLED", "on", "on", boolRule},
		{"service url not absolute", "KG_SERVICE_URL", "localhost:8088", "localhost:8088", "must be an absolute http or https URL"},
		{"service timeout negative", "KG_SERVICE_TIMEOUT", "-1", "-1", "must be a number of seconds from 1 to 86400"},
		{"service timeout not a number", "KG_SERVICE_TIMEOUT", "30 minutes", "30 minutes", "must be a number"},
		{"max retries negative", "KG_MAX_RETRIES", "-2", "-2", "must be between 0 and 100"},
		{"max retries word", "KG_MAX_RETRIES", "many", "many", "must be an integer"},
		{"batch size zero", "KG_BATCH_SIZE", "0", "0", "must be between 1 and 1000"},
		{"batch size huge", "KG_BATCH_SIZE", "99999999999999999999", "99999999999999999999", "must be an integer"},
		{"lease zero", "KG_LEASE_SECONDS", "0", "0", "must be a number of seconds from 1 to 86400"},
		{"lease NaN", "KG_LEASE_SECONDS", "NaN", "NaN", "must be a number of seconds from 1 to 86400"},
		{"db path relative", "DB_PATH", "kg.db", "kg.db", "must be an absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			// KG_NUM_WORKERS is applied first; its valid value must not stick
			// when a later variable is rejected.
			env := map[string]string{"KG_NUM_WORKERS": "9"}
			env[tc.variable] = tc.value
			err := c.ApplyEnv(func(k string) string { return env[k] })
			wantFieldError(t, err, tc.variable, tc.wantValue, tc.rule)
			if !reflect.DeepEqual(c, Default()) {
				t.Fatalf("a rejected environment changed the config: %#v", c.KG)
			}
		})
	}
}

// TestBadKGSettings feeds every numeric [kg] setting the values that used
// to slip through (NaN, the infinities, zero, negative, absurdly large) by
// each way a setting arrives: kato.toml, the environment and CheckKG, which
// the command line and the worker use. Each is refused with the setting's
// bound and rule, and nothing is changed.
func TestBadKGSettings(t *testing.T) {
	seconds := func(lo, hi string) string { return "must be a number of seconds from " + lo + " to " + hi }
	for _, tc := range []struct {
		key, env string
		toml     string // the value as TOML writes it
		value    string // the value as the error shows it
		rule     string
	}{
		{"poll_interval", "KG_POLL_INTERVAL", "nan", "NaN", seconds("0.01", "3600")},
		{"poll_interval", "KG_POLL_INTERVAL", "inf", "+Inf", seconds("0.01", "3600")},
		{"poll_interval", "KG_POLL_INTERVAL", "-inf", "-Inf", seconds("0.01", "3600")},
		{"poll_interval", "KG_POLL_INTERVAL", "0.0", "0", seconds("0.01", "3600")},
		{"poll_interval", "KG_POLL_INTERVAL", "-1.0", "-1", seconds("0.01", "3600")},
		{"poll_interval", "KG_POLL_INTERVAL", "1e300", "1e+300", seconds("0.01", "3600")},
		{"poll_interval", "KG_POLL_INTERVAL", "3601.0", "3601", seconds("0.01", "3600")},
		{"service_timeout", "KG_SERVICE_TIMEOUT", "nan", "NaN", seconds("1", "86400")},
		{"service_timeout", "KG_SERVICE_TIMEOUT", "inf", "+Inf", seconds("1", "86400")},
		{"service_timeout", "KG_SERVICE_TIMEOUT", "0.0", "0", seconds("1", "86400")},
		{"service_timeout", "KG_SERVICE_TIMEOUT", "-30.0", "-30", seconds("1", "86400")},
		{"service_timeout", "KG_SERVICE_TIMEOUT", "1e300", "1e+300", seconds("1", "86400")},
		{"lease_seconds", "KG_LEASE_SECONDS", "nan", "NaN", seconds("1", "86400")},
		{"lease_seconds", "KG_LEASE_SECONDS", "-inf", "-Inf", seconds("1", "86400")},
		{"lease_seconds", "KG_LEASE_SECONDS", "0.5", "0.5", seconds("1", "86400")},
		{"lease_seconds", "KG_LEASE_SECONDS", "1e12", "1e+12", seconds("1", "86400")},
		{"num_workers", "KG_NUM_WORKERS", "0", "0", "must be between 1 and 64"},
		{"num_workers", "KG_NUM_WORKERS", "-1", "-1", "must be between 1 and 64"},
		{"num_workers", "KG_NUM_WORKERS", "1000000", "1000000", "must be between 1 and 64"},
		{"max_retries", "KG_MAX_RETRIES", "-1", "-1", "must be between 0 and 100"},
		{"max_retries", "KG_MAX_RETRIES", "2147483647", "2147483647", "must be between 0 and 100"},
		{"batch_size", "KG_BATCH_SIZE", "0", "0", "must be between 1 and 1000"},
		{"batch_size", "KG_BATCH_SIZE", "1000000", "1000000", "must be between 1 and 1000"},
		{"concurrency", "KG_CONCURRENCY", "0", "0", "must be between 1 and 64"},
		{"concurrency", "KG_CONCURRENCY", "-4", "-4", "must be between 1 and 64"},
		{"concurrency", "KG_CONCURRENCY", "65", "65", "must be between 1 and 64"},
	} {
		t.Run(tc.key+"="+tc.toml, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kato.toml")
			if err := os.WriteFile(path, []byte("[kg]\n"+tc.key+" = "+tc.toml+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			wantFieldError(t, err, "kg."+tc.key, tc.value, tc.rule)
			if err != nil && !strings.Contains(err.Error(), "line 2:") {
				t.Errorf("Load error %q does not name line 2", err)
			}

			c := Default()
			envValue := strings.TrimSuffix(strings.TrimSuffix(tc.toml, ".0"), ".5")
			if strings.HasSuffix(tc.toml, ".5") {
				envValue = tc.toml
			}
			err = c.ApplyEnv(func(k string) string {
				if k == tc.env {
					return envValue
				}
				return ""
			})
			wantFieldError(t, err, tc.env, tc.value, tc.rule)
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("a rejected %s changed the config: %#v", tc.env, c.KG)
			}

			// The command line: a value parsed into a copy, checked by the
			// same rule under the flag's name.
			k := Default().KG
			if rule := settingByKey(tc.key).set(&k, envValue); rule != "" {
				t.Fatalf("parse %q: %s", envValue, rule)
			}
			wantFieldError(t, CheckKG(tc.key, "--"+strings.ReplaceAll(tc.key, "_", "-"), &k), "--"+strings.ReplaceAll(tc.key, "_", "-"), tc.value, tc.rule)
		})
	}
	// The bounds themselves pass.
	k := Default().KG
	k.PollInterval, k.ServiceTimeout, k.LeaseSeconds, k.MaxRetries, k.Concurrency = 3600, 86400, 86400, 100, 64
	for _, key := range []string{"poll_interval", "service_timeout", "lease_seconds", "max_retries", "concurrency"} {
		if err := CheckKG(key, key, &k); err != nil {
			t.Errorf("CheckKG(%s) at its bound: %v", key, err)
		}
	}
}

func settingByKey(key string) kgSetting {
	for _, s := range kgSettings {
		if s.key == key {
			return s
		}
	}
	panic("no kg setting " + key)
}

func TestApplyEnvValidatesWholeConfig(t *testing.T) {
	c := Default()
	c.Ports.APIStart = 0
	err := c.ApplyEnv(func(string) string { return "" })
	wantFieldError(t, err, "ports.api_start", "0", "must be between 1 and 65535")
}

func TestSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want time.Duration
	}{
		{5, 5 * time.Second},
		{0.25, 250 * time.Millisecond},
		{1800, 30 * time.Minute},
	} {
		if got := Seconds(tc.in); got != tc.want {
			t.Errorf("Seconds(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestKeyLine(t *testing.T) {
	doc := []byte("# c\n[a]\nx = 1\n\n[a.b]\ny = [\n  1,\n]\n[\"q.r\"]\nz = 2\n")
	for _, tc := range []struct {
		key  []string
		want int
	}{
		{[]string{"a"}, 2},
		{[]string{"a", "x"}, 3},
		{[]string{"a", "b"}, 5},
		{[]string{"a", "b", "y"}, 6},
		{[]string{"q.r", "z"}, 10},
		{[]string{"a", "missing"}, 0},
		{[]string{"a", "x", "deeper"}, 0},
		{nil, 0},
	} {
		t.Run(strings.Join(tc.key, "/"), func(t *testing.T) {
			if got := KeyLine(doc, tc.key); got != tc.want {
				t.Fatalf("KeyLine(%v) = %d, want %d", tc.key, got, tc.want)
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory cannot be read as a file, whatever the user's privileges.
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Load(directory) = %v, want an error naming %s", err, dir)
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(directory) treated as missing: %v", err)
	}
}
