package supervisor

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
)

func newTestPool(t *testing.T) (*Pool, *fakeSystemd, map[int32]string) {
	t.Helper()
	sd := newFakeSystemd()
	pid := uint32(500)
	sd.onStart = func(unit string, u *UnitState) {
		pid++
		u.MainPID = pid
	}
	states := map[int32]string{}
	p := &Pool{
		Systemd: sd,
		Config:  config.Default(),
		EnvDir:  t.TempDir(),
		UnitDir: t.TempDir(),
		ProcessStatus: func(ctx context.Context, pid int32) ([]string, error) {
			if s, ok := states[pid]; ok {
				return []string{s}, nil
			}
			return []string{"sleep"}, nil
		},
	}
	return p, sd, states
}

func TestPoolStartScaleStop(t *testing.T) {
	ctx := context.Background()
	p, sd, _ := newTestPool(t)
	started, err := p.Start(ctx, 4, PoolSettings{PollInterval: 0.5})
	if err != nil || len(started) != 4 {
		t.Fatalf("start: %q %v", started, err)
	}
	env, _ := os.ReadFile(filepath.Join(p.EnvDir, WorkerEnvFile))
	if !strings.Contains(string(env), "KG_POLL_INTERVAL=0.5\n") {
		t.Fatalf("environment file = %q", env)
	}
	h, _ := p.Health(ctx)
	if h.TotalWorkers != 4 || h.HealthyWorkers != 4 || !h.ManagerRunning {
		t.Fatalf("health after start = %+v", h)
	}
	_, stopped, err := p.Scale(ctx, 1)
	if err != nil || strings.Join(stopped, " ") != "kg-worker@2.service kg-worker@3.service kg-worker@4.service" {
		t.Fatalf("scale down: %q %v", stopped, err)
	}
	if !sd.enabled["kg-worker@1.service"] || sd.enabled["kg-worker@2.service"] {
		t.Fatalf("enabled after scale down = %v", sd.enabled)
	}
	started, stopped, err = p.Scale(ctx, 3)
	if err != nil || len(started) != 3 || len(stopped) != 0 {
		t.Fatalf("scale up: %q %q %v", started, stopped, err)
	}
	if h, _ := p.Health(ctx); h.TotalWorkers != 3 || h.HealthyWorkers != 3 {
		t.Fatalf("health after scale up = %+v", h)
	}
	stopped, err = p.Stop(ctx)
	if err != nil || len(stopped) != 3 {
		t.Fatalf("stop: %q %v", stopped, err)
	}
	if h, _ := p.Health(ctx); h.TotalWorkers != 0 || h.ManagerRunning {
		t.Fatalf("health after stop = %+v", h)
	}
	if len(sd.enabled) != 0 {
		t.Fatalf("still enabled: %v", sd.enabled)
	}
}

func TestPoolHealthFindsStoppedAndFailedWorkers(t *testing.T) {
	ctx := context.Background()
	p, sd, states := newTestPool(t)
	if _, err := p.Start(ctx, 3, PoolSettings{}); err != nil {
		t.Fatal(err)
	}
	u2, _ := sd.Unit(ctx, "kg-worker@2.service")
	states[int32(u2.MainPID)] = "stop" // SIGSTOP: alive to systemd, doing nothing
	sd.set("kg-worker@3.service", func(u *UnitState) { u.ActiveState, u.SubState, u.NRestarts = "failed", "failed", 5 })
	h, err := p.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.HealthyWorkers != 1 || h.UnhealthyWorkers != 2 || h.WorkersRestarted != 5 {
		t.Fatalf("health = %+v", h)
	}
	if !strings.Contains(h.Workers[1].Problem, "stop") || h.Workers[2].Running {
		t.Fatalf("workers = %+v", h.Workers)
	}
	restarted, err := p.RestartUnhealthy(ctx, h)
	if err != nil || strings.Join(restarted, " ") != "kg-worker@2.service kg-worker@3.service" {
		t.Fatalf("restart unhealthy: %q %v", restarted, err)
	}
	if h, _ := p.Health(ctx); h.HealthyWorkers != 3 {
		t.Fatalf("health after restart = %+v", h)
	}
}

func TestPoolRejectsBadCounts(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{0, -1, 65} {
		p, sd, _ := newTestPool(t)
		_, err := p.Start(ctx, n, PoolSettings{})
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Field != "workers" {
			t.Errorf("start %d: %v", n, err)
		}
		if _, _, err := p.Scale(ctx, n); !errors.As(err, &fe) {
			t.Errorf("scale %d: %v", n, err)
		}
		if calls := sd.callLog(); len(calls) != 0 {
			t.Errorf("calls for %d: %q", n, calls)
		}
	}
	p, _, _ := newTestPool(t)
	if _, err := p.Start(ctx, 1, PoolSettings{PollInterval: -1}); err == nil {
		t.Error("negative poll interval accepted")
	}
}

func TestPoolStartWritesLimits(t *testing.T) {
	p, sd, _ := newTestPool(t)
	p.Config.Limits.WorkerMemoryMax, p.Config.Limits.WorkerTasksMax = "300M", 40
	if _, err := p.Start(context.Background(), 1, PoolSettings{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(p.UnitDir, "kg-worker@.service.d", "kato-manager.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\nMemoryMax=300M\nTasksMax=40\n") {
		t.Errorf("worker drop-in:\n%s", data)
	}
	if calls := sd.callLog(); !slices.Contains(calls, "reload") {
		t.Errorf("systemd not reloaded for a new drop-in: %v", calls)
	}
	// Unchanged limits: no reload the second time.
	sd.calls = nil
	if _, err := p.Start(context.Background(), 1, PoolSettings{}); err != nil {
		t.Fatal(err)
	}
	if calls := sd.callLog(); slices.Contains(calls, "reload") {
		t.Errorf("reloaded although the drop-in did not change: %v", calls)
	}
}

func TestPoolEnvFileIsPrivate(t *testing.T) {
	p, _, _ := newTestPool(t)
	if _, err := p.Start(context.Background(), 1, PoolSettings{PollInterval: 2}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(p.EnvDir, WorkerEnvFile))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("%s is %v, want 0600", WorkerEnvFile, info.Mode().Perm())
	}
}

func TestPoolHealthShowsStartLimit(t *testing.T) {
	ctx := context.Background()
	p, sd, _ := newTestPool(t)
	if _, err := p.Start(ctx, 1, PoolSettings{}); err != nil {
		t.Fatal(err)
	}
	sd.set("kg-worker@1.service", func(u *UnitState) {
		u.ActiveState, u.SubState, u.Result, u.MainPID, u.NRestarts, u.StartLimitBurst = "failed", "failed", "exit-code", 0, 5, 5
	})
	h, err := p.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.UnhealthyWorkers != 1 || !strings.Contains(h.Workers[0].Problem, "start limit hit") {
		t.Fatalf("health at the start limit: %+v", h.Workers)
	}
	if _, err := p.Restart(ctx); err != nil {
		t.Fatalf("workers restart at the start limit: %v", err)
	}
	if h, err := p.Health(ctx); err != nil || h.HealthyWorkers != 1 {
		t.Fatalf("after restart: %+v %v", h, err)
	}
}

// TestStartPollIntervalKeepsTheEnvFile sets --poll-interval on a
// kg-worker.env an operator wrote and checks that only its line changed.
func TestStartPollIntervalKeepsTheEnvFile(t *testing.T) {
	ctx := context.Background()
	p, _, _ := newTestPool(t)
	path := filepath.Join(p.EnvDir, WorkerEnvFile)
	const operator = "# set by the operator\nDB_PATH=/srv/kg/kg.db\nKG_POLL_INTERVAL=9\nKG_SERVICE_URL=http://kg.internal:8088\n"
	if err := os.WriteFile(path, []byte(operator), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Start(ctx, 1, PoolSettings{PollInterval: 0.25}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "# set by the operator\nDB_PATH=/srv/kg/kg.db\nKG_POLL_INTERVAL=0.25\nKG_SERVICE_URL=http://kg.internal:8088\n"
	if string(got) != want {
		t.Errorf("kg-worker.env =\n%s\nwant\n%s", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after start = %v, %v; want 0640 kept", fi.Mode().Perm(), err)
	}
	// A file without the line gets it appended.
	if err := os.WriteFile(path, []byte("DB_PATH=/srv/kg/kg.db"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Start(ctx, 1, PoolSettings{PollInterval: 2}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "DB_PATH=/srv/kg/kg.db\nKG_POLL_INTERVAL=2\n" {
		t.Errorf("kg-worker.env = %q", got)
	}
	// Bad values change nothing and start nothing.
	for _, v := range []float64{-1, math.NaN(), math.Inf(1), 1e300, 3601, 0.001} {
		p, sd, _ := newTestPool(t)
		path := filepath.Join(p.EnvDir, WorkerEnvFile)
		os.WriteFile(path, []byte(operator), 0o640)
		var fe *config.FieldError
		if _, err := p.Start(ctx, 1, PoolSettings{PollInterval: v}); !errors.As(err, &fe) || fe.Field != "poll_interval" ||
			!strings.Contains(fe.Rule, "from 0.01 to 3600") {
			t.Errorf("poll interval %v: %v", v, err)
		}
		if got, _ := os.ReadFile(path); string(got) != operator {
			t.Errorf("poll interval %v changed kg-worker.env to %q", v, got)
		}
		if calls := sd.callLog(); len(calls) != 0 {
			t.Errorf("poll interval %v: calls %q", v, calls)
		}
	}
}

// TestOpenPool: the pool of a host whose systemd has no unit files yet
// installs them first; one whose systemd has them installs nothing. The
// pool works in the directories of its paths, and installs with the
// manager's tools.
func TestOpenPool(t *testing.T) {
	for _, installed := range []bool{false, true} {
		e := newTestEnv(t)
		e.sd.files["kato@.service"] = installed
		e.m.Paths.WorkerEnvDir = filepath.Join(t.TempDir(), "etc/kato")
		var tools []string
		e.m.RunTool = func(_ context.Context, argv ...string) error {
			tools = append(tools, argv[0])
			return nil
		}
		p, err := e.m.OpenPool(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// The host's own tools never run from a test: the install goes
		// through the manager's RunTool.
		if installed != (len(tools) == 0) {
			t.Errorf("systemd with the unit files %v: tools run through the manager: %q", installed, tools)
		}
		_, err = os.Stat(filepath.Join(e.m.Paths.VendorUnitDir, units.WorkerTemplate))
		if installed != os.IsNotExist(err) {
			t.Errorf("systemd with the unit files %v: the workers' unit file written by OpenPool: %v", installed, err)
		}
		if p.Systemd != e.sd || p.Config != e.m.Config || p.EnvDir != e.m.Paths.WorkerEnvDir || p.UnitDir != e.m.Paths.UnitDir {
			t.Errorf("pool %+v", p)
		}
	}
}
