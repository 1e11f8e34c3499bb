package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
	"github.com/kato-manager/kato-manager/supervisor"
)

// statusJSON returns `kato-manager status --json`, whatever its exit code.
func (m *machine) statusJSON() supervisor.Status {
	m.t.Helper()
	var st supervisor.Status
	r := m.km("status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		m.t.Fatalf("status --json: %v\n%s", err, r)
	}
	return st
}

// TestSafetyOnRealSystemd covers the safety findings on a real systemd:
// a symlink the kato user plants where root opens the queue, the registry
// lock against other users, and bad input refused before anything changes.
func TestSafetyOnRealSystemd(t *testing.T) {
	m := bootMachine(t)
	m.mustKM("install-units")
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(testbed.Config+"\n[kg]\nservice_enabled = false\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	m.must("chgrp", "kato", "/etc/kato/kato.toml")

	t.Run("root follows no link the kato user plants", func(t *testing.T) {
		m.t = t
		m.must("install", "-d", "-m", "0700", "/root/secret")
		m.must("rm", "-f", kgDB)
		m.must("setpriv", "--reuid=kato", "--regid=kato", "--clear-groups", "ln", "-s", "/root/secret/planted", kgDB)
		for _, args := range [][]string{{"queue", "stats"}, {"queue", "enqueue", "1"}, {"queue", "list"}, {"workers", "stats"}} {
			if r := m.km(args...); r.code == 0 {
				t.Errorf("%q through a planted link succeeded: %s", args, r)
			}
			if m.exists("/root/secret/planted") {
				t.Fatalf("%q: root created the link's target", args)
			}
		}
		// serve answers /stats with an error, and creates nothing either.
		m.must("systemd-run", "--unit=km-serve", "--", katoManager, "serve", "--listen", "127.0.0.1:9090", "--public-reads")
		t.Cleanup(func() { m.exec("systemctl", "stop", "km-serve.service") })
		m.waitFor("serve to answer or give up", 20*time.Second, func() bool {
			r := m.exec("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://127.0.0.1:9090/stats")
			return r.stdout != "000" || m.activeState("km-serve.service") != "active"
		})
		if m.exists("/root/secret/planted") {
			t.Fatal("serve: root created the link's target")
		}
		if got := m.exec("stat", "-c", "%U", "/root/secret").stdout; strings.TrimSpace(got) != "root" {
			t.Errorf("/root/secret is owned by %s", got)
		}
		// Without the link, root's queue commands work, and every file of
		// the database is kato's.
		m.exec("systemctl", "stop", "km-serve.service")
		m.must("rm", "-f", kgDB)
		// A document the database does not hold is refused at once; the
		// refusal makes the database, kato's, all the same.
		if r := m.km("queue", "enqueue", "5"); r.code != 2 || !strings.Contains(r.stderr, "invalid CONTENT_ID 5: has no crawled_content row") {
			t.Errorf("queue enqueue of an unknown document: %s", r)
		}
		m.must("runuser", "-u", "kato", "--", "sqlite3", "-cmd", ".timeout 10000", kgDB, "INSERT INTO crawled_content(id, url) VALUES (5, 'https://example.com/5')")
		m.mustKM("queue", "enqueue", "5")
		if out := m.mustKM("queue", "stats"); !strings.Contains(out, "pending 1") {
			t.Errorf("queue stats: %s", out)
		}
		for _, line := range strings.Split(strings.TrimSpace(m.must("sh", "-c", "stat -c '%n %U' "+kgDir+"/*")), "\n") {
			if !strings.HasSuffix(line, " kato") {
				t.Errorf("queue file not kato's: %s", line)
			}
		}
	})

	t.Run("nobody cannot hold the registry lock", func(t *testing.T) {
		m.t = t
		m.mustKM("start", "--id", "locked")
		defer m.mustKM("stop", "locked")
		for _, lock := range []string{"/var/lib/kato/instances.toml.lock", "/var/lib/kato/instances.toml.op.lock"} {
			if got := strings.TrimSpace(m.must("stat", "-c", "%a %U", lock)); got != "600 root" {
				t.Errorf("%s is %s, want 600 root", lock, got)
			}
			if r := m.exec("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "flock", "-s", "-n", lock, "true"); r.code == 0 {
				t.Errorf("nobody took a lock on %s", lock)
			}
		}
		// A root process that holds the operation lock is named by the
		// command kept waiting.
		m.must("systemd-run", "--unit=lock-holder", "--", "flock", "/var/lib/kato/instances.toml.op.lock", "sleep", "3")
		start := time.Now()
		r := m.km("stop", "locked")
		if r.code != 0 || !strings.Contains(r.stderr, "held by pid") || !strings.Contains(r.stderr, "flock /var/lib/kato/instances.toml.op.lock sleep 3") {
			t.Errorf("stop while the lock was held: %s", r)
		}
		if time.Since(start) < 2*time.Second {
			t.Errorf("stop did not wait for the lock")
		}
		m.mustKM("start", "--id", "locked")
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		m.t = t
		before := m.readFile("/var/lib/kato/instances.toml")
		for _, args := range [][]string{
			{"start", "--id", ""},
			{"start", "--id", "x", "--port", "0"},
			{"start", "--id", "x", "--timeout", "-5s"},
			{"start", "--id", "x", "--name", ""},
			{"logs", "nope"},
			{"restart", "nope"},
			{"stop", "nope"},
			{"workers", "scale", "0"},
			{"workers", "scale", "65"},
			{"start", "--id", "x", "--recall-threshold", "NaN"},
		} {
			if r := m.km(args...); r.code != 2 || !strings.Contains(r.stderr, "invalid") && !strings.Contains(r.stderr, "no instance") {
				t.Errorf("%q: %s", args, r)
			}
		}
		if after := m.readFile("/var/lib/kato/instances.toml"); after != before {
			t.Errorf("the registry changed:\n%s\n---\n%s", before, after)
		}
		if m.exists("/etc/kato/instances/x.env") || m.activeState("kato@x.service") == "active" {
			t.Error("a refused start left an instance behind")
		}
	})
}

// adapterOn connects the D-Bus adapter to m's system manager, for a
// minute; the test's end closes it.
func adapterOn(t *testing.T, m *machine) (*supervisor.DBus, context.Context) {
	conn, err := sddbus.NewConnection(m.DialSystemBus)
	if err != nil {
		t.Fatal(err)
	}
	sd := supervisor.NewDBus(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(func() { cancel(); sd.Close() })
	return sd, ctx
}

// TestDBusErrorNames confirms against the real systemd the D-Bus error
// names the adapter maps to sentinel errors.
func TestDBusErrorNames(t *testing.T) {
	m := bootMachine(t)
	m.mustKM("install-units")
	if err := m.WriteFile("/etc/systemd/system/bad-setting.service", []byte("[Service]\nExecStart=relative/path\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.must("systemctl", "daemon-reload")
	sd, ctx := adapterOn(t, m)
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"stop a unit never loaded", func() error { return sd.StopUnit(ctx, "kato@never.service") }, supervisor.ErrNoSuchUnit},
		{"start a unit with no file", func() error { return sd.StartUnit(ctx, "no-such-unit.service") }, supervisor.ErrNoSuchUnit},
		{"disable a unit with no file", func() error { return sd.DisableUnits(ctx, []string{"no-such-unit.service"}) }, supervisor.ErrNoSuchUnit},
		{"start a masked unit", func() error { return sd.StartUnit(ctx, "postgresql.service") }, supervisor.ErrUnitMasked},
		{"start a unit with a bad setting", func() error { return sd.StartUnit(ctx, "bad-setting.service") }, supervisor.ErrLoadFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				var be *supervisor.BusError
				errors.As(err, &be)
				t.Fatalf("err = %v (D-Bus name %+v), want %v", err, be, tc.want)
			}
		})
	}
	// reset-failed of a unit systemd does not know is no error.
	if err := sd.ResetFailedUnit(ctx, "kato@never.service"); err != nil {
		t.Errorf("reset-failed of an unknown unit: %v", err)
	}
}

// TestRebootBringsBackSourceInstall is the finding that after `make install`
// and `kato-manager install-units` started instances did not come back
// after a reboot: the targets were not enabled.
func TestRebootBringsBackSourceInstall(t *testing.T) {
	m := bootMachine(t) // the binaries and kato.toml where `make install` puts them
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(testbed.Config+"\n[kg]\nservice_enabled = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := m.mustKM("install-units")
	for _, want := range []string{
		"wrote /usr/local/lib/systemd/system/kato@.service", "wrote /usr/local/lib/systemd/system/kg-workers.target",
		"wrote /usr/local/lib/sysusers.d/kato.conf", "wrote /usr/local/lib/tmpfiles.d/kato.conf",
		"made /etc/kato/kato.toml 0640 root:kato", "kato.target and kg-workers.target enabled",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("install-units output lacks %q:\n%s", want, out)
		}
	}
	// /etc is the administrator's: no vendor file there.
	for _, p := range []string{"/etc/systemd/system/kato@.service", "/etc/systemd/system/kato.target", "/etc/systemd/system/kg-worker@.service",
		"/etc/systemd/system/kg-workers.target", "/etc/sysusers.d/kato.conf", "/etc/tmpfiles.d/kato.conf"} {
		if m.exists(p) {
			t.Errorf("install-units wrote %s", p)
		}
	}
	if got := strings.TrimSpace(m.must("stat", "-c", "%a %U:%G", "/etc/kato/kato.toml")); got != "640 root:kato" {
		t.Errorf("kato.toml is %s", got)
	}
	for _, target := range []string{"kato.target", "kg-workers.target"} {
		if s := strings.TrimSpace(m.exec("systemctl", "is-enabled", target).stdout); s != "enabled" {
			t.Errorf("%s is %s after install-units", target, s)
		}
	}
	m.mustKM("start", "--id", "boot-a", "--port", "8201")
	m.mustKM("start", "--id", "boot-b", "--port", "8202")
	m.mustKM("workers", "start", "-n", "2")
	// The limits of kato.toml are on the units.
	for unit, want := range map[string]string{"kato@boot-a.service": "536870912 256", "kg-worker@2.service": "268435456 64"} {
		if got := strings.TrimSpace(strings.ReplaceAll(m.must("systemctl", "show", "-P", "MemoryMax", "-P", "TasksMax", unit), "\n", " ")); got != want {
			t.Errorf("%s MemoryMax TasksMax = %q, want %q", unit, got, want)
		}
	}
	if st := m.statusJSON(); len(st.Warnings) != 0 {
		t.Errorf("status warns before the reboot: %q", st.Warnings)
	}

	if err := m.Reboot(context.Background(), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	back := []string{"kato@boot-a.service", "kato@boot-b.service", "kg-worker@1.service", "kg-worker@2.service"}
	m.waitFor("every instance and worker to come back", 60*time.Second, func() bool {
		for _, u := range back {
			if m.activeState(u) != "active" {
				return false
			}
		}
		return true
	})
	for i, id := range []string{"boot-a", "boot-b"} {
		m.waitFor(id+" to answer", 30*time.Second, func() bool {
			body, err := m.get("http://127.0.0.1:" + strconv.Itoa(8201+i) + "/health")
			return err == nil && strings.Contains(body, `"processor_id":"`+id+`"`)
		})
	}
	if r := m.km("status"); r.code != 0 {
		t.Errorf("status after the reboot: %s", r)
	}

	// status says what will not come back at the next boot.
	m.must("systemctl", "disable", "kato@boot-a.service")
	m.must("systemctl", "disable", "kg-workers.target")
	st := m.statusJSON()
	joined := strings.Join(st.Warnings, "\n")
	for _, want := range []string{"kato@boot-a.service runs but is not enabled", "kg-workers.target is disabled, not enabled"} {
		if !strings.Contains(joined, want) {
			t.Errorf("status warnings lack %q: %q", want, st.Warnings)
		}
	}
	if r := m.km("status"); !strings.Contains(r.stdout, "warning: kato@boot-a.service runs but is not enabled") {
		t.Errorf("status does not print the warning:\n%s", r)
	}
}

// TestStartLimitInStatus: an instance that systemd gave up restarting shows
// as such in status, with the next step, and restart clears it.
func TestStartLimitInStatus(t *testing.T) {
	m := bootMachine(t)
	// Ready at once, then a crash every 3s: with RestartSec=2 the sixth
	// start within StartLimitIntervalSec=60 is over StartLimitBurst=5.
	m.mustKM("start", "--id", "flappy", "--processor-command", fakeProcessor+" --crash-after 3s")
	m.waitFor("systemd to give up on flappy", 90*time.Second, func() bool {
		return strings.Contains(m.exec("journalctl", "--no-pager", "-u", "kato@flappy.service").stdout, "Start request repeated too quickly")
	})
	st := m.statusJSON()
	if len(st.Instances) != 1 || !st.Instances[0].StartLimitHit || !strings.Contains(st.Instances[0].Problem, "kato-manager restart flappy") {
		t.Fatalf("status at the start limit: %+v", st.Instances)
	}
	if r := m.km("status"); r.code != 1 || !strings.Contains(r.stdout, "start limit hit") {
		t.Errorf("status:\n%s", r)
	}
	m.mustKM("restart", "flappy")
	st = m.statusJSON()
	if st.Instances[0].StartLimitHit || st.Instances[0].ActiveState != "active" {
		t.Errorf("after restart: %+v", st.Instances[0])
	}
	m.mustKM("stop", "flappy")
}

// TestUnitRunAgreesWithSystemctl reads, through the adapter, the five
// properties a start's wait looks at, and the five ServiceProperties
// reads, for a running unit, a failed one and one that systemd restarted,
// and compares them with `systemctl show`.
func TestUnitRunAgreesWithSystemctl(t *testing.T) {
	m := bootMachine(t)
	units := map[string]string{
		"run-ok.service":     "[Service]\nExecStart=/bin/sleep infinity\n",
		"run-failed.service": "[Service]\nExecStart=/bin/sh -c 'exit 3'\n",
		"run-again.service": "[Unit]\nStartLimitIntervalSec=0\n[Service]\nRestart=on-failure\nRestartSec=100ms\n" +
			"ExecStart=/bin/sh -c 'test -e /run/run-again || { touch /run/run-again; exit 1; }; exec sleep infinity'\n",
	}
	for name, text := range units {
		if err := m.WriteFile("/etc/systemd/system/"+name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "start", "run-ok.service", "run-again.service")
	m.exec("systemctl", "start", "run-failed.service")
	sd, ctx := adapterOn(t, m)
	for name, want := range map[string]string{
		"run-ok.service":     "active running success 0",
		"run-failed.service": "failed failed exit-code 0",
		"run-again.service":  "active running success 1",
	} {
		deadline := time.Now().Add(10 * time.Second)
		var got string
		for {
			u, err := sd.UnitRun(ctx, name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = fmt.Sprintf("%s %s %s %d", u.ActiveState, u.SubState, u.Result, u.NRestarts)
			if got == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		props := map[string]string{}
		for _, line := range strings.Fields(m.must("systemctl", "show", "-p", "ActiveState,SubState,Result,NRestarts", name)) {
			k, v, _ := strings.Cut(line, "=")
			props[k] = v
		}
		shown := props["ActiveState"] + " " + props["SubState"] + " " + props["Result"] + " " + props["NRestarts"]
		if got != want || shown != want {
			t.Errorf("%s: UnitRun says %q, systemctl show %q, want %q", name, got, shown, want)
		}
		// MainPID too: a start judges who holds the API port by it.
		u, err := sd.UnitRun(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if pid := strings.TrimSpace(m.must("systemctl", "show", "-P", "MainPID", name)); fmt.Sprint(u.MainPID) != pid {
			t.Errorf("%s: UnitRun says MainPID %d, systemctl show %s", name, u.MainPID, pid)
		}
		// ServiceProperties, which status and serve's cache read, asks
		// for the five properties one by one: the same values.
		svc, err := sd.ServiceProperties(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		since := ""
		if !svc.ActiveSince.IsZero() {
			since = fmt.Sprintf("@%d", svc.ActiveSince.Unix())
		}
		got = fmt.Sprintf("%s %d %d %q %s", svc.Result, svc.MainPID, svc.NRestarts, svc.ControlGroup, since)
		show := func(prop string) string {
			return strings.TrimSpace(m.must("systemctl", "show", "--timestamp=unix", "-P", prop, name))
		}
		shown = fmt.Sprintf("%s %s %s %q ", show("Result"), show("MainPID"), show("NRestarts"), show("ControlGroup"))
		if svc.MainPID != 0 {
			// The start time of the main process; none without one.
			shown += show("ExecMainStartTimestamp")
		}
		if got != shown {
			t.Errorf("%s: ServiceProperties says %q, systemctl show %q", name, got, shown)
		}
	}
}
