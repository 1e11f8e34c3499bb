package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
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
	f.Fuzz(func(t *testing.T, data []byte) {
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
