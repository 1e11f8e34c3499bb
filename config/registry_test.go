package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/units"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

// Environment of the helper process that the cross-process tests start from
// the test binary itself.
const (
	helperModeEnv     = "KATO_CONFIG_HELPER_MODE" // "add" or "crash"
	helperRegistryEnv = "KATO_CONFIG_HELPER_REGISTRY"
	helperIDEnv       = "KATO_CONFIG_HELPER_ID"
)

var created = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// newInstance returns a valid instance with the given id and ports.
func newInstance(id string, api, zmq int) *Instance {
	return &Instance{
		ID:         id,
		Name:       "Instance " + id,
		Unit:       units.InstanceUnit(id),
		APIPort:    api,
		ZMQPort:    zmq,
		Network:    NetworkHost,
		Parameters: DefaultParameters(),
		Created:    created,
		Updated:    created,
	}
}

// lowestFree returns the lowest port from start on that is not reserved.
func lowestFree(start int, reserved map[int]string) int {
	for p := start; ; p++ {
		if _, taken := reserved[p]; !taken {
			return p
		}
	}
}

// addInstance is the update a `kato-manager start` makes: take the lowest
// free ports and register the instance under them.
func addInstance(id string, pause time.Duration) func(*Registry) error {
	return func(r *Registry) error {
		reserved := r.ReservedPorts()
		api, zmq := lowestFree(8000, reserved), lowestFree(5555, reserved)
		// Widen the window between reading and writing so that a missing
		// lock would lose updates.
		time.Sleep(pause)
		if _, exists := r.Instances[id]; exists {
			return fmt.Errorf("instance %s already exists", id)
		}
		r.Instances[id] = newInstance(id, api, zmq)
		return nil
	}
}

// TestRegistryHelperProcess is not a test: it is the child process of the
// cross-process tests and does nothing unless started by them.
func TestRegistryHelperProcess(t *testing.T) {
	mode := os.Getenv(helperModeEnv)
	if mode == "" {
		return
	}
	f := OpenRegistry(os.Getenv(helperRegistryEnv))
	id := os.Getenv(helperIDEnv)
	if mode == "crash" {
		afterTempWrite = func(string) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
	}
	if err := f.Update(addInstance(id, 5*time.Millisecond)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperCommand returns a command that re-runs the test binary as a helper
// process in the given mode.
func helperCommand(t *testing.T, mode, registry, id string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRegistryHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperModeEnv+"="+mode, helperRegistryEnv+"="+registry, helperIDEnv+"="+id)
	return cmd
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestRegistryLoadMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	r, err := OpenRegistry(filepath.Join(dir, "instances.toml")).Load()
	if err != nil {
		t.Fatalf("Load(missing) = %v", err)
	}
	if r.Instances == nil || len(r.Instances) != 0 {
		t.Fatalf("Load(missing) = %#v, want an empty registry", r)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load created %s: %v", dir, err)
	}
}

func TestRegistryRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lib", "kato", "instances.toml")
	f := OpenRegistry(path)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	want := &Instance{
		ID:        "processor-1",
		Name:      `Main "NLP" Processor — ü`,
		Unit:      "kato@processor-1.service",
		APIPort:   8001,
		ZMQPort:   5556,
		Command:   []string{"/opt/kato/bin/python", "-m", "kato.services.kato_fastapi", "--flag=a b"},
		Processor: "v1",
		Network:   NetworkPrivate,
		Parameters: func() Parameters {
			p := DefaultParameters()
			p["max_predictions"], p["recall_threshold"], p["max_pattern_length"], p["persistence"], p["quiescence"] = 200, 0.05, 10, 7, 0
			p["sort"], p["auto_act_method"], p["log_level"] = false, "threshold", "DEBUG"
			return p
		}(),
		Created: time.Date(2024, 1, 1, 12, 0, 0, 123456789, zone),
		Updated: time.Date(2024, 1, 2, 8, 30, 15, 0, time.UTC),
	}
	plain := newInstance("plain", 8002, 5557)
	plain.Name = "plain"
	if err := f.Update(func(r *Registry) error {
		r.Instances[want.ID] = want
		r.Instances[plain.ID] = plain
		return nil
	}); err != nil {
		t.Fatalf("Update() = %v", err)
	}

	r, err := f.Load()
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if len(r.Instances) != 2 {
		t.Fatalf("Load() has %d instances, want 2", len(r.Instances))
	}
	for _, w := range []*Instance{want, plain} {
		t.Run(w.ID, func(t *testing.T) {
			got := r.Instances[w.ID]
			if got == nil {
				t.Fatalf("instance %s missing", w.ID)
			}
			if !got.Created.Equal(w.Created) || !got.Updated.Equal(w.Updated) {
				t.Errorf("times = %v, %v; want %v, %v", got.Created, got.Updated, w.Created, w.Updated)
			}
			g, e := *got, *w
			g.Created, g.Updated, e.Created, e.Updated = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if !reflect.DeepEqual(g, e) {
				t.Errorf("instance = %#v\nwant %#v", g, e)
			}
		})
	}
	if got := r.Instances["plain"].Command; got != nil {
		t.Errorf("instance without override loads command %#v, want nil", got)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o644 {
		t.Errorf("registry mode = %v, want 0644", mode)
	}
	dirInfo, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if mode := dirInfo.Mode().Perm(); mode&0o755 != 0o755 || mode&0o022 != 0 {
		t.Errorf("registry directory mode = %v, want 0755", mode)
	}
	if names := dirNames(t, filepath.Dir(path)); !slices.Equal(names, []string{"instances.toml", "instances.toml.lock"}) {
		t.Errorf("registry directory holds %v, want only the registry and its lock", names)
	}
}

func TestRegistryGolden(t *testing.T) {
	r := &Registry{Instances: map[string]*Instance{}}
	a := newInstance("processor-1", 8001, 5556)
	a.Name = "Main Processor"
	a.Parameters["max_predictions"] = 200
	a.Network = NetworkPrivate
	b := newInstance("processor-2", 8002, 5557)
	b.Processor = "v1"
	b.Name = "Secondary"
	b.Command = []string{"/opt/kato/venv/bin/python", "-m", "kato.services.kato_fastapi"}
	b.Updated = created.Add(90 * time.Minute)
	r.Instances[a.ID], r.Instances[b.ID] = a, b

	got, err := encodeRegistry(r)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "instances.golden.toml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readFile(t, golden)
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded registry differs from %s (run go test -update):\n%s", golden, got)
	}
	back, err := decodeRegistry(want)
	if err != nil {
		t.Fatalf("decode golden file: %v", err)
	}
	again, err := encodeRegistry(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, want) {
		t.Fatalf("golden file does not survive a load and save:\n%s", again)
	}
}

func TestRegistryFind(t *testing.T) {
	r := registryOf(map[string]string{
		"processor-1": "Main Processor",
		"processor-2": "Shared",
		"processor-3": "Shared",
		"other":       "processor-1",
	})
	checkLookups(t, "Find", r.Find, []lookupCase{
		{name: "by id", ref: "processor-2", wantID: "processor-2"},
		{name: "by name", ref: "Main Processor", wantID: "processor-1"},
		{name: "id wins over a name", ref: "processor-1", wantID: "processor-1"},
		{name: "ambiguous name", ref: "Shared", wantErr: ErrAmbiguous, inMsg: []string{`"Shared"`, "processor-2, processor-3"}},
		{name: "missing", ref: "nope", wantErr: ErrNotFound, inMsg: []string{`"nope"`}},
		{name: "missing suggests the nearest id", ref: "procesor-2", wantErr: ErrNotFound, inMsg: []string{"did you mean processor-2?"}},
		{name: "a prefix is not a name", ref: "Main", wantErr: ErrNotFound},
		{name: "names are case sensitive", ref: "main processor", wantErr: ErrNotFound, inMsg: []string{`"main processor"`}},
		{name: "empty", ref: "", wantErr: ErrNotFound},
	})
}

func TestRegistryMatch(t *testing.T) {
	r := registryOf(map[string]string{
		"processor-1": "Main Processor",
		"processor-2": "Secondary",
		"processor-3": "Auto Learner",
		"backup":      "Main Backup",
		"main":        "Spare",
		"lone":        "Learner Two",
	})
	checkLookups(t, "Match", r.Match, []lookupCase{
		{name: "exact id", ref: "processor-2", wantID: "processor-2"},
		{name: "exact name", ref: "Main Processor", wantID: "processor-1"},
		{name: "unique prefix", ref: "Second", wantID: "processor-2"},
		{name: "prefix ignores case", ref: "auto", wantID: "processor-3"},
		{name: "unique substring", ref: "Backup", wantID: "backup"},
		{name: "exact id wins over prefixes", ref: "main", wantID: "main"},
		{name: "prefix wins over substring", ref: "Learner", wantID: "lone"},
		{name: "ambiguous prefix", ref: "Main ", wantErr: ErrAmbiguous, inMsg: []string{"backup (Main Backup)", "processor-1 (Main Processor)"}},
		{name: "ambiguous substring", ref: "e", wantErr: ErrAmbiguous, inMsg: []string{"lone (Learner Two)"}},
		{name: "nothing near", ref: "zzz", wantErr: ErrNotFound},
		{name: "typo suggested", ref: "procesor-1", wantErr: ErrNotFound, inMsg: []string{"did you mean processor-1?"}},
		{name: "empty", ref: "", wantErr: ErrNotFound},
	})
}

func TestRegistrySortedAndReservedPorts(t *testing.T) {
	r := &Registry{Instances: map[string]*Instance{
		"zeta":  newInstance("zeta", 8002, 5557),
		"alpha": newInstance("alpha", 8000, 5555),
		"Mid":   newInstance("Mid", 8001, 5556),
	}}
	var ids []string
	for _, in := range r.Sorted() {
		ids = append(ids, in.ID)
	}
	if want := []string{"Mid", "alpha", "zeta"}; !slices.Equal(ids, want) {
		t.Errorf("Sorted() = %v, want %v", ids, want)
	}
	want := map[int]string{8000: "alpha", 5555: "alpha", 8001: "Mid", 5556: "Mid", 8002: "zeta", 5557: "zeta"}
	if got := r.ReservedPorts(); !reflect.DeepEqual(got, want) {
		t.Errorf("ReservedPorts() = %v, want %v", got, want)
	}
}

// registryWithOne writes a registry with one instance to a fresh directory and
// returns its file and contents.
func registryWithOne(t *testing.T) (*RegistryFile, []byte) {
	t.Helper()
	f := OpenRegistry(filepath.Join(t.TempDir(), "instances.toml"))
	if err := f.Update(addInstance("first", 0)); err != nil {
		t.Fatal(err)
	}
	return f, readFile(t, f.Path)
}

func TestRegistryUpdateFnErrorWritesNothing(t *testing.T) {
	f, before := registryWithOne(t)
	errStop := errors.New("instance first already exists")
	err := f.Update(func(r *Registry) error {
		r.Instances["second"] = newInstance("second", 8100, 5600)
		delete(r.Instances, "first")
		return errStop
	})
	if err != errStop {
		t.Fatalf("Update() = %v, want the error of fn unchanged", err)
	}
	if after := readFile(t, f.Path); !bytes.Equal(before, after) {
		t.Fatalf("registry changed after a failed update:\n%s", after)
	}
	if names := dirNames(t, filepath.Dir(f.Path)); len(names) != 2 {
		t.Fatalf("directory holds %v, want only the registry and its lock", names)
	}
}

func TestRegistryUpdateRejectsInvalidResult(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Registry)
		field  string
		value  string
		rule   string
	}{
		{"port taken", func(r *Registry) { r.Instances["second"] = newInstance("second", 8000, 5600) },
			"instances.second.api_port", "8000", "already used by instance first"},
		{"zmq port taken by an api port", func(r *Registry) { r.Instances["second"] = newInstance("second", 8100, 8000) },
			"instances.second.zmq_port", "8000", "already used by instance first"},
		{"bad id", func(r *Registry) { r.Instances["bad id"] = newInstance("bad id", 8100, 5600) },
			"instances", "bad id", "id must contain only letters, digits, '-' and '_'"},
		{"id differs from key", func(r *Registry) { r.Instances["second"] = newInstance("third", 8100, 5600) },
			"instances.second", "third", "must hold the instance with id second"},
		{"nil instance", func(r *Registry) { r.Instances["second"] = nil },
			"instances.second", "nil", "must hold an instance"},
		{"bad parameter", func(r *Registry) { r.Instances["first"].Parameters["recall_threshold"] = 2.0 },
			"instances.first.parameters.recall_threshold", "2", "must be between 0 and 1"},
		{"wrong unit", func(r *Registry) { r.Instances["first"].Unit = "kato@other.service" },
			"instances.first.unit", "kato@other.service", "must be kato@first.service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, before := registryWithOne(t)
			err := f.Update(func(r *Registry) error { tc.change(r); return nil })
			wantFieldError(t, err, tc.field, tc.value, tc.rule)
			if after := readFile(t, f.Path); !bytes.Equal(before, after) {
				t.Fatalf("registry changed after a rejected update:\n%s", after)
			}
		})
	}
}

func TestRegistryUpdateFillsEmptyID(t *testing.T) {
	f, _ := registryWithOne(t)
	if err := f.Update(func(r *Registry) error {
		in := newInstance("second", 8100, 5600)
		in.ID = ""
		r.Instances["second"] = in
		return nil
	}); err != nil {
		t.Fatalf("Update() = %v", err)
	}
	r, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Instances["second"]; got == nil || got.ID != "second" {
		t.Fatalf("instance second = %+v, want ID second", got)
	}
}

func TestInstanceValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Instance)
		field  string // "" when valid
		value  string
		rule   string
	}{
		{"valid", func(*Instance) {}, "", "", ""},
		{"bad id", func(in *Instance) { in.ID = "a/b" }, "id", "a/b", "must contain only letters, digits, '-' and '_'"},
		{"empty name", func(in *Instance) { in.Name = "" }, "name", "", "must be 1 to 128 characters long"},
		{"name with newline", func(in *Instance) { in.Name = "a\nb" }, "name", "a\nb", "must not contain control characters or line breaks"},
		{"unit missing", func(in *Instance) { in.Unit = "" }, "unit", "", "must be kato@x.service"},
		{"api port zero", func(in *Instance) { in.APIPort = 0 }, "api_port", "0", "must be between 1 and 65535"},
		{"zmq port too high", func(in *Instance) { in.ZMQPort = 65536 }, "zmq_port", "65536", "must be between 0 and 65535"},
		{"same ports", func(in *Instance) { in.ZMQPort = in.APIPort }, "zmq_port", "8000", "must differ from api_port"},
		{"relative command", func(in *Instance) { in.Command = []string{"kato"} }, "command", "kato", "must start with an absolute program path"},
		{"bad parameter", func(in *Instance) { in.Parameters["persistence"] = 0 }, "parameters.persistence", "0", "must be between 1 and 100000"},
		{"created unset", func(in *Instance) { in.Created = time.Time{} }, "created", "0001-01-01T00:00:00Z", "must be set"},
		{"updated unset", func(in *Instance) { in.Updated = time.Time{} }, "updated", "0001-01-01T00:00:00Z", "must be set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstance("x", 8000, 5555)
			tc.change(in)
			err := in.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			wantFieldError(t, err, tc.field, tc.value, tc.rule)
		})
	}
}

// validEntry is a registry entry as written by hand.
const validEntry = `[instances.a]
name = "A"
unit = "kato@a.service"
api_port = 8000
zmq_port = 5555
created = 2025-01-01T00:00:00Z
updated = 2025-01-01T00:00:00Z
`

func TestRegistryMalformedFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		want []string // substrings of the error besides the path
	}{
		{"syntax error", strings.Replace(validEntry, "api_port = 8000", "api_port 8000", 1), []string{"line 4:"}},
		{"unterminated string", strings.Replace(validEntry, `name = "A"`, `name = "A`, 1), []string{"line 2:"}},
		{"wrong type", strings.Replace(validEntry, "api_port = 8000", `api_port = "8000"`, 1), []string{"line 4", "api_port"}},
		{"unknown key", validEntry + "status = \"running\"\n", []string{"line 8: unknown key instances.a.status"}},
		{"unknown top-level table", "[settings]\nx = 1\n", []string{"line 1: unknown key settings"}},
		{"invalid id", strings.Replace(validEntry, "[instances.a]", `[instances."a b"]`, 1), []string{"line 1: invalid instances \"a b\": id must contain only"}},
		{"port out of range", "\n" + strings.Replace(validEntry, "api_port = 8000", "api_port = 0", 1), []string{"line 5: invalid instances.a.api_port 0: must be between 1 and 65535"}},
		{"bad parameter", validEntry + "[instances.a.parameters]\nrecall_threshold = 7\n", []string{"line 9: invalid instances.a.parameters.recall_threshold 7"}},
		{"unit mismatch", strings.Replace(validEntry, "kato@a.service", "kato@b.service", 1), []string{"line 3: invalid instances.a.unit kato@b.service: must be kato@a.service"}},
		{"duplicate ports", validEntry + strings.NewReplacer("instances.a", "instances.b", "kato@a", "kato@b", "5555", "5556").Replace(validEntry),
			[]string{"line 11: invalid instances.b.api_port 8000: already used by instance a"}},
		{"missing name", strings.Replace(validEntry, "name = \"A\"\n", "", 1), []string{"line 1: invalid instances.a.name \"\": must be 1 to 128 characters long"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "instances.toml", tc.file)
			f := OpenRegistry(path)

			_, err := f.Load()
			if err == nil {
				t.Fatal("Load() succeeded on a malformed registry")
			}
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load() error %q does not contain %q", err, w)
				}
			}

			called := false
			err = f.Update(func(r *Registry) error {
				called = true
				r.Instances["z"] = newInstance("z", 9000, 6000)
				return nil
			})
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("Update() = %v, want an error naming %s", err, path)
			}
			if called {
				t.Error("Update() called fn on a malformed registry")
			}
			if got := readFile(t, path); string(got) != tc.file {
				t.Fatalf("Update() rewrote a malformed registry:\n%s", got)
			}
		})
	}
}

// TestRegistryLoadsOldParameterNames: an entry written before
// max_seq_length became max_pattern_length loads, and is written back under
// the new name.
func TestRegistryLoadsOldParameterNames(t *testing.T) {
	path := writeFile(t, "instances.toml", validEntry+"[instances.a.parameters]\nmax_seq_length = 10\n")
	f := OpenRegistry(path)
	r, err := f.Load()
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if got := r.Instances["a"].Parameters["max_pattern_length"]; got != 10 {
		t.Fatalf("max_pattern_length = %v, want 10", got)
	}
	if err := f.Update(func(r *Registry) error { r.Instances["a"].Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	data := string(readFile(t, path))
	if strings.Contains(data, "max_seq_length") || !strings.Contains(data, "max_pattern_length = 10") {
		t.Fatalf("rewritten registry:\n%s", data)
	}
	bad := writeFile(t, "bad.toml", validEntry+"[instances.a.parameters]\nmax_seq_length = 10\nspeed = 2\n")
	if _, err := OpenRegistry(bad).Load(); err == nil || !strings.Contains(err.Error(), "line 10: invalid instances.a.parameters.speed 2: is not a processor parameter") {
		t.Fatalf("unknown parameter: %v", err)
	}
}

func TestRegistryDefaultsMissingParameters(t *testing.T) {
	path := writeFile(t, "instances.toml", validEntry+"[instances.a.parameters]\nmax_predictions = 42\n")
	r, err := OpenRegistry(path).Load()
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	want := DefaultParameters()
	want["max_predictions"] = 42
	if got := r.Instances["a"].Parameters; !reflect.DeepEqual(got, want) {
		t.Fatalf("parameters = %+v, want %+v", got, want)
	}
	if got := r.Instances["a"].Network; got != NetworkHost {
		t.Fatalf("network of an entry written before networks = %q, want host", got)
	}
	if got := r.Instances["a"].ID; got != "a" {
		t.Fatalf("ID = %q, want the key a", got)
	}
}

func TestRegistryUpdateAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 processes")
	}
	path := filepath.Join(t.TempDir(), "instances.toml")
	const n = 20
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for i := range cmds {
		cmds[i] = helperCommand(t, "add", path, fmt.Sprintf("proc-%02d", i))
		outs[i] = new(bytes.Buffer)
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v\n%s", i, err, outs[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	r, err := OpenRegistry(path).Load()
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if len(r.Instances) != n {
		t.Fatalf("registry holds %d instances, want %d: updates were lost", len(r.Instances), n)
	}
	var api, zmq []int
	for i := 0; i < n; i++ {
		in := r.Instances[fmt.Sprintf("proc-%02d", i)]
		if in == nil {
			t.Fatalf("instance proc-%02d missing", i)
		}
		api, zmq = append(api, in.APIPort), append(zmq, in.ZMQPort)
	}
	slices.Sort(api)
	slices.Sort(zmq)
	for i := 0; i < n; i++ {
		if api[i] != 8000+i || zmq[i] != 5555+i {
			t.Fatalf("ports api %v zmq %v, want %d..%d and %d..%d, each once", api, zmq, 8000, 8000+n-1, 5555, 5555+n-1)
		}
	}
	if names := dirNames(t, filepath.Dir(path)); !slices.Equal(names, []string{"instances.toml", "instances.toml.lock"}) {
		t.Fatalf("directory holds %v after the updates, want no temporary files", names)
	}
}

func TestRegistryCrashBeforeRename(t *testing.T) {
	f, before := registryWithOne(t)
	dir := filepath.Dir(f.Path)

	cmd := helperCommand(t, "crash", f.Path, "doomed")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("crashing writer: %v\n%s", err, out)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("writer ended with %v, want killed by SIGKILL\n%s", err, out)
	}

	if after := readFile(t, f.Path); !bytes.Equal(before, after) {
		t.Fatalf("registry changed by a writer killed before its rename:\n%s", after)
	}
	leftovers, err := filepath.Glob(filepath.Join(dir, ".instances.toml.tmp-*"))
	if err != nil || len(leftovers) != 1 {
		t.Fatalf("temporary files after the crash: %v, %v; want exactly one", leftovers, err)
	}
	if !bytes.Contains(readFile(t, leftovers[0]), []byte("[instances.doomed]")) {
		t.Fatalf("leftover %s does not hold the unfinished write", leftovers[0])
	}

	r, err := f.Load()
	if err != nil {
		t.Fatalf("Load() after the crash = %v", err)
	}
	if _, ok := r.Instances["doomed"]; ok || len(r.Instances) != 1 {
		t.Fatalf("Load() after the crash = %v, want only the instance written before it", r.Sorted())
	}

	// The dead writer's lock went with it; the next writer proceeds and
	// clears the leftover.
	done := make(chan error, 1)
	go func() { done <- f.Update(addInstance("next", 0)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Update() after the crash = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Update() after the crash is still waiting for the lock")
	}
	r, err = f.Load()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Instances["next"]; !ok || len(r.Instances) != 2 {
		t.Fatalf("registry after recovery = %v, want first and next", r.Sorted())
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"instances.toml", "instances.toml.lock"}) {
		t.Fatalf("directory holds %v after recovery, want the leftover removed", names)
	}
}

func TestRegistryLoadTakesNoLock(t *testing.T) {
	f, _ := registryWithOne(t)
	err := f.Update(func(r *Registry) error {
		done := make(chan error, 1)
		go func() {
			_, err := f.Load()
			done <- err
		}()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("Load() waited for a writer")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRegistryUnchangedIsNotRewritten(t *testing.T) {
	f, _ := registryWithOne(t)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(f.Path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := f.Update(func(*Registry) error { return nil }); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !info.ModTime().Equal(old) {
		t.Fatalf("an update that changed nothing rewrote the file (mtime %v, want %v)", info.ModTime(), old)
	}
}

// registryOf is a registry of instances by id, with their names.
func registryOf(names map[string]string) *Registry {
	r := &Registry{Instances: map[string]*Instance{}}
	for id, name := range names {
		r.Instances[id] = newInstance(id, 0, 0)
		r.Instances[id].Name = name
	}
	return r
}

// lookupCase is a reference to an instance and what looking it up gives:
// the instance's id, or an error wrapping wantErr whose message holds each
// of inMsg.
type lookupCase struct {
	name    string
	ref     string
	wantID  string
	wantErr error
	inMsg   []string
}

// checkLookups looks up each case's reference with lookup, the registry's
// method of that name.
func checkLookups(t *testing.T, method string, lookup func(string) (*Instance, error), cases []lookupCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookup(tc.ref)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("%s(%q) = %v", method, tc.ref, err)
				}
				if got.ID != tc.wantID {
					t.Fatalf("%s(%q) = %s, want %s", method, tc.ref, got.ID, tc.wantID)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("%s(%q) = %v, %v; want %v", method, tc.ref, got, err, tc.wantErr)
			}
			for _, w := range tc.inMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestRegistryLoadKeepsTheParsedFile: a second Load of an unchanged file
// is served from the registry parsed before, as a copy the caller may
// change; a file replaced by Update, even by one of the same size, is
// read again.
func TestRegistryLoadKeepsTheParsedFile(t *testing.T) {
	f := OpenRegistry(filepath.Join(t.TempDir(), "instances.toml"))
	put := func(name string) {
		t.Helper()
		if err := f.Update(func(r *Registry) error {
			now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
			r.Instances["a"] = &Instance{Name: name, Unit: "kato@a.service", APIPort: 8001, Network: NetworkHost, Parameters: DefaultParameters(), Created: now, Updated: now}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	load := func() *Registry {
		t.Helper()
		r, err := f.Load()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	put("one")
	first := load()
	p := f.parsed.Load()
	if p == nil {
		t.Fatal("Load kept nothing of the file it parsed")
	}
	first.Instances["a"].Name = "changed by the caller"
	first.Instances["a"].Parameters["max_predictions"] = int64(99)
	second := load()
	if f.parsed.Load() != p {
		t.Error("an unchanged file was parsed again")
	}
	if a := second.Instances["a"]; a.Name != "one" || a.Parameters["max_predictions"] == int64(99) {
		t.Errorf("a change to one Load's registry reached the next: %+v", a)
	}
	put("two") // same size, new file
	if got := load().Instances["a"].Name; got != "two" {
		t.Errorf("after the file was replaced, Load read name %q, want two", got)
	}
}

// TestRegistryCloneCopiesEveryField: what Load serves from its kept
// registry is the whole registry; a field added to Registry fails here
// until clone copies it.
func TestRegistryCloneCopiesEveryField(t *testing.T) {
	if n := reflect.TypeOf(Registry{}).NumField(); n != 3 {
		t.Fatalf("Registry has %d fields: copy the new one in clone, then count it here", n)
	}
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	r := &Registry{
		Instances:     map[string]*Instance{"a": {ID: "a", Name: "A", Unit: "kato@a.service", APIPort: 8001, Command: []string{"x"}, Network: NetworkHost, Group: "ab", Parameters: DefaultParameters(), Created: now, Updated: now}},
		Groups:        map[string]Group{"ab": {Front: 9300, Balance: "roundrobin"}},
		RemoteMembers: map[string]RemoteMember{"b": {Group: "ab", Host: "root@beta", Address: "beta", Port: 8001}},
	}
	c := r.clone()
	if !reflect.DeepEqual(r, c) {
		t.Fatalf("clone differs:\n%+v\n%+v", r, c)
	}
	c.Groups["ab"] = Group{Front: 1}
	c.RemoteMembers["b"] = RemoteMember{Port: 1}
	c.Instances["a"].Command[0] = "y"
	if r.Groups["ab"].Front != 9300 || r.Instances["a"].Command[0] != "x" || r.RemoteMembers["b"].Port != 8001 {
		t.Error("the clone shares its groups or an instance's command with the original")
	}
}

// TestRegistryRemoteMembers: remote members round-trip through the file,
// and one named by a loopback host is refused with its field, value and
// rule.
func TestRegistryRemoteMembers(t *testing.T) {
	dir := t.TempDir()
	f := OpenRegistry(filepath.Join(dir, "instances.toml"))
	want := map[string]RemoteMember{"web-b": {Group: "web", Host: "ops@beta", Address: "beta", Port: 8101, Weight: 3}}
	if err := f.Update(func(r *Registry) error { r.RemoteMembers = want; return nil }); err != nil {
		t.Fatal(err)
	}
	r, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.RemoteMembers, want) {
		t.Errorf("remote members read back %v, want %v", r.RemoteMembers, want)
	}
	for _, tc := range []struct {
		name string
		m    RemoteMember
		want string
	}{
		{"loopback address", RemoteMember{Group: "web", Host: "127.0.0.2", Address: "127.0.0.2", Port: 8101}, "remote_members.web-b.host 127.0.0.2"},
		{"localhost", RemoteMember{Group: "web", Host: "root@localhost", Address: "localhost", Port: 8101}, "remote_members.web-b.host root@localhost"},
		{"address not the host's", RemoteMember{Group: "web", Host: "beta", Address: "gamma", Port: 8101}, "remote_members.web-b.address gamma"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.Update(func(r *Registry) error { r.RemoteMembers = map[string]RemoteMember{"web-b": tc.m}; return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("update with %+v: %v, want %q", tc.m, err, tc.want)
			}
		})
	}
}

func TestRegistryByNameAndMemberGroups(t *testing.T) {
	r := registryOf(map[string]string{"b": "Main", "a": "Main", "c": "Other", "d": ""})
	r.Instances["a"].Group, r.Instances["c"].Group, r.Instances["d"].Group = "edge", "core", "edge"
	want := map[string][]string{"Main": {"a", "b"}, "Other": {"c"}}
	if got := r.ByName(); !reflect.DeepEqual(got, want) {
		t.Errorf("ByName() = %v, want %v", got, want)
	}
	if got, want := r.MemberGroups(), []string{"core", "edge"}; !slices.Equal(got, want) {
		t.Errorf("MemberGroups() = %v, want %v", got, want)
	}
	if got := (&Registry{}).MemberGroups(); len(got) != 0 {
		t.Errorf("MemberGroups() of an empty registry = %v", got)
	}
}

func TestInstanceProcessorShown(t *testing.T) {
	if got := (&Instance{}).ProcessorShown(); got != DefaultProcessor {
		t.Errorf("ProcessorShown of [processor] = %q, want %q", got, DefaultProcessor)
	}
	if got := (&Instance{Processor: "gen-b"}).ProcessorShown(); got != "gen-b" {
		t.Errorf("ProcessorShown of gen-b = %q", got)
	}
}
