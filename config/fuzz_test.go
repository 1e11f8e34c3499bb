package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// FuzzLoad feeds arbitrary files to the configuration parser: it never
// panics, blames every refusal on the file (ErrMalformed, exit 1), and what
// it accepts passes Validate.
func FuzzLoad(f *testing.F) {
	f.Add(DefaultFile)
	f.Add([]byte("[limits]\ninstance_memory_max = \"1G\"\nworker_tasks_max = 32\n"))
	f.Add([]byte("[processor]\nready_timeout = nan\n"))
	f.Add([]byte("[defaults]\nrecall_threshold = inf\n"))
	f.Add([]byte("[services]\nmongo_url = \"mongodb://u:p@h\"\nunits = []\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "kato.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Load refused a file without ErrMalformed: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a configuration Validate refuses: %v", err)
		}
	})
}

// FuzzDecodeRegistry feeds arbitrary files to the registry parser: it never
// panics, and what it accepts is valid and survives a write and a read
// unchanged.
func FuzzDecodeRegistry(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "instances.golden.toml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add([]byte("[instances.a]\nname = \"A\"\nunit = \"kato@a.service\"\napi_port = 8000\nzmq_port = 5555\ncreated = 2026-01-01T00:00:00Z\nupdated = 2026-01-01T00:00:00Z\n"))
	f.Add([]byte("[instances.a.parameters]\nrecall_threshold = nan\n"))
	f.Add([]byte("[instances.a.parameters]\nmax_predictions = 7\n[instances.a]\nname = \"A\\\"\"\nunit = \"kato@a.service\"\napi_port = 8000\ncreated = 2026-01-01T00:00:00.5+01:00\nupdated = 2026-01-01T00:00:00Z\n[groups.g]\nfront = 9000\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReadersAgree(t, data)
		r, err := decodeRegistry(data)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded a registry Validate refuses: %v", err)
		}
		enc, err := encodeRegistry(r)
		if err != nil {
			t.Fatalf("encode a decoded registry: %v", err)
		}
		again, err := decodeRegistry(enc)
		if err != nil {
			t.Fatalf("the registry written does not read back: %v\n%s", err, enc)
		}
		enc2, err := encodeRegistry(again)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("write, read, write differs (%v):\n%s\n---\n%s", err, enc, enc2)
		}
	})
}

// checkReadersAgree fails when the fast registry reader takes a file the
// full one refuses or reads it otherwise.
func checkReadersAgree(t *testing.T, data []byte) {
	t.Helper()
	fast, ok := decodeRegistryFast(data)
	if !ok {
		return
	}
	full, err := decodeRegistryFull(data)
	if err != nil {
		t.Fatalf("the fast reader took a file the full one refuses (%v):\n%s", err, data)
	}
	if !reflect.DeepEqual(fast, full) {
		t.Fatalf("the readers differ on\n%s\nfast %+v\nfull %+v", data, fast, full)
	}
}

// FuzzRegistryReadersOnWrittenFiles writes registries of arbitrary
// names, commands, groups and parameters: every file the writer writes
// takes the fast reader, which reads what the full one reads.
func FuzzRegistryReadersOnWrittenFiles(f *testing.F) {
	f.Add("Main \"one\"", "/opt/kato/bin/kato", "web", 3, int64(200), 0.1, "VI", 8000, int64(1742000000))
	f.Add("é ñ 中", "/x y", "", 0, int64(-1), 1e-300, "", 1, int64(0))
	f.Fuzz(func(t *testing.T, name, arg, group string, weight int, predictions int64, recall float64, indexer string, port int, unix int64) {
		in := &Instance{ID: "a", Name: name, Unit: "kato@a.service", APIPort: port, Network: NetworkPrivate, Group: group, Weight: weight,
			Command: []string{"/bin/kato", arg}, Parameters: DefaultParameters(),
			Created: time.Unix(unix, 0).UTC(), Updated: time.Unix(unix, 500).In(time.FixedZone("", 3600))}
		in.Parameters["max_predictions"] = int(predictions)
		in.Parameters["recall_threshold"] = recall
		in.Parameters["indexer_type"] = indexer
		r := &Registry{Instances: map[string]*Instance{"a": in}, Groups: map[string]Group{"web": {Front: port + 1, Ready: name}}}
		if r.Validate() != nil {
			return
		}
		data, err := encodeRegistry(r)
		if err != nil {
			return
		}
		if _, ok := decodeRegistryFast(data); !ok {
			_, err := decodeRegistryFull(data)
			if err == nil {
				t.Fatalf("the fast reader left a file the writer wrote to the full one:\n%s", data)
			}
			return
		}
		checkReadersAgree(t, data)
	})
}
