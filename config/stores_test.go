package config

import (
	"strings"
	"testing"
)

// TestLoadGenerationC: a generation-C processor gets its defaults (the
// /health ready request, a stop bounded by 35 s, the host network, one
// worker), reads workers and service_name, and [stores] loads.
func TestLoadGenerationC(t *testing.T) {
	path := writeFile(t, "kato.toml", `
[processors.kb]
command = ["/usr/bin/uvicorn", "kato.services.kato_fastapi:app", "--host", "0.0.0.0"]
generation = "c"

[processors.kb4]
command = ["/usr/bin/uvicorn", "kato.services.kato_fastapi:app"]
generation = "c"
workers = 4
service_name = "main-kb"

[stores]
redis_url = "redis://:secret@127.0.0.1:6379/0"
clickhouse_url = "http://kato:secret@127.0.0.1:8123/kato"
qdrant_url = "http://127.0.0.1:6333"
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	kb := c.Processors["kb"]
	if kb.Ready != "GET /health" || kb.StopTimeout != 35 || kb.Network != NetworkHost || kb.Workers != 1 || kb.ServiceName != "" {
		t.Errorf("kb = %+v", kb)
	}
	if kb4 := c.Processors["kb4"]; kb4.Workers != 4 || kb4.ServiceName != "main-kb" {
		t.Errorf("kb4 = %+v", kb4)
	}
	if c.Stores.Redis != "redis://:secret@127.0.0.1:6379/0" || c.Stores.Qdrant != "http://127.0.0.1:6333" {
		t.Errorf("stores = %+v", c.Stores)
	}
	if got := kb.ServiceNameOf(Instance{ID: "kb-1", Group: "edge"}); got != "edge" {
		t.Errorf("service name in group edge = %q", got)
	}
	if got := kb.ServiceNameOf(Instance{ID: "kb-1"}); got != "kb-1" {
		t.Errorf("service name alone = %q", got)
	}
	if got := c.Processors["kb4"].ServiceNameOf(Instance{ID: "kb-1", Group: "edge"}); got != "main-kb" {
		t.Errorf("named service = %q", got)
	}
}

func TestLoadRejectsGenerationC(t *testing.T) {
	const c = "[processor]\ncommand = [\"/usr/bin/uvicorn\"]\ngeneration = \"c\"\n"
	for _, tc := range []struct {
		name, file, want string
	}{
		{"workers of generation b", "[processor]\nworkers = 2\n", "line 2: invalid processor.workers 2: must not be set for a generation-b processor"},
		{"service name of generation a", "[processor]\ngeneration = \"a\"\nservice_name = \"x\"\n", "line 3: invalid processor.service_name x: must not be set for a generation-a processor"},
		{"no workers", c + "workers = 0\n", "line 4: invalid processor.workers 0: must be between 1 and 64"},
		{"too many workers", c + "workers = 65\n", "invalid processor.workers 65: must be between 1 and 64"},
		{"bad service name", c + "service_name = \"a b\"\n", `invalid processor.service_name "a b": must be 1 to 64 letters`},
		{"private network", c + "network = \"private\"\n", "invalid processor.network private: must be host for a generation-c processor"},
		{"redis over http", "[stores]\nredis_url = \"http://:hunter2@h:6379\"\n", "line 2: invalid stores.redis_url http://REDACTED@h:6379: must be redis[s]://"},
		{"clickhouse native port scheme", "[stores]\nclickhouse_url = \"tcp://h:9000\"\n", "invalid stores.clickhouse_url tcp://h:9000: must be http[s]://"},
		{"misspelt store", "[stores]\nredis = \"redis://h\"\n", "unknown key stores.redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, "kato.toml", tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load() = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows a password: %v", err)
			}
		})
	}
}
