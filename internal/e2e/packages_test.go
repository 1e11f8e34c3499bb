package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
	"github.com/kato-manager/kato-manager/packaging"
	"github.com/kato-manager/kato-manager/units"
)

// packagedKM is kato-manager as the package installs it.
const packagedKM = "/usr/bin/kato-manager"

// buildDeb builds the deb of this tree at version into a directory of its
// own, the way `make packages` does.
func buildDeb(t *testing.T, version string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pkgs, err := packaging.Build(ctx, packaging.Options{
		Root:    "../..",
		OutDir:  filepath.Join(t.TempDir(), version),
		Version: version,
		Formats: []string{"deb"},
	})
	if err != nil {
		t.Fatalf("build deb %s: %v", version, err)
	}
	return pkgs[0].Path
}

// pkm runs the packaged kato-manager and requires success.
func (m *machine) pkm(args ...string) string {
	m.t.Helper()
	return m.must(append([]string{packagedKM}, args...)...)
}

// apt runs apt-get as an operator would, without questions.
func (m *machine) apt(args ...string) string {
	m.t.Helper()
	return m.must(append([]string{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q"}, args...)...)
}

// packageStatus is dpkg's status and version of kato-manager, or "" when
// dpkg does not know it.
func (m *machine) packageStatus() string {
	m.t.Helper()
	r := m.exec("dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Version}", "kato-manager")
	if r.code != 0 {
		return ""
	}
	return strings.TrimSpace(r.stdout)
}

// kato runs a command as the kato user and requires success. The queue
// commands run so: the workers' database files lie in /var/lib/kato, which
// is group-writable and sticky, and where the kernel's
// fs.protected_regular=2 is set (Debian's systemd sets 1) even root may not
// open another user's file there with O_CREAT, as SQLite does.
func (m *machine) kato(args ...string) string {
	m.t.Helper()
	return m.must(append([]string{"runuser", "-u", "kato", "--"}, args...)...)
}

// isLink reports whether path is a symbolic link, dangling or not.
func (m *machine) isLink(path string) bool {
	m.t.Helper()
	return m.exec("test", "-L", path).code == 0
}

func (m *machine) mainPID(unit string) string {
	m.t.Helper()
	return strings.TrimSpace(m.must("systemctl", "show", "-P", "MainPID", unit))
}

// owner is the user a unit's main process runs as.
func (m *machine) owner(unit string) string {
	m.t.Helper()
	pid := m.mainPID(unit)
	if pid == "0" {
		m.t.Fatalf("%s has no main process", unit)
	}
	return strings.TrimSpace(m.must("stat", "-c", "%U", "/proc/"+pid))
}

// ports returns the API and ZMQ port of every instance in `list --json`.
func (m *machine) ports() map[string][2]float64 {
	m.t.Helper()
	var rows []map[string]any
	if err := json.Unmarshal([]byte(m.pkm("list", "--json")), &rows); err != nil {
		m.t.Fatal(err)
	}
	out := map[string][2]float64{}
	for _, r := range rows {
		out[r["id"].(string)] = [2]float64{r["api_port"].(float64), r["zmq_port"].(float64)}
	}
	return out
}

// tmpfilesDirs returns the directories tmpfiles.d/kato.conf creates, with
// their mode, owner and group as stat -c "%a %U %G" prints them.
func tmpfilesDirs(t *testing.T) map[string]string {
	t.Helper()
	dirs := map[string]string{}
	for _, tmpl := range units.Templates() {
		if tmpl.Dir != units.TmpfilesDir {
			continue
		}
		for _, line := range strings.Split(string(tmpl.Content), "\n") {
			f := strings.Fields(line)
			if len(f) < 5 || f[0] != "d" {
				continue
			}
			mode, err := strconv.ParseUint(f[2], 8, 32)
			if err != nil {
				t.Fatalf("tmpfiles.d/kato.conf: %q: %v", line, err)
			}
			dirs[f[1]] = fmt.Sprintf("%o %s %s", mode, f[3], f[4])
		}
	}
	if len(dirs) == 0 {
		t.Fatal("tmpfiles.d/kato.conf creates no directory")
	}
	return dirs
}

// TestDebLifecycle installs the deb with apt on a real systemd, runs
// instances and workers as the packaged kato user, upgrades to a newer
// build, removes and purges it, and checks what each step leaves.
func TestDebLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds packages and boots a real systemd; not in -short mode")
	}
	deb1 := buildDeb(t, "1.0.0")
	deb2 := buildDeb(t, "1.0.1")
	m := bootMachine(t)

	// A host as an operator finds it: only the test doubles of the KATO
	// processor and the KG service, none of what testbed installed from
	// source, no kato user. Nor the policy-rc.d of a container image, which
	// forbids maintainer scripts to start or stop anything.
	m.must("rm", "-rf", testbed.KatoManager, filepath.Dir(testbed.KGWorker), "/etc/kato", "/var/lib/kato", "/usr/sbin/policy-rc.d")
	if m.exec("getent", "passwd", "kato").code == 0 {
		m.must("userdel", "kato")
	}
	if m.exec("getent", "group", "kato").code == 0 {
		m.must("groupdel", "kato")
	}
	for _, deb := range []string{deb1, deb2} {
		if err := m.CopyFile(deb, "/opt/kato-test/packages/"+filepath.Base(deb), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inner := func(deb string) string { return "/opt/kato-test/packages/" + filepath.Base(deb) }

	// Install: apt resolves the dependencies from what is installed.
	m.apt("install", inner(deb1))
	if s := m.packageStatus(); s != "ii 1.0.0" {
		t.Fatalf("after install dpkg says %q", s)
	}
	if v := strings.TrimSpace(m.pkm("--version")); v != "kato-manager 1.0.0" {
		t.Errorf("--version prints %q", v)
	}
	if pw := m.must("getent", "passwd", "kato"); !strings.Contains(pw, ":/var/lib/kato:") {
		t.Errorf("kato user: %q", pw)
	}
	for path, want := range tmpfilesDirs(t) {
		if got := strings.TrimSpace(m.must("stat", "-c", "%a %U %G", path)); got != want {
			t.Errorf("%s is %q, want %q as tmpfiles.d/kato.conf says", path, got, want)
		}
	}
	for _, target := range []string{units.InstanceTarget, units.WorkerTarget, units.QueueSocket, units.LivenessTimer} {
		if s := strings.TrimSpace(m.must("systemctl", "is-enabled", target)); s != "enabled" {
			t.Errorf("%s is %s after install", target, s)
		}
	}
	for _, unit := range []string{units.QueueSocket, units.LivenessTimer} {
		if s := m.activeState(unit); s != "active" {
			t.Errorf("%s is %s after install", unit, s)
		}
	}
	if got := strings.TrimSpace(m.must("stat", "-c", "%F %a %U", units.QueueSocketPath)); got != "socket 600 root" {
		t.Errorf("%s is %q, want a socket 600 root", units.QueueSocketPath, got)
	}
	for _, tmpl := range units.Templates() {
		path := map[string]string{units.SystemdDir: "/usr/lib/systemd/system/", units.SysusersDir: "/usr/lib/sysusers.d/", units.TmpfilesDir: "/usr/lib/tmpfiles.d/"}[tmpl.Dir] + tmpl.Name
		if got := m.readFile(path); got != string(tmpl.Content) {
			t.Errorf("%s differs from what install-units writes", path)
		}
	}
	if !strings.Contains(m.must("systemctl", "cat", "kg-worker@1.service"), "ExecStart=/usr/libexec/kato-manager/kg-worker --worker-id %i") {
		t.Error("systemd does not run the packaged kg-worker")
	}
	if got := m.readFile("/etc/kato/kato.toml"); got != string(config.DefaultFile) {
		t.Errorf("/etc/kato/kato.toml is not config/kato.toml:\n%s", got)
	}
	// It holds the MongoDB URL: root and the workers' group read it, nobody else.
	if got := strings.TrimSpace(m.must("stat", "-c", "%a %U:%G", "/etc/kato/kato.toml")); got != "640 root:kato" {
		t.Errorf("/etc/kato/kato.toml is %s, want 640 root:kato", got)
	}

	// The operator's edit of the configuration: the processor test double,
	// no shared services, KG processing off (no KG service here).
	edited := "# Edited on this host.\n" + testbed.Config + "\n[kg]\nservice_enabled = false\n"
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	// The first package runs the processors as kato, as versions before
	// each instance had a user of its own did: the upgrade must keep what
	// they learned in their directories of kato's.
	const vendorInstance = "/usr/lib/systemd/system/" + units.InstanceTemplate
	shipped := m.readFile(vendorInstance)
	earlier := strings.Replace(shipped, "\nDynamicUser=yes\nUser=kato-%i\n", "\nUser=kato\nGroup=kato\n", 1)
	if earlier == shipped {
		t.Fatalf("%s has no DynamicUser=yes and User=kato-%%i lines", vendorInstance)
	}
	if err := m.WriteFile(vendorInstance, []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	m.must("systemctl", "daemon-reload")
	m.pkm("start", "--id", "pkg-a", "--name", "Packaged A", "--port", "8101")
	m.pkm("start", "--id", "pkg-b", "--port", "8102", "--max-predictions", "7")
	m.pkm("start", "--id", "pkg-c", "--port", "8103")
	m.must("systemctl", "stop", "kato@pkg-c.service") // stopped by hand: an upgrade leaves it so
	m.post("http://127.0.0.1:8101/learn", "{}")
	m.pkm("workers", "start", "-n", "2")
	// Only a stored document can be queued: the workers make the tables.
	m.waitFor("the workers to make the queue's tables", 30*time.Second, func() bool {
		return m.exec("runuser", "-u", "kato", "--", "sqlite3", "-cmd", ".timeout 10000", kgDB,
			"INSERT INTO crawled_content(id, url) VALUES (42, 'https://example.com/42')").code == 0
	})
	m.kato(packagedKM, "queue", "enqueue", "42")
	// Root's queue commands work through kato-queue.socket.
	if out := m.pkm("queue", "list"); !strings.Contains(out, "42") {
		t.Errorf("root's queue list through %s:\n%s", units.QueueSocket, out)
	}
	if n := strings.TrimSpace(m.must("systemctl", "show", "-P", "NAccepted", units.QueueSocket)); n != "1" {
		t.Errorf("%s accepted %s connections for root's queue list, want 1", units.QueueSocket, n)
	}

	// A reboot brings back every instance and worker that was started from
	// the package, pkg-c too: stopped by hand, it is still enabled.
	if err := m.Reboot(context.Background(), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	m.waitFor("the packaged instances and workers to come back after a reboot", 60*time.Second, func() bool {
		for _, u := range []string{"kato@pkg-a.service", "kato@pkg-b.service", "kato@pkg-c.service", "kg-worker@1.service", "kg-worker@2.service"} {
			if m.activeState(u) != "active" {
				return false
			}
		}
		return true
	})
	m.waitFor("pkg-a to answer after the reboot", 30*time.Second, func() bool {
		body, err := m.get("http://127.0.0.1:8101/health")
		return err == nil && strings.Contains(body, `"processor_id":"pkg-a"`)
	})
	m.must("systemctl", "stop", "kato@pkg-c.service")

	running := []string{"kato@pkg-a.service", "kato@pkg-b.service", "kg-worker@1.service", "kg-worker@2.service"}
	pids := map[string]string{}
	for _, u := range running {
		if s := m.activeState(u); s != "active" {
			t.Fatalf("%s is %s", u, s)
		}
		if o := m.owner(u); o != "kato" {
			t.Errorf("%s runs as %s under the earlier units", u, o)
		}
		pids[u] = m.mainPID(u)
	}
	if got := strings.TrimSpace(m.must("stat", "-c", "%F %U", units.InstanceStateDir("pkg-a"))); got != "directory kato" {
		t.Fatalf("pkg-a's state under the earlier units is %q", got)
	}
	ports := m.ports()
	if len(ports) != 3 || ports["pkg-a"][0] != 8101 || ports["pkg-b"][0] != 8102 {
		t.Fatalf("ports before the upgrade: %v", ports)
	}
	kept := map[string]string{}
	for _, path := range []string{
		"/etc/kato/kato.toml",
		config.DefaultRegistryPath,
		"/etc/kato/instances/pkg-a.env",
		"/etc/kato/instances/pkg-b.env",
		"/etc/systemd/system/kato@pkg-a.service.d/" + units.DropInName,
		"/etc/systemd/system/kato@pkg-b.service.d/" + units.DropInName,
	} {
		kept[path] = m.readFile(path)
		if kept[path] == "" {
			t.Fatalf("%s is missing or empty before the upgrade", path)
		}
	}
	if s := m.activeState(units.QueueSocket); s != "active" {
		t.Errorf("%s is %s after the reboot", units.QueueSocket, s)
	}
	queueBefore := m.kato(packagedKM, "queue", "stats", "--json")
	if !strings.Contains(queueBefore, `"pending": 1`) {
		t.Fatalf("queue before the upgrade:\n%s", queueBefore)
	}

	// Upgrade: what ran runs again on the new files, with the same ports
	// and settings; what was stopped stays stopped.
	m.apt("install", inner(deb2))
	if s := m.packageStatus(); s != "ii 1.0.1" {
		t.Fatalf("after upgrade dpkg says %q", s)
	}
	if v := strings.TrimSpace(m.pkm("--version")); v != "kato-manager 1.0.1" {
		t.Errorf("--version prints %q after the upgrade", v)
	}
	for _, u := range running {
		if s := m.activeState(u); s != "active" {
			t.Errorf("%s is %s after the upgrade", u, s)
			continue
		}
		if pid := m.mainPID(u); pid == pids[u] || pid == "0" {
			t.Errorf("%s has pid %s after the upgrade, was %s: not restarted", u, pid, pids[u])
		}
	}
	if s := m.activeState("kato@pkg-c.service"); s != "inactive" {
		t.Errorf("kato@pkg-c.service, stopped before the upgrade, is %s", s)
	}
	if got := m.ports(); fmt.Sprint(got) != fmt.Sprint(ports) {
		t.Errorf("ports after the upgrade %v, before %v", got, ports)
	}
	for path, before := range kept {
		if got := m.readFile(path); got != before {
			t.Errorf("%s changed in the upgrade:\n%s", path, got)
		}
	}
	for port, id := range map[string]string{"8101": "pkg-a", "8102": "pkg-b"} {
		m.waitFor(id+" answering after the upgrade", 20*time.Second, func() bool {
			body, err := m.get("http://127.0.0.1:" + port + "/health")
			return err == nil && strings.Contains(body, `"processor_id":"`+id+`"`)
		})
	}
	if body, err := m.get("http://127.0.0.1:8101/learned"); err != nil || !strings.Contains(body, `"learned":1`) {
		t.Errorf("pkg-a's learned state after the upgrade: %q %v", body, err)
	}
	// Each instance now runs as a user of its own, the workers still as
	// kato; systemd moved pkg-a's state to /var/lib/private and gave it to
	// pkg-a's user.
	for u, want := range map[string]string{"kato@pkg-a.service": "kato-pkg-a", "kato@pkg-b.service": "kato-pkg-b", "kg-worker@1.service": "kato", "kg-worker@2.service": "kato"} {
		if o := m.owner(u); o != want {
			t.Errorf("%s runs as %s after the upgrade, want %s", u, o, want)
		}
	}
	if !m.isLink(units.InstanceStateDir("pkg-a")) {
		t.Errorf("%s is not a link to /var/lib/private after the upgrade", units.InstanceStateDir("pkg-a"))
	}
	if got := strings.TrimSpace(m.must("stat", "-c", "%U", "/var/lib/private/kato/instances/pkg-a/learned")); got != "kato-pkg-a" {
		t.Errorf("pkg-a's learned state belongs to %s after the upgrade", got)
	}
	// An instance of a group, whose target's drop-in purge must remove.
	m.pkm("start", "--id", "pkg-d", "--port", "8104", "--group", "pkgs")
	if !m.exists("/etc/systemd/system/kato-group@pkgs.target.d/" + units.DropInName) {
		t.Fatal("no drop-in for the group pkgs")
	}

	// An instance with an id too long for kato-ID as a user name, whose
	// drop-in an earlier version wrote without the User= it needs: the
	// package's upgrade renders it again as it restarts the instance.
	const long = "pkg-long-id-for-a-user-name-x"
	m.pkm("start", "--id", long, "--port", "8105")
	longDropIn := "/etc/systemd/system/" + units.InstanceDropInDir(long) + "/" + units.DropInName
	m.must("sed", "-i", "/^User=/d", longDropIn)
	m.must("systemctl", "daemon-reload")
	m.apt("install", "--reinstall", inner(deb2))
	if s := m.activeState(units.InstanceUnit(long)); s != "active" {
		t.Errorf("%s is %s after the upgrade", units.InstanceUnit(long), s)
	} else if o := m.owner(units.InstanceUnit(long)); o != units.InstanceUser(long) {
		t.Errorf("%s runs as %s after the upgrade, want %s", units.InstanceUnit(long), o, units.InstanceUser(long))
	}
	if !strings.Contains(m.readFile(longDropIn), "\nUser="+units.InstanceUser(long)+"\n") {
		t.Errorf("%s names no user after the upgrade:\n%s", longDropIn, m.readFile(longDropIn))
	}
	kept[config.DefaultRegistryPath] = m.readFile(config.DefaultRegistryPath)
	if body, err := m.get("http://127.0.0.1:8102/env"); err != nil || !strings.Contains(body, `"MAX_PREDICTIONS":"7"`) {
		t.Errorf("pkg-b's settings after the upgrade: %q %v", body, err)
	}
	if got := m.kato(packagedKM, "queue", "stats", "--json"); got != queueBefore {
		t.Errorf("queue after the upgrade:\n%s\nbefore:\n%s", got, queueBefore)
	}
	if got := m.pkm("queue", "stats", "--json"); got != queueBefore {
		t.Errorf("root's queue stats after the upgrade:\n%s\nkato's:\n%s", got, queueBefore)
	}

	// An operator's own drop-in for every instance, which purge must keep.
	if err := m.WriteFile("/etc/systemd/system/kato@.service.d/local.conf", []byte("[Service]\nNice=5\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Remove: everything stops; state, configuration and enablement stay.
	m.apt("remove", "kato-manager")
	if s := m.packageStatus(); s != "rc 1.0.1" {
		t.Fatalf("after remove dpkg says %q", s)
	}
	for _, u := range running {
		if s := m.activeState(u); s != "inactive" {
			t.Errorf("%s is %s after remove", u, s)
		}
	}
	if s := m.activeState(units.QueueSocket); s != "inactive" {
		t.Errorf("%s is %s after remove", units.QueueSocket, s)
	}
	for _, path := range []string{packagedKM, "/usr/libexec/kato-manager/kg-worker", "/usr/lib/systemd/system/kato@.service", "/usr/lib/systemd/system/kg-worker@.service",
		"/usr/lib/systemd/system/" + units.QueueSocket, units.QueueSocketPath} {
		if m.exists(path) {
			t.Errorf("%s is left after remove", path)
		}
	}
	for path, before := range kept {
		if got := m.readFile(path); got != before {
			t.Errorf("%s changed or went on remove:\n%s", path, got)
		}
	}
	for _, path := range []string{config.DefaultKGDBPath, units.InstanceStateDir("pkg-a") + "/learned"} {
		if !m.exists(path) {
			t.Errorf("%s went on remove", path)
		}
	}
	enabled := []string{
		"/etc/systemd/system/multi-user.target.wants/kato.target",
		"/etc/systemd/system/multi-user.target.wants/kg-workers.target",
		"/etc/systemd/system/kato.target.wants/kato@pkg-a.service",
		"/etc/systemd/system/kg-workers.target.wants/kg-worker@1.service",
		"/etc/systemd/system/sockets.target.wants/" + units.QueueSocket,
	}
	for _, link := range enabled {
		if !m.isLink(link) {
			t.Errorf("%s went on remove", link)
		}
	}
	if m.exec("getent", "passwd", "kato").code != 0 {
		t.Error("the kato user went on remove")
	}

	// Purge: what kato-manager made goes; the operator's drop-in for every
	// instance and the kato user stay.
	m.apt("purge", "kato-manager")
	if s := m.packageStatus(); s != "" && !strings.HasPrefix(s, "un") {
		t.Fatalf("after purge dpkg says %q", s)
	}
	for _, path := range []string{"/var/lib/kato", "/var/lib/private/kato", "/etc/kato", "/etc/systemd/system/kato@pkg-a.service.d", "/etc/systemd/system/kato@pkg-c.service.d",
		"/etc/systemd/system/kato-group@pkgs.target.d",
		"/etc/systemd/system/kato.target.wants", "/etc/systemd/system/kg-workers.target.wants",
		"/etc/systemd/system/kg-worker@.service.d/" + units.DropInName} {
		if m.exists(path) {
			t.Errorf("%s is left after purge", path)
		}
	}
	for _, link := range enabled {
		if m.isLink(link) {
			t.Errorf("%s is left after purge", link)
		}
	}
	if !m.exists("/etc/systemd/system/kato@.service.d/local.conf") {
		t.Error("purge deleted the operator's drop-in for every instance")
	}
	if m.exec("getent", "passwd", "kato").code != 0 {
		t.Error("purge deleted the kato user")
	}
	if s := strings.TrimSpace(m.must("systemctl", "show", "-P", "LoadState", "kato@pkg-a.service")); s != "not-found" {
		t.Errorf("systemd still knows kato@pkg-a.service after purge: %s", s)
	}
}
