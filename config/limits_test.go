package config

import (
	"errors"
	"strings"
	"testing"
)

func TestLimitsFromFile(t *testing.T) {
	path := writeFile(t, "kato.toml", "[limits]\ninstance_memory_max = \"1G\"\nworker_tasks_max = 32\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultLimits()
	want.InstanceMemoryMax, want.WorkerTasksMax = "1G", 32
	if c.Limits != want {
		t.Fatalf("limits = %+v, want %+v", c.Limits, want)
	}
}

func TestLimitsRejected(t *testing.T) {
	for _, tc := range []struct{ name, toml, want string }{
		{"memory below 64M", `instance_memory_max = "63M"`, `invalid limits.instance_memory_max 63M: must be "infinity" or a size`},
		{"memory no number", `worker_memory_max = "M"`, "invalid limits.worker_memory_max M"},
		{"memory unit", `worker_memory_max = "512MB"`, "invalid limits.worker_memory_max 512MB"},
		{"memory negative", `worker_memory_max = "-1G"`, "invalid limits.worker_memory_max -1G"},
		{"memory percent", `worker_memory_max = "50%"`, "invalid limits.worker_memory_max 50%"},
		{"memory overflow", `instance_memory_max = "99999999999999999T"`, "invalid limits.instance_memory_max"},
		{"memory empty", `instance_memory_max = ""`, `invalid limits.instance_memory_max ""`},
		{"memory as a number", `instance_memory_max = 512`, "line 2"},
		{"memory nan", `instance_memory_max = nan`, "line 2"},
		{"tasks zero", `instance_tasks_max = 0`, "invalid limits.instance_tasks_max 0: must be between 16 and 4194304"},
		{"tasks too many", `worker_tasks_max = 4194305`, "invalid limits.worker_tasks_max 4194305"},
		{"tasks inf", `worker_tasks_max = inf`, "line 2"},
		{"tasks float", `worker_tasks_max = 64.5`, "line 2"},
		{"unknown key", `memory_max = "1G"`, "unknown key limits.memory_max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, "kato.toml", "[limits]\n"+tc.toml+"\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Load = %v, want a malformed-file error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"64M", 64 << 20, true},
		{"1G", 1 << 30, true},
		{"2T", 2 << 40, true},
		{"1048576", 1 << 20, true},
		{"16777216T", 0, false}, // 2^64
		{"", 0, false},
		{"K", 0, false},
		{"1.5G", 0, false},
		{"+1G", 0, false},
	} {
		got, ok := parseSize(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseSize(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestNonFiniteNumbersRejected: NaN and ±Inf are refused wherever a number
// is read, in the file, the environment and the registry.
func TestNonFiniteNumbersRejected(t *testing.T) {
	for _, tc := range []struct{ name, toml, want string }{
		{"ready timeout nan", "[processor]\nready_timeout = nan", "invalid processor.ready_timeout NaN"},
		{"ready timeout inf", "[processor]\nready_timeout = inf", "invalid processor.ready_timeout +Inf"},
		{"ready timeout -inf", "[processor]\nready_timeout = -inf", "invalid processor.ready_timeout -Inf"},
		{"recall threshold nan", "[defaults]\nrecall_threshold = nan", "invalid defaults.recall_threshold NaN"},
		{"recall threshold inf", "[defaults]\nrecall_threshold = +inf", "invalid defaults.recall_threshold +Inf"},
		{"poll interval nan", "[kg]\npoll_interval = nan", "invalid kg.poll_interval NaN"},
		{"lease inf", "[kg]\nlease_seconds = inf", "invalid kg.lease_seconds +Inf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, "kato.toml", tc.toml+"\n"))
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want %q", err, tc.want)
			}
		})
	}
	for _, env := range []struct{ key, value string }{
		{"KG_POLL_INTERVAL", "NaN"}, {"KG_SERVICE_TIMEOUT", "+Inf"}, {"KG_LEASE_SECONDS", "-Inf"},
	} {
		c := Default()
		err := c.ApplyEnv(func(k string) string {
			if k == env.key {
				return env.value
			}
			return ""
		})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != env.key {
			t.Errorf("%s=%s: %v", env.key, env.value, err)
		}
	}
	f := OpenRegistry(writeFile(t, "instances.toml", "[instances.a]\nname = \"A\"\nunit = \"kato@a.service\"\napi_port = 8000\nzmq_port = 5555\n"+
		"created = 2026-01-01T00:00:00Z\nupdated = 2026-01-01T00:00:00Z\n[instances.a.parameters]\nrecall_threshold = nan\n"))
	if _, err := f.Load(); err == nil || !strings.Contains(err.Error(), "recall_threshold NaN") {
		t.Errorf("registry with a NaN threshold: %v", err)
	}
}
