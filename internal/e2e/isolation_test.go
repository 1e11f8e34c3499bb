package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
	"github.com/kato-manager/kato-manager/units"
)

// The isolation probe runs as a KATO processor: it tries each access listed
// in isolationTargets, writes what happened into its state directory, then
// becomes the processor test double, so that the instance starts healthy.
const (
	isolationProbe   = "/opt/kato-test/isolation-probe"
	isolationTargets = "/opt/kato-test/isolation-targets"
	isolationResults = "isolation-probe"
)

// probeScript is the probe. Each line of isolationTargets is "MODE PATH":
// r opens PATH for reading (and reads a byte), d lists the directory PATH,
// rw opens PATH for reading and writing, pg connects to the PostgreSQL URL
// PATH with psql. It writes one line "open MODE PATH" or "refused MODE PATH"
// per target.
const probeScript = `#!/bin/sh
set -u
out=${STATE_DIRECTORY%%:*}/` + isolationResults + `
: >"$out.tmp"
while read -r mode path; do
	case $mode in
	r) if head -c 1 -- "$path" >/dev/null 2>&1; then r=open; else r=refused; fi ;;
	d) if ls -- "$path/." >/dev/null 2>&1; then r=open; else r=refused; fi ;;
	rw) if (exec 3<>"$path") 2>/dev/null; then r=open; else r=refused; fi ;;
	pg) if psql -X -w -q -c 'SELECT 1' "$path" >/dev/null 2>&1 </dev/null; then r=open; else r=refused; fi ;;
	*) r=unknown ;;
	esac
	echo "$r $mode $path" >>"$out.tmp"
done <` + isolationTargets + `
mv "$out.tmp" "$out"
exec ` + fakeProcessor + ` "$@"
`

// probeProcessor is the [processors.probe] section that runs the probe.
const probeProcessor = `
[processors.probe]
command = ["` + isolationProbe + `"]
generation = "b"
ready_timeout = 20.0
stop_timeout = 1.0
`

// probeTarget is one access the probe tries and whether it must succeed.
type probeTarget struct {
	mode, path string
	open       bool
}

// TestProcessorIsolation starts, next to KG workers, another instance and a
// root kato-manager with its queue helper (kato-queue@), a processor that tries to read
// what belongs to them from inside its unit: kato.toml (the PostgreSQL
// password lives there), the SQLite queue, the other instance's state, the
// environment files of the other units, and the memory of the workers and
// of kato-manager's processes. Each is refused; the controls (a file every
// user may read, its own memory) show the probe's way of trying works.
func TestProcessorIsolation(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.Config + probeProcessor + "\n[kg]\nservice_enabled = false\n"
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// install-units leaves kato.toml as an install does: root's and kato's.
	m.mustKM("install-units")
	if got := strings.TrimSpace(m.must("stat", "-c", "%a %U:%G", "/etc/kato/kato.toml")); got != "640 root:kato" {
		t.Fatalf("/etc/kato/kato.toml is %s after install-units, want 640 root:kato", got)
	}
	if err := m.WriteFile(isolationProbe, []byte(probeScript), 0o755); err != nil {
		t.Fatal(err)
	}

	// The workers' own settings, where an operator keeps the KG service's
	// credentials.
	if err := m.WriteFile("/etc/kato/kg-worker.env", []byte("KG_SERVICE_URL=http://kg:secret@127.0.0.1:8088\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.mustKM("workers", "start", "-n", "2")
	// An id too long for kato-ID as a user name: its drop-in names its user.
	const otherID = "other-instance-with-a-rather-long-id"
	m.mustKM("start", "--id", otherID, "--port", "8201")
	m.post("http://127.0.0.1:8201/learn", "{}")
	// serve holds a connection to kato-queue.socket for its queue work for
	// as long as it runs: a kato-queue@ instance, kato's, serves it.
	m.must("systemd-run", "--unit=km-serve", "--", katoManager, "serve", "--listen", "127.0.0.1:9090", "--public-reads")
	t.Cleanup(func() { m.exec("systemctl", "stop", "km-serve.service") })
	// Nothing else does queue work: no child of serve's, no other process.
	// A kato-queue@ unit is active a moment before its process has become
	// the helper (systemd forks, then execs), so both are read until they
	// agree.
	var helpers, all []string
	err := sdharness.WaitFor(context.Background(), 20*time.Second, "serve's queue helper", func() (bool, error) {
		helpers = helpers[:0]
		for _, f := range strings.Fields(m.exec("systemctl", "list-units", "--plain", "--no-legend", "--state=active", "kato-queue@*.service").stdout) {
			if strings.HasPrefix(f, "kato-queue@") {
				helpers = append(helpers, m.mainPID(f))
			}
		}
		all = strings.Fields(m.exec("pgrep", "-f", "--", "__queue-db").stdout)
		return len(helpers) > 0 && len(all) == len(helpers), nil
	})
	if err != nil {
		t.Fatalf("%v: queue helpers %v, of which kato-queue@ instances %v", err, all, helpers)
	}
	helpers = append(helpers, m.mainPID("km-serve.service"))

	other := units.InstanceStateDir(otherID)
	targets := []probeTarget{
		{"r", "/etc/os-release", true},
		{"rw", "/proc/self/mem", true},
		{"r", "/etc/kato/kato.toml", false},
		{"r", "/var/lib/kato/kg/kg.db", false},
		{"d", "/var/lib/kato/kg", false},
		{"r", other + "/learned", false},
		{"d", other, false},
		{"r", "/etc/kato/instances/" + otherID + ".env", false},
		{"r", "/etc/kato/kg-worker.env", false},
	}
	// Where systemd keeps the other instance's state, if not at the link.
	if real := strings.TrimSpace(m.must("readlink", "-f", other)); real != other {
		targets = append(targets, probeTarget{"r", real + "/learned", false}, probeTarget{"d", real, false})
	}
	for _, u := range []string{"kg-worker@1.service", "kg-worker@2.service"} {
		helpers = append(helpers, m.mainPID(u))
	}
	for _, pid := range helpers {
		targets = append(targets, probeTarget{"rw", "/proc/" + pid + "/mem", false})
	}
	var list strings.Builder
	for _, tg := range targets {
		// Each target exists: a refusal is the sandbox's, not a wrong path.
		if tg.path != "/proc/self/mem" {
			m.must("test", "-e", tg.path)
		}
		fmt.Fprintf(&list, "%s %s\n", tg.mode, tg.path)
	}
	if err := m.WriteFile(isolationTargets, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	m.mustKM("start", "--id", "probe", "--port", "8202", "--processor", "probe")
	if body, err := m.get("http://127.0.0.1:8202/health"); err != nil || !strings.Contains(body, `"processor_id":"probe"`) {
		t.Fatalf("the probe's processor does not answer: %q %v", body, err)
	}
	katoUID := strings.TrimSpace(m.must("id", "-u", "kato"))
	probeUID := m.uid("kato@probe.service")
	otherUID := m.uid(units.InstanceUnit(otherID))
	if probeUID == katoUID || probeUID == "0" || probeUID == otherUID || otherUID == katoUID || otherUID == "0" {
		t.Errorf("the probe runs as uid %s, the other instance as %s, kato is %s: not users of their own", probeUID, otherUID, katoUID)
	}
	for unit, want := range map[string]string{"kato@probe.service": "kato-probe", units.InstanceUnit(otherID): units.InstanceUser(otherID)} {
		if got := m.owner(unit); got != want {
			t.Errorf("%s runs as %s, want %s", unit, got, want)
		}
	}
	if groups := m.must("cat", "/proc/"+m.mainPID("kato@probe.service")+"/status"); strings.Contains(groupsLine(groups), " "+strings.TrimSpace(m.must("id", "-g", "kato"))+" ") {
		t.Errorf("the probe is in kato's group: %s", groupsLine(groups))
	}

	m.checkProbe(t, targets)
}

// uid is the user id a unit's main process runs as.
func (m *machine) uid(unit string) string {
	m.t.Helper()
	pid := m.mainPID(unit)
	if pid == "0" {
		m.t.Fatalf("%s has no main process", unit)
	}
	return strings.TrimSpace(m.must("stat", "-c", "%u", "/proc/"+pid))
}

// groupsLine returns the Groups: line of /proc/PID/status, with a space at
// each end so that a group id matches as " ID ".
func groupsLine(status string) string {
	for _, l := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(l, "Groups:"); ok {
			return " " + strings.Join(strings.Fields(rest), " ") + " "
		}
	}
	return ""
}

// TestStateKeptWhenProcessorsGetTheirOwnUser is the upgrade of a source
// install from units that ran the processors as kato: what an instance
// learned under them (a directory of kato's in /var/lib/kato/instances) is
// found by the same instance under its own user once install-units has
// written the new units, which restarts what runs.
func TestStateKeptWhenProcessorsGetTheirOwnUser(t *testing.T) {
	m := bootMachine(t)
	m.mustKM("install-units")
	// The earlier kato@.service, as the files of an earlier version left it.
	tmpl := "/usr/local/lib/systemd/system/" + units.InstanceTemplate
	current := m.readFile(tmpl)
	earlier := strings.Replace(current, "\nDynamicUser=yes\nUser=kato-%i\n", "\nUser=kato\nGroup=kato\n", 1)
	if earlier == current {
		t.Fatalf("%s has no DynamicUser=yes and User=kato-%%i lines:\n%s", tmpl, current)
	}
	if err := m.WriteFile(tmpl, []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	m.must("systemctl", "daemon-reload")
	m.mustKM("start", "--id", "old", "--port", "8301")
	m.mustKM("start", "--id", "stopped", "--port", "8302")
	for range 3 {
		m.post("http://127.0.0.1:8301/learn", "{}")
	}
	m.post("http://127.0.0.1:8302/learn", "{}")
	m.must("systemctl", "stop", "kato@stopped.service") // stopped by hand, still registered
	dir := units.InstanceStateDir("old")
	if got := strings.TrimSpace(m.must("stat", "-c", "%F %U", dir)); got != "directory kato" || m.owner("kato@old.service") != "kato" {
		t.Fatalf("under the earlier unit %s is %q and the processor runs as %s", dir, got, m.owner("kato@old.service"))
	}

	out := m.mustKM("install-units")
	if !strings.Contains(out, "restarted kato@old.service") || strings.Contains(out, "kato@stopped.service") {
		t.Errorf("install-units over the earlier units:\n%s", out)
	}
	if uid, kato := m.uid("kato@old.service"), strings.TrimSpace(m.must("id", "-u", "kato")); uid == kato || uid == "0" {
		t.Errorf("after install-units kato@old.service runs as uid %s", uid)
	}
	if s := m.activeState("kato@stopped.service"); s != "inactive" {
		t.Errorf("the stopped instance is %s after install-units", s)
	}
	m.waitFor("old to answer on the new units", 20*time.Second, func() bool {
		body, err := m.get("http://127.0.0.1:8301/learned")
		return err == nil && strings.Contains(body, `"learned":3`)
	})
	// systemd moved the directory under /var/lib/private and gave it to
	// the instance's user; the old path is a link to it.
	if !m.isLink(dir) {
		t.Errorf("%s is not a link after the upgrade", dir)
	}
	real := "/var/lib/private/kato/instances/old"
	if got, want := strings.TrimSpace(m.must("stat", "-c", "%u", real+"/learned")), m.uid("kato@old.service"); got != want {
		t.Errorf("%s/learned belongs to uid %s, the processor runs as %s", real, got, want)
	}
	if got := strings.TrimSpace(m.must("stat", "-c", "%a", "/var/lib/private")); got != "700" {
		t.Errorf("/var/lib/private has mode %s, want 700", got)
	}
	m.post("http://127.0.0.1:8301/learn", "{}")
	m.mustKM("restart", "old")
	if body, err := m.get("http://127.0.0.1:8301/learned"); err != nil || !strings.Contains(body, `"learned":4`) {
		t.Errorf("old after a restart on the new units: %q %v", body, err)
	}
	// The one stopped during the upgrade finds its state when it starts.
	m.mustKM("restart", "stopped")
	if body, err := m.get("http://127.0.0.1:8302/learned"); err != nil || !strings.Contains(body, `"learned":1`) {
		t.Errorf("stopped after its start on the new units: %q %v", body, err)
	}
	if names := strings.Fields(m.must("ls", "/var/lib/private/kato/instances")); !slices.Equal(names, []string{"old", "stopped"}) {
		t.Errorf("/var/lib/private/kato/instances holds %q", names)
	}
}

// TestProcessorIsolationPostgres: with the queue in PostgreSQL, set up as
// the README says (peer authentication on the socket, a password over TCP,
// the password in kg.db_url of kato.toml), a processor cannot connect with
// what it can reach: not over the socket, where it is not kato, not over
// TCP without the password, which it cannot read. The control connects with
// the password, to show the server was within reach.
func TestProcessorIsolationPostgres(t *testing.T) {
	m := bootMachine(t)
	ctx := context.Background()
	pg, err := pgtest.StartInMachine(ctx, m.Machine, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.CreateDatabase(ctx, "kg"); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.SQL(ctx, "postgres", "CREATE ROLE kato LOGIN PASSWORD 'probe-secret'; ALTER DATABASE kg OWNER TO kato"); err != nil {
		t.Fatal(err)
	}
	// Only the test's own psql keeps trust, as postgres over the socket.
	hba := "local all postgres trust\nlocal all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := m.WriteFile("/var/lib/pgtest/data/pg_hba.conf", []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	m.must("chown", "postgres:postgres", "/var/lib/pgtest/data/pg_hba.conf")
	m.must("systemctl", "kill", "--signal=SIGHUP", "pgtest.service")
	const withPassword = "postgres://kato:probe-secret@127.0.0.1:5432/kg"
	conf := testbed.Config + probeProcessor + "\n[kg]\nservice_enabled = false\ndb_url = \"" + withPassword + "\"\n"
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m.mustKM("install-units")
	if err := m.WriteFile(isolationProbe, []byte(probeScript), 0o755); err != nil {
		t.Fatal(err)
	}
	m.mustKM("workers", "start", "-n", "1")
	m.waitFor("the worker to make the queue's tables", 30*time.Second, func() bool {
		return strings.Contains(m.km("queue", "stats").stdout, "total 0")
	})
	targets := []probeTarget{
		{"pg", withPassword, true},
		{"r", "/etc/kato/kato.toml", false},
		{"pg", "postgres://kato@127.0.0.1:5432/kg", false},
		{"pg", "postgres:///kg?host=/run/pgtest&port=5432&user=kato", false},
	}
	var list strings.Builder
	for _, tg := range targets {
		fmt.Fprintf(&list, "%s %s\n", tg.mode, tg.path)
	}
	if err := m.WriteFile(isolationTargets, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	m.mustKM("start", "--id", "probe", "--port", "8202", "--processor", "probe")
	m.checkProbe(t, targets)
}

// checkProbe reads what the probe instance found of each of targets, and
// fails the test for each access that went otherwise than the target says.
func (m *machine) checkProbe(t *testing.T, targets []probeTarget) {
	t.Helper()
	results := strings.Split(strings.TrimSpace(m.must("cat", units.InstanceStateDir("probe")+"/"+isolationResults)), "\n")
	if len(results) != len(targets) {
		t.Fatalf("the probe tried %d accesses, want %d:\n%s", len(results), len(targets), strings.Join(results, "\n"))
	}
	for i, tg := range targets {
		want := "refused"
		if tg.open {
			want = "open"
		}
		if got := results[i]; got != want+" "+tg.mode+" "+tg.path {
			t.Errorf("from inside a processor: %s, want %s", got, want)
		}
	}
}
