package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The maintainer scripts run here against a root directory given as
// DPKG_ROOT, as dpkg --root runs them, with test doubles of the systemd
// tools that record how they were called. How they drive a running systemd
// is shown by internal/e2e's TestDebLifecycle.

// systemdTools are the programs the scripts call, all from systemd or
// Debian's init-system-helpers.
var systemdTools = []string{"systemd-sysusers", "systemd-tmpfiles", "systemctl", "deb-systemd-helper", "deb-systemd-invoke"}

// debianTools are the ones only Debian has.
var debianTools = []string{"deb-systemd-helper", "deb-systemd-invoke"}

// scriptRun is one run of a maintainer script.
type scriptRun struct {
	root  string   // the DPKG_ROOT
	calls []string // the systemd tools called, one "name args…" each
}

// runScript runs script with args under DPKG_ROOT=root; the systemd tools
// named in tools exist as test doubles, the others are missing.
func runScript(t *testing.T, root, script string, tools []string, args ...string) scriptRun {
	t.Helper()
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "calls")
	for _, tool := range tools {
		double := "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>\"$CALLS\"\n"
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(double), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The scripts need rm and rmdir besides shell builtins; the doubles need basename.
	for _, prog := range []string{"rm", "rmdir", "basename"} {
		path, err := exec.LookPath(prog)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path, filepath.Join(bin, prog)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/bin/sh", append([]string{filepath.Join("scripts", script)}, args...)...)
	cmd.Env = []string{"PATH=" + bin, "DPKG_ROOT=" + root, "CALLS=" + log}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", script, args, err, out)
	}
	data, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	run := scriptRun{root: root}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l != "" {
			run.calls = append(run.calls, strings.ReplaceAll(l, root, "ROOT"))
		}
	}
	return run
}

// installedState is a root as kato-manager leaves it after running
// instances and workers, by path, with the operator's own files besides.
var installedState = map[string]string{
	"var/lib/kato/instances.toml":                                    "file",
	"var/lib/kato/kg/kg.db":                                          "file",
	"var/lib/kato/instances/a/learned":                               "file",
	"var/lib/private/kato/instances/b/learned":                       "file",
	"var/lib/private/other/data":                                     "file",
	"etc/kato/kato.toml":                                             "file",
	"etc/kato/kg-worker.env":                                         "file",
	"etc/kato/instances/a.env":                                       "file",
	"etc/systemd/system/kato@a.service.d/kato-manager.conf":          "file",
	"etc/systemd/system/kato@a.service.d/override.conf":              "file",
	"etc/systemd/system/kato.target.wants/kato@a.service":            "link",
	"etc/systemd/system/kg-workers.target.wants/kg-worker@1.service": "link",
	"etc/systemd/system/multi-user.target.wants/kato.target":         "link",
	"etc/systemd/system/multi-user.target.wants/kg-workers.target":   "link",
	"etc/systemd/system/sockets.target.wants/kato-queue.socket":      "link",
	"etc/systemd/system/timers.target.wants/kato-liveness.timer":     "link",
	"etc/systemd/system/kato@.service.d/local.conf":                  "file",
	"etc/systemd/system/kato-group@web.target.d/kato-manager.conf":   "file",
	"etc/systemd/system/kato-group@.target.d/local.conf":             "file",
	"etc/systemd/system/multi-user.target.wants/ssh.service":         "link",
	"etc/systemd/system/katolog@x.service.d/override.conf":           "file",
	"var/lib/other/data":                                             "file",
}

// purged are the paths of installedState a purge deletes.
var purged = []string{
	"var/lib/kato/instances.toml",
	"var/lib/kato/kg/kg.db",
	"var/lib/kato/instances/a/learned",
	"var/lib/private/kato/instances/b/learned",
	"etc/kato/kato.toml",
	"etc/kato/kg-worker.env",
	"etc/kato/instances/a.env",
	"etc/systemd/system/kato@a.service.d/kato-manager.conf",
	"etc/systemd/system/kato@a.service.d/override.conf",
	"etc/systemd/system/kato-group@web.target.d/kato-manager.conf",
	"etc/systemd/system/kato.target.wants/kato@a.service",
	"etc/systemd/system/kg-workers.target.wants/kg-worker@1.service",
	"etc/systemd/system/multi-user.target.wants/kato.target",
	"etc/systemd/system/multi-user.target.wants/kg-workers.target",
	"etc/systemd/system/sockets.target.wants/kato-queue.socket",
	"etc/systemd/system/timers.target.wants/kato-liveness.timer",
}

func makeInstalledState(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for path, kind := range installedState {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if kind == "link" {
			err = os.Symlink("/usr/lib/systemd/system/"+filepath.Base(path), full)
		} else {
			err = os.WriteFile(full, []byte(path), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestMaintainerScripts(t *testing.T) {
	const (
		sysusers = "systemd-sysusers --root=ROOT kato.conf"
		tmpfiles = "systemd-tmpfiles --root=ROOT --create kato.conf"
	)
	withDebian := systemdTools
	withoutDebian := slices.DeleteFunc(slices.Clone(systemdTools), func(s string) bool { return slices.Contains(debianTools, s) })
	for _, tc := range []struct {
		name, script string
		args         []string
		tools        []string
		calls        []string
		purges       bool
	}{
		{"deb first install", "postinstall.sh", []string{"configure", ""}, withDebian,
			[]string{sysusers, tmpfiles, "deb-systemd-helper enable kato.target kg-workers.target kato-queue.socket kato-liveness.timer"}, false},
		{"deb upgrade", "postinstall.sh", []string{"configure", "1.0.0"}, withDebian,
			[]string{sysusers, tmpfiles, "deb-systemd-helper debian-installed kato-queue.socket", "deb-systemd-helper debian-installed kato-liveness.timer"}, false},
		{"deb rollback", "postinstall.sh", []string{"abort-upgrade", "1.0.1"}, withDebian,
			[]string{sysusers, tmpfiles}, false},
		{"rpm first install", "postinstall.sh", []string{"1"}, withoutDebian,
			[]string{sysusers, tmpfiles, "systemctl --root=ROOT --no-reload enable kato.target kg-workers.target kato-queue.socket kato-liveness.timer"}, false},
		{"rpm upgrade", "postinstall.sh", []string{"2"}, withoutDebian,
			[]string{sysusers, tmpfiles, "systemctl --root=ROOT --no-reload enable kato-queue.socket kato-liveness.timer"}, false},
		{"install without systemd's tools", "postinstall.sh", []string{"configure", ""}, nil, nil, false},
		{"unknown postinstall argument", "postinstall.sh", []string{"triggered", "x"}, withDebian, nil, false},
		{"deb remove, before", "preremove.sh", []string{"remove"}, withDebian, nil, false},
		{"deb upgrade, before", "preremove.sh", []string{"upgrade", "1.0.1"}, withDebian, nil, false},
		{"rpm erase, before", "preremove.sh", []string{"0"}, withoutDebian, nil, false},
		{"deb remove, after", "postremove.sh", []string{"remove"}, withDebian, nil, false},
		{"deb upgrade, after", "postremove.sh", []string{"upgrade", "1.0.1"}, withDebian, nil, false},
		{"rpm erase, after", "postremove.sh", []string{"0"}, withoutDebian, nil, false},
		{"rpm upgrade, after", "postremove.sh", []string{"1"}, withoutDebian, nil, false},
		{"deb purge", "postremove.sh", []string{"purge"}, withDebian,
			[]string{"deb-systemd-helper purge kato.target kg-workers.target kato-manager.service kato-queue.socket kato-liveness.timer"}, true},
		{"deb purge without deb-systemd-helper", "postremove.sh", []string{"purge"}, withoutDebian, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := makeInstalledState(t)
			run := runScript(t, root, tc.script, tc.tools, tc.args...)
			if !slices.Equal(run.calls, tc.calls) {
				t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(run.calls, "\n"), strings.Join(tc.calls, "\n"))
			}
			for path := range installedState {
				_, err := os.Lstat(filepath.Join(root, path))
				gone := os.IsNotExist(err)
				if want := tc.purges && slices.Contains(purged, path); gone != want {
					t.Errorf("%s gone: %v, want %v", path, gone, want)
				}
			}
			if tc.purges {
				for _, dir := range []string{"var/lib/kato", "var/lib/private/kato", "etc/kato", "etc/systemd/system/kato@a.service.d",
					"etc/systemd/system/kato-group@web.target.d",
					"etc/systemd/system/kato.target.wants", "etc/systemd/system/kg-workers.target.wants"} {
					if _, err := os.Lstat(filepath.Join(root, dir)); !os.IsNotExist(err) {
						t.Errorf("%s is left after purge", dir)
					}
				}
			}
		})
	}
}

// TestMaintainerScriptsArePOSIX checks the scripts parse as POSIX sh, which
// both dpkg and rpm run them with.
func TestMaintainerScriptsArePOSIX(t *testing.T) {
	scripts, err := filepath.Glob("scripts/*.sh")
	if err != nil || len(scripts) != 3 {
		t.Fatalf("scripts: %v %v", scripts, err)
	}
	for _, s := range scripts {
		t.Run(filepath.Base(s), func(t *testing.T) {
			dash := needTool(t, "dash")
			if out, err := exec.Command(dash, "-n", s).CombinedOutput(); err != nil {
				t.Fatalf("dash -n %s: %v\n%s", s, err, out)
			}
			data, err := os.ReadFile(s)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(data), "#!/bin/sh\n") {
				t.Errorf("%s does not start with #!/bin/sh", s)
			}
		})
	}
}
