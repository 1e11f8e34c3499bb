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

// FuzzParseFleet feeds arbitrary fleet files, as YAML (and so JSON) and as
// TOML, to the fleet parser: it never panics, every refusal is FileErrors
// naming the file, and every instance it accepts has a valid id and
// parameters that pass Validate.
func FuzzParseFleet(f *testing.F) {
	f.Add([]byte("instances:\n  - id: a\n    port: 8001\n    max_predictions: 50\n"), false)
	f.Add([]byte("templates:\n  t: {max_predictions: 5, group: g}\ninstances:\n  - {id: a, template: t, max_seq_length: 3}\n"), false)
	f.Add([]byte("{\"instances\": [{\"id\": \"a\", \"port\": 8001}]}"), false)
	f.Add([]byte("[[instances]]\nid = \"a\"\nport = 8001\n\n[templates.t]\nmax_predictions = 5\n"), true)
	f.Add([]byte("instances: &a [*a]\n"), false)
	f.Add([]byte("instances = [ # x\n  {id = \"a\", name = '''x\n}'''},\n  {\"id\" = 'b', port = 8001},\n]\n"), true)
	c := Default()
	f.Fuzz(func(t *testing.T, data []byte, asTOML bool) {
		path := "fleet.yaml"
		if asTOML {
			path = "fleet.toml"
		}
		fl, err := ParseFleet(path, data)
		if err == nil {
			var want []Desired
			want, err = c.Resolve(fl)
			for _, d := range want {
				if ValidateID(d.ID) != nil {
					t.Fatalf("accepted id %q", d.ID)
				}
				if verr := d.Parameters.Validate(); verr != nil {
					t.Fatalf("accepted parameters Validate refuses: %v", verr)
				}
			}
		}
		if err != nil {
			var fes FileErrors
			if !errors.As(err, &fes) || len(fes) == 0 {
				t.Fatalf("refused without FileErrors: %v", err)
			}
			for _, fe := range fes {
				if fe.File != path {
					t.Fatalf("error names %q, not the file: %v", fe.File, fe)
				}
			}
		}
	})
}
