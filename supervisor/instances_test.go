package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// testEnv is a Manager over the in-memory systemd, with a processor
// behaviour per instance ID: "ok" listens on the port of the rendered
// environment file (PORT or REST_PORT) and answers its health request,
// "deaf" listens and never answers, "silent" never listens, "crash" exits at
// once.
type testEnv struct {
	m        *Manager
	sd       *fakeSystemd
	ports    *fakePorts
	procs    *fakeProcesses
	behavior map[string]string
	nextPID  int32
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	dir := t.TempDir()
	e := &testEnv{
		sd:       newFakeSystemd(),
		ports:    &fakePorts{m: map[int]int32{}},
		procs:    &fakeProcesses{m: map[string]UnitProcesses{}},
		behavior: map[string]string{},
		nextPID:  1000,
	}
	cfg := config.Default()
	cfg.Services.Units = []string{"mongod.service"}
	e.m = &Manager{
		Systemd:   e.sd,
		Config:    cfg,
		Registry:  config.OpenRegistry(filepath.Join(dir, "instances.toml")),
		Ports:     e.ports,
		Processes: e.procs,
		Paths: Paths{
			UnitDir:          filepath.Join(dir, "etc/systemd/system"),
			EnvDir:           filepath.Join(dir, "etc/kato/instances"),
			VendorUnitDir:    filepath.Join(dir, "lib/systemd/system"),
			SysusersDir:      filepath.Join(dir, "lib/sysusers.d"),
			TmpfilesDir:      filepath.Join(dir, "lib/tmpfiles.d"),
			AdminSysusersDir: filepath.Join(dir, "etc/sysusers.d"),
			AdminTmpfilesDir: filepath.Join(dir, "etc/tmpfiles.d"),
		},
		PollInterval: 5 * time.Millisecond,
		RunTool:      func(ctx context.Context, argv ...string) error { return nil },
		ProcRoot:     filepath.Join(dir, "proc"),
	}
	e.sd.onStart = e.processorStarted
	e.m.Probe = e.probe
	return e
}

// probe answers a health request on a host port as the instance that holds
// it would: 200 while its unit is active and its processor is "ok".
func (e *testEnv) probe(ctx context.Context, port int, path string) (int, error) {
	r, err := e.m.Registry.Load()
	if err != nil {
		return 0, err
	}
	for _, inst := range r.Instances {
		if inst.APIPort != port {
			continue
		}
		u, _ := e.sd.Unit(ctx, inst.Unit)
		switch {
		case u.ActiveState != "active":
		case e.behavior[inst.ID] == "" || e.behavior[inst.ID] == "ok":
			if path == "" {
				return 404, nil
			}
			return 200, nil
		case e.behavior[inst.ID] == "deaf":
			<-ctx.Done()
			return 0, ctx.Err()
		}
	}
	return 0, fmt.Errorf("dial tcp 127.0.0.1:%d: %w", port, syscall.ECONNREFUSED)
}

// processorStarted runs under the fake's lock, when systemd would exec the
// processor.
func (e *testEnv) processorStarted(unit string, u *UnitState) {
	id := strings.TrimSuffix(strings.TrimPrefix(unit, "kato@"), ".service")
	env := readEnvFile(filepath.Join(e.m.Paths.EnvDir, id+".env"))
	e.nextPID++
	u.MainPID = uint32(e.nextPID)
	// The environment systemd gives the process: the file's, and the
	// drop-in's Environment= lines.
	environ := ""
	for k, v := range env {
		environ += k + "=" + v + "\x00"
	}
	dropIn, _ := os.ReadFile(e.m.Paths.DropInPath(id))
	for _, line := range strings.Split(string(dropIn), "\n") {
		if kv, ok := strings.CutPrefix(line, "Environment="); ok {
			environ += kv + "\x00"
		}
	}
	procDir := filepath.Join(e.m.ProcRoot, strconv.Itoa(int(e.nextPID)))
	os.MkdirAll(procDir, 0o755)
	os.WriteFile(filepath.Join(procDir, "environ"), []byte(environ), 0o600)
	switch e.behavior[id] {
	case "silent":
	case "crash":
		u.NRestarts++
		u.ActiveState, u.SubState = "activating", "auto-restart"
	default:
		port, _ := strconv.Atoi(env["PORT"])
		if port == 0 {
			port, _ = strconv.Atoi(env["REST_PORT"])
		}
		e.ports.listen(port, e.nextPID)
		e.procs.mu.Lock()
		e.procs.m[unit] = UnitProcesses{MainPID: e.nextPID, PIDs: []int32{e.nextPID}, RSS: 42 << 20, Started: time.Now().Add(-time.Minute)}
		e.procs.mu.Unlock()
	}
}

// readEnvFile reads the KEY="value" lines of an environment file.
func readEnvFile(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		out[k] = v
	}
	return out
}

func (e *testEnv) start(t *testing.T, req StartRequest) *StartResult {
	t.Helper()
	if req.Parameters == nil {
		req.Parameters = config.DefaultParameters()
	}
	res, err := e.m.Start(context.Background(), req)
	if err != nil {
		t.Fatalf("start %s: %v", req.ID, err)
	}
	return res
}

func (e *testEnv) registry(t *testing.T) *config.Registry {
	t.Helper()
	r, err := e.m.Registry.Load()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStartRegistersRendersAndStarts(t *testing.T) {
	e := newTestEnv(t)
	params := config.DefaultParameters()
	params["max_predictions"], params["recall_threshold"], params["max_pattern_length"] = 200, 0.05, 10
	res := e.start(t, StartRequest{ID: "processor-1", Name: "Main Processor", APIPort: 8001, Parameters: params})
	if res.Instance.APIPort != 8001 || res.Instance.ZMQPort != 0 {
		t.Fatalf("ports = %d/%d, want 8001 and no ZMQ port (generation B)", res.Instance.APIPort, res.Instance.ZMQPort)
	}
	inst := e.registry(t).Instances["processor-1"]
	if inst == nil || inst.Name != "Main Processor" || inst.Unit != "kato@processor-1.service" || inst.Parameters["max_predictions"] != 200 || inst.Network != "host" || inst.Processor != "" {
		t.Fatalf("registry entry = %+v", inst)
	}
	env := readEnvFile(filepath.Join(e.m.Paths.EnvDir, "processor-1.env"))
	// The default processor is generation B: one variable per setting.
	for k, want := range map[string]string{"PROCESSOR_ID": "processor-1", "PROCESSOR_NAME": "Main Processor", "REST_PORT": "",
		"PORT": "8001", "ZMQ_PORT": "", "MANIFEST": "", "MAX_PREDICTIONS": "200", "RECALL_THRESHOLD": "0.05", "MAX_PATTERN_LENGTH": "10",
		"SORT": "true", "SEARCH_DEPTH": "10", "LOG_LEVEL": "INFO", "HOSTNAME": "kato-processor-1"} {
		if env[k] != want {
			t.Errorf("env %s = %q, want %q", k, env[k], want)
		}
	}
	dropIn, err := os.ReadFile(filepath.Join(e.m.Paths.UnitDir, "kato@processor-1.service.d", "kato-manager.conf"))
	if err != nil || !strings.Contains(string(dropIn), "ExecStart=") || !strings.Contains(string(dropIn), "mongod.service") {
		t.Fatalf("drop-in = %q, %v", dropIn, err)
	}
	u, _ := e.sd.Unit(context.Background(), "kato@processor-1.service")
	if u.ActiveState != "active" || !e.sd.enabled["kato@processor-1.service"] {
		t.Fatalf("unit = %+v, enabled = %v", u, e.sd.enabled)
	}
}

func TestStartAllocatesPorts(t *testing.T) {
	for _, tc := range []struct {
		name        string
		setup       func(e *testEnv, t *testing.T)
		req         StartRequest
		wantAPI     int
		wantZMQ     int
		wantNotices int
	}{
		{name: "default ports", req: StartRequest{ID: "a"}, wantAPI: 8000, wantZMQ: 5555},
		{name: "busy port moves on", setup: func(e *testEnv, t *testing.T) { e.ports.listen(8000, 1); e.ports.listen(8001, 1) },
			req: StartRequest{ID: "a"}, wantAPI: 8002, wantZMQ: 5555, wantNotices: 1},
		{name: "busy zmq port moves on", setup: func(e *testEnv, t *testing.T) { e.ports.listen(5555, 1) },
			req: StartRequest{ID: "a"}, wantAPI: 8000, wantZMQ: 5556, wantNotices: 1},
		{name: "port reserved by a stopped instance", setup: func(e *testEnv, t *testing.T) {
			e.start(t, StartRequest{ID: "stopped", APIPort: 9000})
			e.sd.set("kato@stopped.service", func(u *UnitState) { u.ActiveState, u.SubState = "inactive", "dead" })
			e.ports.close(9000)
		}, req: StartRequest{ID: "a", APIPort: 9000}, wantAPI: 9001, wantZMQ: 5556, wantNotices: 2},
		{name: "explicit ports outside the range", req: StartRequest{ID: "a", APIPort: 9100, ZMQPort: 7000}, wantAPI: 9100, wantZMQ: 7000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			// A processor with a ZMQ port: generation A, off the host
			// network, where its ZMQ port comes from the range.
			withGenerationA(e, config.NetworkPrivate)
			e.m.Config.Processor = e.m.Config.Processors["engine"]
			if tc.setup != nil {
				tc.setup(e, t)
			}
			res := e.start(t, tc.req)
			if res.Instance.APIPort != tc.wantAPI || res.Instance.ZMQPort != tc.wantZMQ {
				t.Fatalf("ports = %d/%d, want %d/%d", res.Instance.APIPort, res.Instance.ZMQPort, tc.wantAPI, tc.wantZMQ)
			}
			if len(res.Notices) != tc.wantNotices {
				t.Fatalf("notices = %q, want %d", res.Notices, tc.wantNotices)
			}
		})
	}
}

func TestStartExistingInstance(t *testing.T) {
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "p", APIPort: 8005, Name: "P"})
	before := len(e.sd.callLog())
	res := e.start(t, StartRequest{ID: "p", APIPort: 8100})
	if !res.AlreadyRunning || res.Instance.APIPort != 8005 {
		t.Fatalf("running instance: %+v", res)
	}
	if calls := e.sd.callLog()[before:]; len(calls) != 0 {
		t.Fatalf("a no-op start made systemd calls: %q", calls)
	}
	// Stopped behind kato-manager's back: start brings it back with its
	// stored settings.
	e.sd.set("kato@p.service", func(u *UnitState) { u.ActiveState, u.SubState = "inactive", "dead" })
	e.ports.close(8005)
	res = e.start(t, StartRequest{ID: "p", APIPort: 8100, Explicit: []string{"--port"}})
	if res.AlreadyRunning || res.Instance.APIPort != 8005 || len(res.Notices) != 1 || !strings.Contains(res.Notices[0], "--port") {
		t.Fatalf("stopped instance: %+v", res)
	}
	if u, _ := e.sd.Unit(context.Background(), "kato@p.service"); u.ActiveState != "active" {
		t.Fatalf("unit not started again: %+v", u)
	}
}

func TestStartFailureRollsBack(t *testing.T) {
	for _, behavior := range []string{"silent", "crash"} {
		t.Run(behavior, func(t *testing.T) {
			e := newTestEnv(t)
			e.behavior["bad"] = behavior
			_, err := e.m.Start(context.Background(), StartRequest{ID: "bad", Parameters: config.DefaultParameters(), Timeout: 200 * time.Millisecond})
			var se *StartError
			if !errors.As(err, &se) || !errors.Is(err, ErrNotReady) {
				t.Fatalf("err = %v, want a StartError wrapping ErrNotReady", err)
			}
			if _, ok := e.registry(t).Instances["bad"]; ok {
				t.Fatal("registry entry left behind")
			}
			for _, p := range []string{filepath.Join(e.m.Paths.EnvDir, "bad.env"), filepath.Join(e.m.Paths.UnitDir, "kato@bad.service.d")} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind (%v)", p, err)
				}
			}
			if e.sd.enabled["kato@bad.service"] {
				t.Error("unit left enabled")
			}
			if u, _ := e.sd.Unit(context.Background(), "kato@bad.service"); u.ActiveState == "active" {
				t.Errorf("unit left running: %+v", u)
			}
		})
	}
}

func TestStartRejectsBadInputAndChangesNothing(t *testing.T) {
	good := config.DefaultParameters()
	with := func(name string, v any) config.Parameters {
		p := good.Clone()
		p[name] = v
		return p
	}
	for _, tc := range []struct {
		name  string
		req   StartRequest
		field string
	}{
		{"id with a space", StartRequest{ID: "my processor", Parameters: good}, "id"},
		{"id with a slash", StartRequest{ID: "a/b", Parameters: good}, "id"},
		{"id too long", StartRequest{ID: strings.Repeat("x", 65), Parameters: good}, "id"},
		{"name with a newline", StartRequest{ID: "a", Name: "x\ny", Parameters: good}, "name"},
		{"port zero is default, negative is not", StartRequest{ID: "a", APIPort: -1, Parameters: good}, "port"},
		{"port too high", StartRequest{ID: "a", APIPort: 70000, Parameters: good}, "port"},
		{"zmq port too high", StartRequest{ID: "a", ZMQPort: 65536, Parameters: good}, "zmq_port"},
		{"recall threshold above 1", StartRequest{ID: "a", Parameters: with("recall_threshold", 1.5)}, "recall_threshold"},
		{"negative recall threshold", StartRequest{ID: "a", Parameters: with("recall_threshold", -0.1)}, "recall_threshold"},
		{"indexer type", StartRequest{ID: "a", Parameters: with("indexer_type", "HNSW")}, "indexer_type"},
		{"max predictions zero", StartRequest{ID: "a", Parameters: with("max_predictions", 0)}, "max_predictions"},
		{"negative max pattern length", StartRequest{ID: "a", Parameters: with("max_pattern_length", -1)}, "max_pattern_length"},
		{"persistence zero", StartRequest{ID: "a", Parameters: with("persistence", 0)}, "persistence"},
		{"negative quiescence", StartRequest{ID: "a", Parameters: with("quiescence", -1)}, "quiescence"},
		{"relative processor command", StartRequest{ID: "a", Command: []string{"python3", "-m", "kato"}, Parameters: good}, "processor_command"},
		{"unknown network", StartRequest{ID: "a", Network: "bridge", Parameters: good}, "network"},
		{"unknown processor", StartRequest{ID: "a", Processor: "v9", Parameters: good}, "processor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.start(t, StartRequest{ID: "existing"})
			before, _ := os.ReadFile(e.m.Registry.Path)
			calls := len(e.sd.callLog())
			_, err := e.m.Start(context.Background(), tc.req)
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a FieldError on %s", err, tc.field)
			}
			after, _ := os.ReadFile(e.m.Registry.Path)
			if string(before) != string(after) {
				t.Error("registry changed")
			}
			if got := e.sd.callLog()[calls:]; len(got) != 0 {
				t.Errorf("systemd calls made: %q", got)
			}
			if entries, _ := os.ReadDir(e.m.Paths.EnvDir); len(entries) != 1 {
				t.Errorf("environment files: %d, want 1", len(entries))
			}
		})
	}
}

func TestStop(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) *testEnv {
		e := newTestEnv(t)
		e.start(t, StartRequest{ID: "processor-1", Name: "Main Processor"})
		e.start(t, StartRequest{ID: "processor-2", Name: "Secondary"})
		e.start(t, StartRequest{ID: "processor-3", Name: "Secondary"})
		return e
	}
	assertGone := func(t *testing.T, e *testEnv, id string) {
		t.Helper()
		if _, ok := e.registry(t).Instances[id]; ok {
			t.Errorf("%s still registered", id)
		}
		if _, err := os.Stat(filepath.Join(e.m.Paths.EnvDir, id+".env")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s environment file left", id)
		}
		if _, err := os.Stat(filepath.Join(e.m.Paths.UnitDir, "kato@"+id+".service.d")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s drop-in left", id)
		}
		if u, _ := e.sd.Unit(ctx, "kato@"+id+".service"); u.ActiveState == "active" || e.sd.enabled[u.Name] {
			t.Errorf("%s unit still active or enabled: %+v", id, u)
		}
	}
	t.Run("by id", func(t *testing.T) {
		e := setup(t)
		if _, err := e.m.Stop(ctx, "processor-1"); err != nil {
			t.Fatal(err)
		}
		assertGone(t, e, "processor-1")
		if len(e.registry(t).Instances) != 2 {
			t.Fatal("other instances touched")
		}
	})
	t.Run("by name", func(t *testing.T) {
		e := setup(t)
		if _, err := e.m.Stop(ctx, "Main Processor"); err != nil {
			t.Fatal(err)
		}
		assertGone(t, e, "processor-1")
	})
	t.Run("ambiguous name", func(t *testing.T) {
		e := setup(t)
		if _, err := e.m.Stop(ctx, "Secondary"); !errors.Is(err, config.ErrAmbiguous) {
			t.Fatalf("err = %v, want ErrAmbiguous", err)
		}
		if len(e.registry(t).Instances) != 3 {
			t.Fatal("an ambiguous stop removed something")
		}
	})
	t.Run("unknown", func(t *testing.T) {
		e := setup(t)
		if _, err := e.m.Stop(ctx, "nope"); !errors.Is(err, config.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("failed unit", func(t *testing.T) {
		e := setup(t)
		e.sd.set("kato@processor-2.service", func(u *UnitState) { u.ActiveState, u.SubState, u.NRestarts = "failed", "failed", 5 })
		if _, err := e.m.Stop(ctx, "processor-2"); err != nil {
			t.Fatal(err)
		}
		assertGone(t, e, "processor-2")
		if u, _ := e.sd.Unit(ctx, "kato@processor-2.service"); u.ActiveState == "failed" {
			t.Fatal("failed state not reset")
		}
	})
	for _, tc := range []struct {
		name         string
		withServices bool
	}{{"all keeping services", false}, {"all with services", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.sd.set("mongod.service", func(u *UnitState) { u.ActiveState, u.SubState = "active", "running" })
			res, err := e.m.StopAll(ctx, tc.withServices)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Stopped) != 3 {
				t.Fatalf("stopped %q", res.Stopped)
			}
			for _, id := range []string{"processor-1", "processor-2", "processor-3"} {
				assertGone(t, e, id)
			}
			u, _ := e.sd.Unit(ctx, "mongod.service")
			if (u.ActiveState == "active") == tc.withServices {
				t.Fatalf("mongod.service = %s with services %v", u.ActiveState, tc.withServices)
			}
		})
	}
}

func TestRestartKeepsSettings(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "p", APIPort: 8010})
	e.m.Config.Services.MongoURL = "mongodb://db.example:27017"
	inst, err := e.m.Restart(ctx, "p", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if inst.APIPort != 8010 || inst.ZMQPort != 0 {
		t.Fatalf("ports changed: %+v", inst)
	}
	env := readEnvFile(filepath.Join(e.m.Paths.EnvDir, "p.env"))
	if env["MONGO_BASE_URL"] != "mongodb://db.example:27017" {
		t.Fatalf("restart did not pick up the configuration: %q", env["MONGO_BASE_URL"])
	}
	if got := e.sd.callLog(); got[len(got)-2] != "restart kato@p.service" {
		t.Fatalf("calls = %q", got)
	}
}

func TestListAndStatus(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.sd.set("mongod.service", func(u *UnitState) { u.ActiveState, u.SubState = "active", "running" })
	e.start(t, StartRequest{ID: "a", Name: "A"})
	e.start(t, StartRequest{ID: "b", Name: "B"})
	e.sd.set("kato@b.service", func(u *UnitState) { u.ActiveState, u.SubState, u.NRestarts = "failed", "failed", 5 })
	views, err := e.m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 2 || views[0].State() != "running" || views[0].PID == 0 || views[0].MemoryBytes != 42<<20 || views[0].UptimeSeconds < 59 {
		t.Fatalf("a = %+v", views[0])
	}
	if views[1].State() != "failed" || views[1].PID != 0 {
		t.Fatalf("b = %+v", views[1])
	}
	listCalls := 0
	for _, c := range e.sd.callLog() {
		if strings.HasPrefix(c, "list") {
			listCalls++
		}
	}
	st, err := e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.SystemdReachable || len(st.Services) != 1 || st.Services[0].ActiveState != "active" {
		t.Fatalf("status = %+v", st)
	}
	a, b := st.Instances[0], st.Instances[1]
	if !a.APIListening || a.Problem != "" {
		t.Errorf("a = %+v", a)
	}
	if b.Restarts != 5 || b.Problem == "" {
		t.Errorf("b = %+v", b)
	}
	if st.Healthy() {
		t.Error("status healthy with a failed instance")
	}
	// A foreign process takes a's port: status must notice.
	e.ports.listen(a.APIPort, 4242)
	st, _ = e.m.Status(ctx)
	if st.Instances[0].APIListening || st.Instances[0].APIHolder != 4242 {
		t.Errorf("foreign holder not seen: %+v", st.Instances[0])
	}
}

func TestDriftAndGC(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "kept"})
	e.start(t, StartRequest{ID: "vanished"})
	e.start(t, StartRequest{ID: "orphan"})
	// The unit files of one entry vanish; another loses its entry.
	os.RemoveAll(filepath.Join(e.m.Paths.UnitDir, "kato@vanished.service.d"))
	os.Remove(filepath.Join(e.m.Paths.EnvDir, "vanished.env"))
	if err := e.m.Registry.Update(func(r *config.Registry) error { delete(r.Instances, "orphan"); return nil }); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.Drift.MissingUnits, ",") != "vanished" || strings.Join(st.Drift.OrphanUnits, ",") != "orphan" {
		t.Fatalf("drift = %+v", st.Drift)
	}
	done, err := e.m.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(done.MissingUnits, ",") != "vanished" || strings.Join(done.OrphanUnits, ",") != "orphan" {
		t.Fatalf("gc = %+v", done)
	}
	st, _ = e.m.Status(ctx)
	if !st.Drift.Empty() {
		t.Fatalf("drift after gc = %+v", st.Drift)
	}
	if r := e.registry(t); len(r.Instances) != 1 || r.Instances["kept"] == nil {
		t.Fatalf("registry after gc = %v", r.Instances)
	}
	if u, _ := e.sd.Unit(ctx, "kato@orphan.service"); u.ActiveState == "active" {
		t.Fatal("orphan unit still running")
	}
}

func TestInstallUnitsOnFirstUse(t *testing.T) {
	e := newTestEnv(t)
	delete(e.sd.files, "kato@.service")
	var ran []string
	e.m.RunTool = func(ctx context.Context, argv ...string) error {
		ran = append(ran, strings.Join(argv, " "))
		return nil
	}
	e.start(t, StartRequest{ID: "a"})
	root := filepath.Dir(filepath.Dir(e.m.Paths.VendorUnitDir))
	for _, f := range []string{"systemd/system/kato@.service", "systemd/system/kato.target", "systemd/system/kg-worker@.service", "systemd/system/kg-workers.target", "sysusers.d/kato.conf", "tmpfiles.d/kato.conf"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("%s not installed: %v", f, err)
		}
	}
	// Nothing vendor-made lands in the administrator's /etc.
	for _, d := range []string{e.m.Paths.AdminSysusersDir, e.m.Paths.AdminTmpfilesDir} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was created", d)
		}
	}
	for _, f := range []string{"kato@.service", "kato.target", "kg-worker@.service", "kg-workers.target"} {
		if _, err := os.Stat(filepath.Join(e.m.Paths.UnitDir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s written into %s", f, e.m.Paths.UnitDir)
		}
	}
	if len(ran) != 2 || !strings.HasPrefix(ran[0], "systemd-sysusers ") || !strings.HasPrefix(ran[1], "systemd-tmpfiles --create ") {
		t.Fatalf("tools run: %q", ran)
	}
	// Both targets are enabled, so what is started comes back at boot,
	// and root's way to the queue is open, now and at boot.
	// The liveness check runs from now on too.
	for _, target := range []string{"kato.target", "kg-workers.target", "kato-queue.socket", "kato-liveness.timer"} {
		if !e.sd.enabled[target] {
			t.Errorf("%s not enabled", target)
		}
	}
	for _, unit := range []string{"kato-queue.socket", "kato-liveness.timer"} {
		if u, _ := e.sd.Unit(context.Background(), unit); u.ActiveState != "active" {
			t.Errorf("%s is %s after install-units, want active", unit, u.ActiveState)
		}
	}
	// Installed again with nothing changed: no file is rewritten.
	res, err := e.m.InstallUnits(context.Background())
	if err != nil || len(res.Written) != 0 || len(res.Removed) != 0 {
		t.Fatalf("second install changed %+v (%v)", res, err)
	}
}

// TestInstallUnitsMovesEarlierCopiesOutOfEtc: an earlier version wrote the
// vendor files into /etc, where they would shadow the new ones for good.
// They are removed, the administrator's own files stay, and enabled
// instances are enabled again so that their links point at the new files.
func TestInstallUnitsMovesEarlierCopiesOutOfEtc(t *testing.T) {
	e := newTestEnv(t)
	p := e.m.Paths
	old := map[string]string{
		filepath.Join(p.UnitDir, "kato@.service"):          "# Installed by kato-manager (old)\n[Service]\n",
		filepath.Join(p.UnitDir, "kato.target"):            "# Installed by kato-manager (old)\n",
		filepath.Join(p.AdminSysusersDir, "kato.conf"):     "# Installed by kato-manager (old)\nu kato -\n",
		filepath.Join(p.AdminTmpfilesDir, "kato.conf"):     "# my own override\nd /srv/kato 0750 kato kato -\n",
		filepath.Join(p.UnitDir, "kato.target.wants", "x"): "",
	}
	for path, content := range old {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(p.UnitDir, "kato.target.wants", "x"))
	if err := os.Symlink(filepath.Join(p.UnitDir, "kato@.service"), filepath.Join(p.UnitDir, "kato.target.wants", "kato@a.service")); err != nil {
		t.Fatal(err)
	}
	res, err := e.m.InstallUnits(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantRemoved := []string{filepath.Join(p.UnitDir, "kato@.service"), filepath.Join(p.UnitDir, "kato.target"), filepath.Join(p.AdminSysusersDir, "kato.conf")}
	if !slices.Equal(res.Removed, wantRemoved) {
		t.Errorf("removed %q, want %q", res.Removed, wantRemoved)
	}
	for _, path := range wantRemoved {
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there", path)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(p.AdminTmpfilesDir, "kato.conf")); !strings.HasPrefix(string(data), "# my own override") {
		t.Error("the administrator's tmpfiles.d override was touched")
	}
	if !e.sd.enabled["kato@a.service"] || !e.sd.enabled["kato.target"] {
		t.Errorf("enabled after the move: %v", e.sd.enabled)
	}
}

func TestSecureConfigFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own files as root")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "kato.toml")
	if err := os.WriteFile(path, []byte("[kg]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	did, err := secureConfigFile(path, "nogroup")
	if err != nil || !did {
		t.Fatalf("secureConfigFile = %v, %v", did, err)
	}
	info, _ := os.Stat(path)
	if st := info.Sys().(*syscall.Stat_t); info.Mode().Perm() != 0o640 || st.Uid != 0 || st.Gid != 65534 {
		t.Errorf("kato.toml is %v %d:%d, want 0640 root:nogroup", info.Mode(), st.Uid, st.Gid)
	}
	// The administrator's choice of group stays.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if did, err := secureConfigFile(path, "nogroup"); did || err != nil {
		t.Errorf("a file already given a group was changed: %v %v", did, err)
	}
	// A link is not followed.
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o644)
	link := filepath.Join(dir, "link.toml")
	os.Symlink(target, link)
	if did, err := secureConfigFile(link, "nogroup"); did || err != nil {
		t.Errorf("through a link: %v %v", did, err)
	}
	if info, _ := os.Stat(target); info.Mode().Perm() != 0o644 {
		t.Errorf("the link's target changed to %v", info.Mode())
	}
}

// TestStartReloadsABrokenUnit starts an instance that systemd holds as
// bad-setting, as after a daemon-reload while its drop-in was missing: the
// rewritten drop-in takes effect only after another daemon-reload.
func TestStartReloadsABrokenUnit(t *testing.T) {
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "a"})
	ctx := context.Background()
	if err := e.sd.StopUnit(ctx, "kato@a.service"); err != nil {
		t.Fatal(err)
	}
	e.sd.unit("kato@a.service").LoadState = "bad-setting"
	e.sd.calls = nil
	e.start(t, StartRequest{ID: "a"})
	if !slices.Contains(e.sd.calls, "reload") {
		t.Errorf("no daemon-reload before starting a bad-setting unit: %q", e.sd.calls)
	}
}

// TestInstallUnitsUserScope installs into a user scope: the units rendered
// for a user manager in the user's unit directory, no sysusers.d or
// tmpfiles.d entry and no tool run, and an instance's state directory made
// by kato-manager, as no StateDirectory= makes it there.
func TestInstallUnitsUserScope(t *testing.T) {
	e := newTestEnv(t)
	home := t.TempDir()
	paths, err := config.UserPaths(func(k string) string { return map[string]string{"HOME": home}[k] })
	if err != nil {
		t.Fatal(err)
	}
	e.m.Paths = paths
	delete(e.sd.files, "kato@.service")
	var ran []string
	e.m.RunTool = func(ctx context.Context, argv ...string) error {
		ran = append(ran, strings.Join(argv, " "))
		return nil
	}
	e.m.Config.Services.Units = nil
	e.start(t, StartRequest{ID: "a"})
	for dir, want := range map[string][]string{
		paths.VendorUnitDir: {"kato-front@.service", "kato-group@.target", "kato.target", "kato@.service", "kg-worker@.service", "kg-workers.target"},
		paths.UnitDir:       {"kato@a.service.d"},
	} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, en := range entries {
			names = append(names, en.Name())
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s holds %q, want %q", dir, names, want)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(paths.VendorUnitDir, "kato@.service"))
	if !strings.Contains(string(unit), "EnvironmentFile="+paths.EnvDir+"/%i.env") || strings.Contains(string(unit), "\nUser=") {
		t.Errorf("kato@.service is not the user manager's:\n%s", unit)
	}
	if len(ran) != 0 {
		t.Errorf("tools run in the user scope: %q", ran)
	}
	if e.sd.enabled["kato-liveness.timer"] || e.sd.enabled["kato-queue.socket"] {
		t.Error("the user scope enabled a unit of root's alone")
	}
	if _, err := os.Stat(filepath.Join(paths.EnvDir, "a.env")); err != nil {
		t.Errorf("environment file: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(paths.StateDir, "a")); err != nil || !fi.IsDir() {
		t.Errorf("state directory of a: %v", err)
	}
}

func TestAllocatePort(t *testing.T) {
	taken := func(ports ...int) func(int) bool {
		return func(p int) bool {
			for _, q := range ports {
				if p == q {
					return true
				}
			}
			return false
		}
	}
	for _, tc := range []struct {
		name        string
		want, last  int
		taken       []int
		got         int
		errNoneFree bool
	}{
		{name: "free", want: 8000, last: 8999, got: 8000},
		{name: "skips taken", want: 8000, last: 8999, taken: []int{8000, 8001}, got: 8002},
		{name: "range exhausted", want: 8000, last: 8001, taken: []int{8000, 8001}, errNoneFree: true},
		{name: "above range searches on", want: 9500, last: 8999, taken: []int{9500}, got: 9501},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AllocatePort(tc.want, tc.last, taken(tc.taken...))
			if tc.errNoneFree {
				if !errors.Is(err, ErrNoFreePort) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || got != tc.got {
				t.Fatalf("got %d, %v; want %d", got, err, tc.got)
			}
		})
	}
}

// withGenerationA adds the named processor "engine", of generation A, to the
// configuration.
func withGenerationA(e *testEnv, network string) {
	p := e.m.Config.Processor
	p.Command = []string{"/opt/kato/engine"}
	p.Generation, p.Ready, p.Network, p.StopTimeout = "a", "GET /{id}/ping", network, 10
	e.m.Config.Processors = map[string]config.Processor{"engine": p}
}

func TestGenerationAOnTheHostNetwork(t *testing.T) {
	e := newTestEnv(t)
	withGenerationA(e, config.NetworkHost)
	res := e.start(t, StartRequest{ID: "first", Processor: "engine"})
	if res.Instance.ZMQPort != 5555 || res.Instance.Network != "host" || res.Instance.Processor != "engine" {
		t.Fatalf("first = %+v", res.Instance)
	}
	env := readEnvFile(filepath.Join(e.m.Paths.EnvDir, "first.env"))
	if env["ZMQ_PORT"] != "5555" || env["REST_PORT"] != "8000" || !strings.Contains(env["MANIFEST"], `"id":"first"`) || env["MAX_PREDICTIONS"] != "" {
		t.Errorf("generation-A environment = %v", env)
	}
	before, _ := os.ReadFile(e.m.Registry.Path)
	_, err := e.m.Start(context.Background(), StartRequest{ID: "second", Processor: "engine", Parameters: config.DefaultParameters()})
	if !errors.Is(err, ErrCrossTalk) || !strings.Contains(err.Error(), "instance first already runs a generation-A processor on the host network") ||
		!strings.Contains(err.Error(), "--network private") {
		t.Fatalf("second generation-A instance on the host network: %v", err)
	}
	if after, _ := os.ReadFile(e.m.Registry.Path); string(after) != string(before) {
		t.Error("a refused start changed the registry")
	}
	// Generation B shares the host network with it.
	if res := e.start(t, StartRequest{ID: "fastapi"}); res.Instance.ZMQPort == 5555 {
		t.Errorf("generation B got ZMQ port 5555 from a generation-A instance: %+v", res.Instance)
	}
	fresh := newTestEnv(t)
	withGenerationA(fresh, config.NetworkHost)
	_, err = fresh.m.Start(context.Background(), StartRequest{ID: "third", Processor: "engine", Network: "host", ZMQPort: 5600, Parameters: config.DefaultParameters()})
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "zmq_port" {
		t.Fatalf("generation A on the host network with ZMQ port 5600: %v", err)
	}
}

func TestPrivateNetwork(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	withGenerationA(e, config.NetworkPrivate)
	e.m.Config.Services.Links = map[string]string{"qdrant": "127.0.0.1:6333"}
	for _, id := range []string{"p1", "p2", "p3"} {
		e.start(t, StartRequest{ID: id, Processor: "engine"})
	}
	r := e.registry(t)
	for _, id := range []string{"p1", "p2", "p3"} {
		if r.Instances[id].Network != "private" {
			t.Errorf("%s network = %q, want the processor's private", id, r.Instances[id].Network)
		}
	}
	env := readEnvFile(filepath.Join(e.m.Paths.EnvDir, "p2.env"))
	if env["REST_PORT"] != "8000" || env["ZMQ_PORT"] != "5555" || env["MONGO_BASE_URL"] != "mongodb://127.0.0.1:27017" {
		t.Errorf("inside the namespace p2 gets %v", env)
	}
	for _, unit := range []string{"kato-proxy@p2.api.socket", "kato-proxy@p2.api.service", "kato-proxy@p2.zmq.socket",
		"kato-proxy@p2.zmq.service", "kato-link@p2.mongo.socket", "kato-link@p2.mongo.service", "kato-link@p2.qdrant.socket"} {
		if _, err := os.Stat(filepath.Join(e.m.Paths.UnitDir, unit+".d", "kato-manager.conf")); err != nil {
			t.Errorf("%s has no drop-in: %v", unit, err)
		}
	}
	sock, _ := os.ReadFile(filepath.Join(e.m.Paths.UnitDir, "kato-proxy@p2.api.socket.d", "kato-manager.conf"))
	if !strings.Contains(string(sock), fmt.Sprintf("ListenStream=%d\n", r.Instances["p2"].APIPort)) {
		t.Errorf("p2's API socket:\n%s", sock)
	}
	// A link dropped from kato.toml loses its units on restart.
	e.m.Config.Services.Links = nil
	if _, err := e.m.Restart(ctx, "p2", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.m.Paths.UnitDir, "kato-link@p2.qdrant.socket.d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dropped link's drop-in: %v", err)
	}
	e.sd.StartUnit(ctx, "kato-proxy@p2.api.socket")
	if _, err := e.m.Stop(ctx, "p2"); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(e.m.Paths.UnitDir, "kato-*@p2.*"))
	if len(left) != 0 {
		t.Errorf("stop left %q", left)
	}
	if u, _ := e.sd.Unit(ctx, "kato-proxy@p2.api.socket"); u.ActiveState != "inactive" {
		t.Errorf("stop left the API socket %s", u.ActiveState)
	}
	if kept, _ := filepath.Glob(filepath.Join(e.m.Paths.UnitDir, "kato-proxy@p1.*")); len(kept) != 4 {
		t.Errorf("stopping p2 touched p1's units: %q", kept)
	}
	// A network unit left without its instance is drift that gc repairs.
	os.MkdirAll(filepath.Join(e.m.Paths.UnitDir, "kato-link@gone.mongo.socket.d"), 0o755)
	os.WriteFile(filepath.Join(e.m.Paths.UnitDir, "kato-link@gone.mongo.socket.d", "kato-manager.conf"), []byte("[Socket]\n"), 0o644)
	d, err := e.m.GC(ctx)
	if err != nil || len(d.OrphanUnits) != 1 || d.OrphanUnits[0] != "gone" {
		t.Fatalf("gc = %+v, %v", d, err)
	}
	if _, err := os.Stat(filepath.Join(e.m.Paths.UnitDir, "kato-link@gone.mongo.socket.d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("gc left the stray network unit: %v", err)
	}
}

func TestStartSaysWhatItSaw(t *testing.T) {
	for _, tc := range []struct{ behavior, want string }{
		{"deaf", "listens on port 8000 but GET /health did not answer 200 within 200ms"},
		{"silent", "did not listen on port 8000 within 200ms (timed out)"},
		{"crash", "exited and was restarted by systemd before answering GET /health"},
	} {
		t.Run(tc.behavior, func(t *testing.T) {
			e := newTestEnv(t)
			e.behavior["x"] = tc.behavior
			_, err := e.m.Start(context.Background(), StartRequest{ID: "x", Parameters: config.DefaultParameters(), Timeout: 200 * time.Millisecond})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestUserScopeRefusesPrivateNetwork: a user manager cannot run the
// forwarders of a private network, so --user refuses it before anything is
// written.
func TestUserScopeRefusesPrivateNetwork(t *testing.T) {
	e := newTestEnv(t)
	e.m.Paths.User = true
	_, err := e.m.Start(context.Background(), StartRequest{ID: "p", Network: config.NetworkPrivate, Parameters: config.DefaultParameters()})
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "network" || fe.Value != "private" || !strings.Contains(fe.Rule, "--user") {
		t.Fatalf("start --network private in the user scope: %v", err)
	}
	reg, lerr := e.m.Registry.Load()
	if lerr != nil || len(reg.Instances) != 0 {
		t.Errorf("registry after the refusal: %+v %v", reg, lerr)
	}
	if calls := e.sd.callLog(); slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "start") }) {
		t.Errorf("systemd calls after the refusal: %q", calls)
	}
}

// TestGenerationBHasNoZMQPort: generation B serves HTTP only, so it gets no
// ZMQ port; an entry an older version gave one (5555 here) is corrected by
// the next start and does not keep a generation-A instance off the host
// network.
func TestGenerationBHasNoZMQPort(t *testing.T) {
	e := newTestEnv(t)
	withGenerationA(e, config.NetworkHost)
	res := e.start(t, StartRequest{ID: "fastapi"})
	if res.Instance.ZMQPort != 0 {
		t.Fatalf("generation B got ZMQ port %d", res.Instance.ZMQPort)
	}
	_, err := e.m.Start(context.Background(), StartRequest{ID: "b2", ZMQPort: 5600, Parameters: config.DefaultParameters()})
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "zmq_port" || !strings.Contains(err.Error(), "no ZMQ port") {
		t.Fatalf("generation B with --zmq-port: %v", err)
	}
	// What an older version wrote: the generation-B instance holds 5555.
	if err := e.m.Registry.Update(func(r *config.Registry) error {
		r.Instances["fastapi"].ZMQPort = 5555
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	res = e.start(t, StartRequest{ID: "engine", Processor: "engine"})
	if res.Instance.ZMQPort != 5555 {
		t.Fatalf("generation A on the host network got ZMQ port %d", res.Instance.ZMQPort)
	}
	if got := e.registry(t).Instances["fastapi"].ZMQPort; got != 0 {
		t.Errorf("the generation-B entry keeps ZMQ port %d", got)
	}
}

// TestGenerationAStopEndsWithAKill: generation A was seen to hang on SIGTERM
// under load until SIGKILL; its drop-in bounds the stop by stop_timeout and
// counts the SIGKILL at its end as a clean exit, as generation B's does.
func TestGenerationAStopEndsWithAKill(t *testing.T) {
	for _, network := range []string{config.NetworkHost, config.NetworkPrivate} {
		t.Run(network, func(t *testing.T) {
			e := newTestEnv(t)
			withGenerationA(e, network)
			e.start(t, StartRequest{ID: "engine", Processor: "engine"})
			data, err := os.ReadFile(e.m.Paths.DropInPath("engine"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"SuccessExitStatus=SIGKILL\n", "timeout 10 tail --pid=${MAINPID}", "kill -KILL ${MAINPID}", "TimeoutStopSec=15s\n"} {
				if !strings.Contains(string(data), want) {
					t.Errorf("generation-A drop-in lacks %q:\n%s", want, data)
				}
			}
		})
	}
}

// TestStartLeavesAnUnregisteredRunningUnitAlone: the multi-instance guide's
// troubleshooting step removes a registry entry while its unit runs; a start
// of that id refuses at once, naming the next step, and stops nothing.
func TestStartLeavesAnUnregisteredRunningUnitAlone(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "orphan", APIPort: 8001})
	if err := e.m.Registry.Update(func(r *config.Registry) error {
		delete(r.Instances, "orphan")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := len(e.callsLike(""))
	_, err := e.m.Start(ctx, StartRequest{ID: "orphan", Parameters: config.DefaultParameters()})
	if !errors.Is(err, ErrUnregisteredUnit) || !strings.Contains(err.Error(), "kato-manager stop orphan") {
		t.Fatalf("start of an unregistered running unit: %v", err)
	}
	for _, c := range e.callsLike("")[before:] {
		if !strings.HasPrefix(c, "list") {
			t.Errorf("the refused start called %q", c)
		}
	}
	if u, _ := e.sd.Unit(ctx, "kato@orphan.service"); u.ActiveState != "active" {
		t.Errorf("the orphan is %s", u.ActiveState)
	}
	if _, ok := e.registry(t).Instances["orphan"]; ok {
		t.Error("the refused start registered the instance")
	}
	// apply refuses to create it too.
	_, err = e.applyFile(t, "instances:\n  - {id: orphan}\n", ApplyOptions{})
	if !errors.Is(err, ErrUnregisteredUnit) {
		t.Fatalf("apply creating an unregistered running unit: %v", err)
	}
	if u, _ := e.sd.Unit(ctx, "kato@orphan.service"); u.ActiveState != "active" {
		t.Errorf("after apply the orphan is %s", u.ActiveState)
	}
}

// TestStartChecksWhoHoldsThePort: on the host network, a health request
// answered by a process that is not the unit's is no proof of a start, and a
// port held by such a process before the start fails it at once.
func TestStartChecksWhoHoldsThePort(t *testing.T) {
	ctx := context.Background()
	foreignProbe := func(e *testEnv, port int) {
		own := e.m.Probe
		e.m.Probe = func(ctx context.Context, p int, path string) (int, error) {
			if holders, _ := e.ports.Listening(ctx); p == port && holders[port] == 99 {
				return 200, nil // the foreign process answers anything
			}
			return own(ctx, p, path)
		}
	}
	t.Run("held before the start", func(t *testing.T) {
		e := newTestEnv(t)
		e.start(t, StartRequest{ID: "a", APIPort: 8001})
		e.sd.set("kato@a.service", func(u *UnitState) { u.ActiveState, u.SubState, u.MainPID = "inactive", "dead", 0 })
		e.ports.close(8001)
		e.ports.listen(8001, 99)
		e.behavior["a"] = "silent" // it cannot bind: the port is taken
		foreignProbe(e, 8001)
		_, err := e.m.Start(ctx, StartRequest{ID: "a", Parameters: config.DefaultParameters()})
		if !errors.Is(err, ErrPortHeld) || !strings.Contains(err.Error(), "held by pid 99") {
			t.Fatalf("start with the port held: %v", err)
		}
		if starts := e.callsLike("start kato@a.service"); len(starts) != 1 {
			t.Errorf("starts %q: the refused start queued one", starts)
		}
	})
	t.Run("taken while it starts", func(t *testing.T) {
		e := newTestEnv(t)
		e.behavior["b"] = "silent"
		started := e.sd.onStart
		e.sd.onStart = func(unit string, u *UnitState) {
			started(unit, u)
			if unit == "kato@b.service" {
				e.ports.listen(8002, 99)
			}
		}
		foreignProbe(e, 8002)
		_, err := e.m.Start(ctx, StartRequest{ID: "b", APIPort: 8002, Parameters: config.DefaultParameters(), Timeout: 5 * time.Second})
		if !errors.Is(err, ErrPortHeld) || !strings.Contains(err.Error(), "answered the health request") {
			t.Fatalf("start answered by a foreign process: %v", err)
		}
		if _, ok := e.registry(t).Instances["b"]; ok {
			t.Error("the failed start left b registered")
		}
	})
	t.Run("apply", func(t *testing.T) {
		e := newTestEnv(t)
		e.ports.listen(8003, 99)
		e.start(t, StartRequest{ID: "c", APIPort: 8004})
		// Moved onto a port the foreign process holds since the plan.
		e.behavior["c"] = "silent"
		foreignProbe(e, 8003)
		e.ports.close(8003)
		e.sd.onList = func() { e.ports.listen(8003, 99) }
		res, err := e.applyFile(t, "instances:\n  - {id: c, port: 8003}\n", ApplyOptions{})
		if !errors.Is(err, ErrBatchFailed) || len(res.Failed) != 1 || !errors.Is(res.Failed[0].Err, ErrPortHeld) {
			t.Fatalf("apply onto a held port: %+v %v", res, err)
		}
	})
}
