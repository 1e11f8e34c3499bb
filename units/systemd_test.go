package units

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests hand the files to systemd's own offline tools. They need no
// running systemd; they skip, saying why, where the tools are missing or
// cannot work offline. Loading the units into a running systemd is covered
// by the integration tests.

// runTool runs a systemd tool with extra environment variables and returns
// its combined output and whether it exited with status 0.
func runTool(t *testing.T, env []string, name string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %q timed out:\n%s", name, args, out)
	}
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatalf("run %s: %v", name, err)
	}
	return string(out), err == nil
}

// requireTool skips the test unless the named tool is installed.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed", name)
	}
}

// requireOfflineVerify skips the test unless systemd-analyze verify accepts
// a trivial valid unit without a running systemd.
func requireOfflineVerify(t *testing.T) {
	t.Helper()
	requireTool(t, "systemd-analyze")
	dir := t.TempDir()
	probe := filepath.Join(dir, "kato-probe.service")
	writeFile(t, probe, "[Service]\nType=oneshot\nExecStart=/bin/true\n")
	if out, ok := runTool(t, nil, "systemd-analyze", "--man=no", "verify", probe); !ok {
		t.Skipf("systemd-analyze verify does not work without a running systemd here:\n%s", out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// complaintsAbout returns the lines of a tool's output that mention one of
// the given strings: the warnings about our files, leaving out any about
// unrelated units installed on the machine.
func complaintsAbout(out string, subjects ...string) []string {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		for _, s := range subjects {
			if strings.Contains(line, s) {
				lines = append(lines, line)
				break
			}
		}
	}
	return lines
}

func TestVerifyWorkerUnit(t *testing.T) {
	requireOfflineVerify(t)
	content := string(templateByName(t, SystemdDir, "kg-worker@.service").Content)
	const worker = "/usr/libexec/kato-manager/kg-worker"
	if !strings.Contains(content, "ExecStart="+worker+" ") {
		t.Fatalf("kg-worker@.service does not start %s", worker)
	}
	// verify checks that the executable exists; the worker is not installed
	// on a build machine.
	content = strings.Replace(content, "ExecStart="+worker+" ", "ExecStart=/bin/true ", 1)
	dir := t.TempDir()
	unit := filepath.Join(dir, "kg-worker@1.service")
	writeFile(t, unit, content)

	out, ok := runTool(t, nil, "systemd-analyze", "--man=no", "verify", unit)
	if complaints := complaintsAbout(out, dir, "kg-worker@1.service"); !ok || len(complaints) > 0 {
		t.Errorf("systemd-analyze verify kg-worker@1.service (ok=%v):\n%s", ok, out)
	}
}

// TestVerifyFrontUnit hands systemd the front's template, HAProxy's path
// replaced by /bin/true where HAProxy is not installed.
func TestVerifyFrontUnit(t *testing.T) {
	requireOfflineVerify(t)
	content := string(templateByName(t, SystemdDir, FrontTemplate).Content)
	if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
		content = strings.ReplaceAll(content, "=/usr/sbin/haproxy ", "=/bin/true ")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, FrontUnit("g")), content)
	out, ok := runTool(t, nil, "systemd-analyze", "--man=no", "verify", filepath.Join(dir, FrontUnit("g")))
	if complaints := complaintsAbout(out, dir, FrontUnit("g")); !ok || len(complaints) > 0 {
		t.Errorf("systemd-analyze verify %s (ok=%v):\n%s", FrontUnit("g"), ok, out)
	}
}

// TestVerifyQueueUnits hands systemd root's queue socket and the template
// of the helpers it starts.
func TestVerifyQueueUnits(t *testing.T) {
	requireOfflineVerify(t)
	dir := installUnits(t)
	// verify checks that the executable exists.
	content := string(templateByName(t, SystemdDir, QueueTemplate).Content)
	const shipped = "ExecStart=" + PackagedManager + " __queue-db\n"
	if !strings.Contains(content, shipped) {
		t.Fatalf("%s does not run %s", QueueTemplate, PackagedManager)
	}
	writeFile(t, filepath.Join(dir, QueueTemplate), strings.Replace(content, shipped, "ExecStart=/bin/true\n", 1))
	env := []string{"SYSTEMD_UNIT_PATH=" + dir + ":"}
	// By path: verify would read a name that is a file in the working
	// directory, this package's, from there.
	out, ok := runTool(t, env, "systemd-analyze", "--man=no", "verify", filepath.Join(dir, QueueSocket), "kato-queue@0-1-2.service")
	if complaints := complaintsAbout(out, dir, "kato-queue"); !ok || len(complaints) > 0 {
		t.Errorf("systemd-analyze verify %s (ok=%v):\n%s", QueueSocket, ok, out)
	}
}

// installUnits writes the systemd templates into a fresh directory and
// returns it, to be searched through SYSTEMD_UNIT_PATH.
func installUnits(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, tmpl := range Templates() {
		if tmpl.Dir == SystemdDir {
			writeFile(t, filepath.Join(dir, tmpl.Name), string(tmpl.Content))
		}
	}
	return dir
}

func TestVerifyInstanceUnit(t *testing.T) {
	requireOfflineVerify(t)

	t.Run("unconfigured instance refuses to start", func(t *testing.T) {
		dir := installUnits(t)
		// The trailing colon appends systemd's own search path, where
		// network-online.target lives.
		env := []string{"SYSTEMD_UNIT_PATH=" + dir + ":"}
		out, ok := runTool(t, env, "systemd-analyze", "--man=no", "verify", InstanceUnit("unconfigured"))
		if ok || !strings.Contains(out, "no ExecStart=") {
			t.Errorf("verify of an instance without drop-in: ok=%v, want a refusal for lack of ExecStart=:\n%s", ok, out)
		}
	})

	for _, tc := range []struct {
		name string
		d    InstanceDropIn
	}{
		{"plain", plainDropIn},
		{"hostile", hostileDropIn},
		{"hangs on SIGTERM", InstanceDropIn{ID: "gen-b", Command: []string{"/bin/kato"}, StopTimeout: 3 * time.Second, HangsOnSIGTERM: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := installUnits(t)
			d := tc.d
			// verify checks that the executable exists.
			d.Command = append([]string{"/bin/echo"}, d.Command[1:]...)
			content, err := RenderInstanceDropIn(d)
			if err != nil {
				t.Fatalf("RenderInstanceDropIn: %v", err)
			}
			writeFile(t, filepath.Join(dir, InstanceDropInDir(d.ID), DropInName), string(content))
			env := []string{"SYSTEMD_UNIT_PATH=" + dir + ":"}
			unit := InstanceUnit(d.ID)
			out, ok := runTool(t, env, "systemd-analyze", "--man=no", "verify", unit)
			if complaints := complaintsAbout(out, dir, unit); !ok || len(complaints) > 0 {
				t.Errorf("systemd-analyze verify %s (ok=%v):\n%s", unit, ok, out)
			}
		})
	}
}

// TestVerifyPrivateNetworkUnits hands systemd every unit of a private
// network, drop-ins included.
func TestVerifyPrivateNetworkUnits(t *testing.T) {
	requireOfflineVerify(t)
	if _, err := os.Stat(SocketProxyd); err != nil {
		t.Skipf("%s is not installed", SocketProxyd)
	}
	dir := installUnits(t)
	n := privateNetwork
	dropIns, err := RenderPrivateNetwork(n)
	if err != nil {
		t.Fatal(err)
	}
	instance, err := RenderInstanceDropIn(InstanceDropIn{ID: n.ID, Command: []string{"/bin/echo"}, Network: &n, StopTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dropIns = append(dropIns, UnitDropIn{Unit: InstanceUnit(n.ID), Content: instance})
	for _, d := range dropIns {
		writeFile(t, filepath.Join(dir, d.Unit+".d", DropInName), string(d.Content))
	}
	env := []string{"SYSTEMD_UNIT_PATH=" + dir + ":"}
	units := append([]string{InstanceUnit(n.ID)}, n.Units()...)
	out, ok := runTool(t, env, "systemd-analyze", append([]string{"--man=no", "verify"}, units...)...)
	if complaints := complaintsAbout(out, append([]string{dir}, units...)...); !ok || len(complaints) > 0 {
		t.Errorf("systemd-analyze verify (ok=%v):\n%s", ok, out)
	}
}

// TestSecurityExposure keeps the services' sandboxing from regressing:
// systemd-analyze security must rate every service this package ships at an
// exposure of 2.0 or less, kato-manager.service (root's serve) included.
// Each one's exposure is logged.
func TestSecurityExposure(t *testing.T) {
	requireOfflineVerify(t)
	if out, _ := runTool(t, nil, "systemd-analyze", "security", "--help"); !strings.Contains(out, "--offline") {
		t.Skip("systemd-analyze security has no --offline mode before systemd 250")
	}
	dir := t.TempDir()
	var services []string
	for _, tmpl := range Templates() {
		if tmpl.Dir != SystemdDir || !strings.HasSuffix(tmpl.Name, serviceSuffix) {
			continue
		}
		// A template is rated as one of its instances. A unit without
		// ExecStart= (kato-manager's drop-ins set it) gets one.
		unit := strings.Replace(tmpl.Name, "@.", "@x.", 1)
		content := string(tmpl.Content)
		if !strings.Contains(content, "\nExecStart=") {
			content += "\n[Service]\nExecStart=/bin/true\n"
		}
		writeFile(t, filepath.Join(dir, unit), content)
		services = append(services, unit)
	}
	for _, want := range []string{"kato@x.service", "kg-worker@x.service", "kato-proxy@x.service", "kato-link@x.service", "kato-front@x.service", ManagerService, LivenessService, "kato-queue@x.service"} {
		if !slices.Contains(services, want) {
			t.Fatalf("%s is not among the services rated: %v", want, services)
		}
	}
	for _, unit := range services {
		t.Run(unit, func(t *testing.T) {
			// The threshold is in tenths: 20 is an exposure level of 2.0.
			const threshold = "20"
			out, ok := runTool(t, nil, "systemd-analyze", "security", "--offline=true", "--threshold="+threshold, "--no-pager",
				filepath.Join(dir, unit))
			_, level, found := strings.Cut(out, "Overall exposure level for "+unit+": ")
			if !found {
				t.Fatalf("systemd-analyze security printed no exposure for %s:\n%s", unit, out)
			}
			level, _, _ = strings.Cut(level, " ")
			t.Logf("exposure of %s: %s", unit, level)
			if !ok {
				t.Errorf("exposure of %s is %s, above %s tenths:\n%s", unit, level, threshold, out)
			}
		})
	}
}

func TestSysusersCreatesUser(t *testing.T) {
	requireTool(t, "systemd-sysusers")
	root := t.TempDir()
	file := filepath.Join(t.TempDir(), "kato.conf")
	writeFile(t, file, string(templateByName(t, SysusersDir, "kato.conf").Content))
	out, ok := runTool(t, nil, "systemd-sysusers", "--dry-run", "--root="+root, file)
	if !ok {
		t.Fatalf("systemd-sysusers --dry-run failed:\n%s", out)
	}
	for _, want := range []string{"Creating group 'kato'", "Creating user 'kato' (KATO KG workers)"} {
		if !strings.Contains(out, want) {
			t.Errorf("systemd-sysusers output lacks %q:\n%s", want, out)
		}
	}
}

func TestTmpfilesCreatesDirectories(t *testing.T) {
	requireTool(t, "systemd-tmpfiles")
	if os.Geteuid() != 0 {
		t.Skip("systemd-tmpfiles needs root to give the directories to root")
	}
	requireTool(t, "systemd-sysusers")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The group the entries name must exist in the root first, as the
	// package installs sysusers.d before tmpfiles.d.
	users := filepath.Join(t.TempDir(), "kato.conf")
	writeFile(t, users, string(templateByName(t, SysusersDir, "kato.conf").Content))
	if out, ok := runTool(t, nil, "systemd-sysusers", "--root="+root, users); !ok {
		t.Fatalf("systemd-sysusers failed:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "kato.conf")
	writeFile(t, file, string(templateByName(t, TmpfilesDir, "kato.conf").Content))
	if out, ok := runTool(t, nil, "systemd-tmpfiles", "--create", "--root="+root, file); !ok {
		t.Fatalf("systemd-tmpfiles --create failed:\n%s", out)
	}
	for dir, want := range map[string]os.FileMode{"/var/lib/kato": 0o755, "/var/lib/kato/kg": 0o750, EnvironmentDir: 0o755} {
		info, err := os.Stat(filepath.Join(root, dir))
		if err != nil {
			t.Errorf("%s was not created: %v", dir, err)
			continue
		}
		if !info.IsDir() || info.Mode()&(os.ModePerm|os.ModeSticky) != want {
			t.Errorf("%s has mode %v, want a directory with %v", dir, info.Mode(), want)
		}
	}
}
