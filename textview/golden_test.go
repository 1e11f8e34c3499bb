package textview

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgpool"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/supervisor"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with the current output")

// golden compares got with testdata/NAME.golden, or writes it there with
// -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

var (
	running = supervisor.InstanceView{ID: "alpha", Name: "Main", Unit: "kato@alpha.service", ActiveState: "active", SubState: "running", PID: 4242,
		APIPort: 8001, ZMQPort: 5555, Processor: "default", Generation: "a", Network: "host", Group: "web", UptimeSeconds: 3725, MemoryBytes: 157286400}
	stopped = supervisor.InstanceView{ID: "beta", Name: "KatoProcessor", Unit: "kato@beta.service", ActiveState: "inactive", SubState: "dead",
		APIPort: 8002, Processor: "gone", Network: "private"}
	fronts = []supervisor.FrontView{{Group: "web", Unit: "kato-front@web.service", ActiveState: "active", SubState: "running", Address: "0.0.0.0", Port: 9000,
		Balance: "roundrobin", Answering: true, Requests: 120, Errors: 2, Counts: supervisor.MemberCounts{Up: 1, Down: 1}, Problem: "member beta is down",
		Members: []supervisor.FrontMember{{ID: "alpha", State: "up", Sessions: 3, Weight: 1, Requests: 100}, {ID: "beta", State: "down", Weight: 2, Requests: 20, Errors: 2}}}}
	status = &supervisor.Status{SystemdReachable: true, SystemdVersion: "257",
		Services:  []supervisor.ServiceState{{Unit: "mongod.service", LoadState: "loaded", ActiveState: "active", SubState: "running"}},
		Instances: []supervisor.InstanceStatus{{InstanceView: running, Restarts: 2, LivenessRestarts: 1, APIListening: true, Answering: true}, {InstanceView: stopped, Problem: "unit not running"}},
		Fronts:    fronts, Warnings: []string{"kato.toml names no processor command"},
		Drift: supervisor.Drift{MissingUnits: []string{"gamma"}, NotRunning: []string{"beta"}}}
)

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		render func(b *strings.Builder) error
	}{
		{"list", func(b *strings.Builder) error { return List(b, []supervisor.InstanceView{running, stopped}) }},
		{"list-hosts", func(b *strings.Builder) error {
			return HostList(b, []supervisor.HostInstance{{Host: "a.example", InstanceView: running}, {Host: "b.example", InstanceView: stopped}})
		}},
		{"fronts", func(b *strings.Builder) error { return Fronts(b, Palette{}, fronts, false) }},
		{"status", func(b *strings.Builder) error { Status(b, Palette{}, status); return nil }},
		{"status-colour", func(b *strings.Builder) error { Status(b, Palette{On: true}, status); return nil }},
		{"status-unreachable", func(b *strings.Builder) error {
			Status(b, Palette{}, &supervisor.Status{SystemdError: "dial unix /run/systemd/private: no such file"})
			return nil
		}},
		{"status-hosts", func(b *strings.Builder) error {
			HostStatuses(b, Palette{}, []supervisor.HostStatus{{Host: "a.example", Status: status}, {Host: "down.example", Error: "host unreachable"},
				{Host: "c.example", Status: &supervisor.Status{SystemdError: "no bus"}}})
			return nil
		}},
		{"group-result", func(b *strings.Builder) error {
			GroupResult(b, "started", &supervisor.GroupResult{Done: []string{"web-1"}, Running: []string{"web-2"},
				Failed: []supervisor.BatchFailure{{ID: "web-3", Err: errors.New("did not answer"), Journal: []string{"listening on 8003", "exit 1"}}}})
			return nil
		}},
		{"applied", func(b *strings.Builder) error {
			Applied(b, "fleet.yaml", &supervisor.ApplyResult{
				Plan: fleet.Plan{Steps: []fleet.Step{{Action: fleet.Create, ID: "new"}, {Action: fleet.Change, ID: "changed"}, {Action: fleet.Restart, ID: "stale"},
					{Action: fleet.Keep, ID: "same"}, {Action: fleet.Create, ID: "broken"}}},
				Done:   []string{"new", "changed", "stale"},
				Failed: []supervisor.BatchFailure{{ID: "broken", Action: fleet.Create, Err: errors.New("exited"), RollbackErr: errors.New("unit busy"), Journal: []string{"bad flag"}}}})
			return nil
		}},
		{"health", func(b *strings.Builder) error {
			Health(b, kgpool.HealthReport{Status: kgpool.StatusDegraded, TotalWorkers: 2, HealthyWorkers: 2, WorkersRestarted: 1,
				KGServiceStatus: &kgpool.ServiceHealth{ServiceStatus: kgdb.ServiceStatus{Enabled: true, URL: "http://kg:8080"}, Problem: "connection refused"},
				WorkerDetails:   []supervisor.WorkerHealth{{Host: "a.example", Local: true, Index: 0, WorkerID: 1, Unit: "kg-worker@1.service", Running: true, ActiveState: "active", SubState: "running", PID: 99}}})
			return nil
		}},
		{"queue-list", func(b *strings.Builder) error {
			old := time.Local
			time.Local = time.UTC
			defer func() { time.Local = old }()
			return QueueList(b, []queue.Item{
				{ID: 2, ContentID: 7, Status: queue.StatusFailed, Priority: 1, RetryCount: 3, QueuedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ErrorMessage: "bad\tanswer\n\x1b[31mred"},
				{ID: 1, ContentID: 8, Status: queue.StatusProcessing, Priority: 5, QueuedAt: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), LeaseOwner: "host-1/kg-worker@1"}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := tc.render(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, b.String())
		})
	}
}
