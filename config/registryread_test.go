package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// manyEntries is a registry as the writer writes it, of n instances with a
// group, a command and parameters that differ from the defaults.
func manyEntries(t testing.TB, n int) []byte {
	t.Helper()
	r := &Registry{Instances: map[string]*Instance{}, Groups: map[string]Group{
		"web": {Front: 9000, Address: "127.0.0.1", Balance: BalanceRoundRobin, Ready: "GET /health"},
	}}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("l%04d", i)
		in := newInstance(id, 10000+2*i, 10001+2*i)
		in.Name = fmt.Sprintf("Instance \"%d\" \\ %d é", i, i)
		in.Parameters["max_predictions"] = 10 + i
		in.Parameters["recall_threshold"] = 0.25
		if i%3 == 0 {
			in.Group, in.Weight = "web", 1+i%256
			in.Command = []string{"/opt/kato/bin/kato", "--flag", "a b"}
			in.Network = NetworkPrivate
		}
		r.Instances[id] = in
	}
	data, err := encodeRegistry(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRegistryReadersAgree: on every file of the registry's tests, the
// fast reader either leaves the file to the full one or reads exactly the
// Registry the full one reads; the writer's own files take the fast path.
func TestRegistryReadersAgree(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "instances.golden.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file string
		fast bool // the fast reader takes it
	}{
		{"empty", "", true},
		{"golden", string(golden), true},
		{"writer's output, 300 entries", string(manyEntries(t, 300)), true},
		{"valid entry", validEntry, true},
		{"parameters before their entry", "[instances.a.parameters]\nmax_predictions = 7\n" + validEntry, true},
		{"old parameter name", validEntry + "[instances.a.parameters]\nmax_seq_length = 10\n", true},
		{"comments and blank lines", "# c\n\n" + strings.Replace(validEntry, "\n", " # note\n", 3), true},
		{"empty groups table", validEntry + "[groups]\n", true},
		{"group", validEntry + "[groups.g]\nfront = 9000\nbalance = \"path\"\n", true},
		{"fraction and offset in times", strings.Replace(validEntry, "2025-01-01T00:00:00Z", "2025-01-01T02:00:00.5+02:00", 1), true},
		{"empty command", strings.Replace(validEntry, "api_port", "command = []\napi_port", 1), true},
		{"float parameter with exponent", validEntry + "[instances.a.parameters]\nrecall_threshold = 1e-1\n", true},
		// Left to the full reader, which takes them.
		{"literal string", strings.Replace(validEntry, `name = "A"`, `name = 'A'`, 1), false},
		{"unicode escape", strings.Replace(validEntry, `name = "A"`, `name = "\u0041"`, 1), false},
		{"quoted key", strings.Replace(validEntry, "[instances.a]", `[instances."a"]`, 1), false},
		{"dotted key", validEntry + "parameters.max_predictions = 3\n", false},
		{"underscored integer", strings.Replace(validEntry, "8000", "8_000", 1), false},
		{"hex integer", strings.Replace(validEntry, "8000", "0x1F40", 1), false},
		{"local date-time", strings.Replace(validEntry, "2025-01-01T00:00:00Z", "2025-01-01T00:00:00", 1), false},
		{"space in date-time", strings.Replace(validEntry, "2025-01-01T00:00:00Z", "2025-01-01 00:00:00Z", 1), false},
		{"inline table", validEntry + "parameters = {max_predictions = 3}\n", false},
		{"CRLF", strings.ReplaceAll(validEntry, "\n", "\r\n"), false},
		{"integer as float parameter", validEntry + "[instances.a.parameters]\nrecall_threshold = 0\n", true},
		// Refused by both.
		{"syntax error", strings.Replace(validEntry, "api_port = 8000", "api_port 8000", 1), false},
		{"wrong type", strings.Replace(validEntry, "api_port = 8000", `api_port = "8000"`, 1), false},
		{"unknown key", validEntry + "status = \"running\"\n", false},
		{"unknown table", "[settings]\nx = 1\n", false},
		{"duplicate key", validEntry + "name = \"B\"\n", false},
		{"duplicate table", validEntry + validEntry, false},
		{"invalid id", strings.Replace(validEntry, "[instances.a]", `[instances."a b"]`, 1), false},
		{"bad parameter", validEntry + "[instances.a.parameters]\nrecall_threshold = 7\n", false},
		{"unknown parameter", validEntry + "[instances.a.parameters]\nspeed = 2\n", false},
		{"unit mismatch", strings.Replace(validEntry, "kato@a.service", "kato@b.service", 1), false},
		{"missing name", strings.Replace(validEntry, "name = \"A\"\n", "", 1), false},
		{"leading zero", strings.Replace(validEntry, "8000", "08000", 1), false},
		{"nan parameter", validEntry + "[instances.a.parameters]\nrecall_threshold = nan\n", false},
		{"control character in a comment", "# \x01\n" + validEntry, false},
		{"escape of TOML 1.1", strings.Replace(validEntry, `name = "A"`, `name = "\e"`, 1), false},
		{"array of tables", "[[instances]]\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fast, ok := decodeRegistryFast([]byte(tc.file))
			if ok != tc.fast {
				t.Errorf("fast reader took the file: %v, want %v", ok, tc.fast)
			}
			full, fullErr := decodeRegistryFull([]byte(tc.file))
			if ok {
				if fullErr != nil {
					t.Fatalf("fast reader took a file the full one refuses: %v", fullErr)
				}
				if !reflect.DeepEqual(fast, full) {
					t.Fatalf("readers differ:\nfast %+v\nfull %+v", fast, full)
				}
			}
			got, err := decodeRegistry([]byte(tc.file))
			if fmt.Sprint(err) != fmt.Sprint(fullErr) || !reflect.DeepEqual(got, full) {
				t.Fatalf("decodeRegistry = %+v, %v; want the full reader's %+v, %v", got, err, full, fullErr)
			}
		})
	}
}

func BenchmarkDecodeRegistry(b *testing.B) {
	data := manyEntries(b, 1000)
	for _, r := range []struct {
		name string
		read func([]byte) (*Registry, error)
	}{{"fast", decodeRegistry}, {"full", decodeRegistryFull}} {
		b.Run(r.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := r.read(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
