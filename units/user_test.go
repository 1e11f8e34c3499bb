package units

import (
	"slices"
	"strings"
	"testing"
)

var testUserDirs = UserDirs{
	EnvDir:       "/home/ann/.config/kato/instances",
	WorkerEnvDir: "/home/ann/.config/kato",
	StateDir:     "/home/ann/.local/state/kato/instances",
	ConfigHome:   "/home/ann/.config",
	StateHome:    "/home/ann/.local/state",
	FrontDir:     "/home/ann/.config/kato/fronts",
}

// directives returns the Key=value lines of a unit file, comments left out.
func directives(content []byte) []string {
	var out []string
	for _, line := range strings.Split(string(content), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "[") {
			out = append(out, line)
		}
	}
	return out
}

func userTemplate(t *testing.T, d UserDirs, name string) []string {
	t.Helper()
	templates, err := UserTemplates(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, tmpl := range templates {
		if tmpl.Name == name {
			return directives(tmpl.Content)
		}
	}
	t.Fatalf("no user template %s", name)
	return nil
}

func TestUserTemplatesList(t *testing.T) {
	templates, err := UserTemplates(testUserDirs)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tmpl := range templates {
		if tmpl.Dir != SystemdDir {
			t.Errorf("%s goes into %s; a user manager has only unit files", tmpl.Name, tmpl.Dir)
		}
		if !strings.HasPrefix(string(tmpl.Content), "# Installed by kato-manager --user") {
			t.Errorf("%s does not say what made it:\n%s", tmpl.Name, tmpl.Content)
		}
		names = append(names, tmpl.Name)
	}
	if want := []string{"kato@.service", InstanceTarget, GroupTemplate, FrontTemplate, "kg-worker@.service", WorkerTarget}; !slices.Equal(names, want) {
		t.Errorf("user templates %q, want %q", names, want)
	}
}

func TestUserTemplatesLeaveOutPrivilegedSettings(t *testing.T) {
	for _, name := range []string{"kato@.service", "kg-worker@.service"} {
		system := directives(templateByName(t, SystemdDir, name).Content)
		user := userTemplate(t, testUserDirs, name)
		for _, line := range user {
			key, _, _ := strings.Cut(line, "=")
			if slices.Contains(UserLeftOut, key) {
				t.Errorf("%s for the user manager keeps %s", name, line)
			}
			if strings.Contains(line, "/etc/kato") || strings.Contains(line, "/var/lib/kato") || strings.Contains(line, "network-online") {
				t.Errorf("%s for the user manager names a system place: %s", name, line)
			}
		}
		// The unprivileged sandboxing stays: seccomp and no new privileges.
		for _, keep := range []string{"NoNewPrivileges=yes", "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
			"RestrictNamespaces=yes", "LockPersonality=yes", "UMask=0027", "Restart=on-failure"} {
			if !slices.Contains(system, keep) || !slices.Contains(user, keep) {
				t.Errorf("%s: %s in the system unit %v, in the user unit %v", name, keep, slices.Contains(system, keep), slices.Contains(user, keep))
			}
		}
	}
}

func TestUserTemplatesNameTheUsersDirectories(t *testing.T) {
	instance := userTemplate(t, testUserDirs, "kato@.service")
	worker := userTemplate(t, testUserDirs, "kg-worker@.service")
	frontUnit := userTemplate(t, testUserDirs, FrontTemplate)
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"instance environment file", instance, "EnvironmentFile=/home/ann/.config/kato/instances/%i.env"},
		{"instance working directory", instance, "WorkingDirectory=/home/ann/.local/state/kato/instances/%i"},
		{"instance state directory", instance, "Environment=STATE_DIRECTORY=/home/ann/.local/state/kato/instances/%i"},
		{"worker environment file", worker, "EnvironmentFile=-/home/ann/.config/kato/kg-worker.env"},
		{"worker in user mode", worker, "ExecStart=/usr/libexec/kato-manager/kg-worker --user --worker-id %i"},
		{"front configuration", frontUnit, "ExecStart=/usr/sbin/haproxy -Ws -f /home/ann/.config/kato/fronts/%i.cfg"},
		{"front configuration checked", frontUnit, "AssertPathExists=/home/ann/.config/kato/fronts/%i.cfg"},
		{"front reload", frontUnit, "ExecReload=/usr/sbin/haproxy -c -q -f /home/ann/.config/kato/fronts/%i.cfg"},
		{"front sockets under the user's runtime directory", frontUnit, "RuntimeDirectory=kato-front/%i"},
		{"worker XDG directories", worker, "Environment=XDG_CONFIG_HOME=/home/ann/.config XDG_STATE_HOME=/home/ann/.local/state"},
		{"instance target", userTemplate(t, testUserDirs, InstanceTarget), "WantedBy=default.target"},
		{"worker target", userTemplate(t, testUserDirs, WorkerTarget), "WantedBy=default.target"},
	} {
		if !slices.Contains(tc.lines, tc.want) {
			t.Errorf("%s: no %s in\n%s", tc.name, tc.want, strings.Join(tc.lines, "\n"))
		}
	}
	// A '%' in a directory is escaped, so systemd's specifiers leave it.
	d := testUserDirs
	d.StateDir = "/home/100%/state"
	if lines := userTemplate(t, d, "kato@.service"); !slices.Contains(lines, "WorkingDirectory=/home/100%%/state/%i") {
		t.Errorf("'%%' not escaped:\n%s", strings.Join(lines, "\n"))
	}
}

func TestUserTemplatesRejectUnwritableDirectories(t *testing.T) {
	for _, tc := range []struct{ name, field, dir, rule string }{
		{"relative", "EnvDir", "home/ann", "absolute path"},
		{"space", "StateDir", "/home/ann smith/state", "whitespace"},
		{"quote", "ConfigHome", `/home/"ann"`, "quotes"},
		{"newline", "WorkerEnvDir", "/home/ann\n[Service]", "control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testUserDirs
			switch tc.field {
			case "EnvDir":
				d.EnvDir = tc.dir
			case "StateDir":
				d.StateDir = tc.dir
			case "ConfigHome":
				d.ConfigHome = tc.dir
			case "WorkerEnvDir":
				d.WorkerEnvDir = tc.dir
			}
			_, err := UserTemplates(d)
			if err == nil || !strings.Contains(err.Error(), "invalid "+tc.field) || !strings.Contains(err.Error(), tc.rule) {
				t.Errorf("error %v, want one naming %s and %q", err, tc.field, tc.rule)
			}
		})
	}
}

// userApplies are the directives of the system units a user manager
// applies as they are. A directive added to the system units must be put
// here or in UserLeftOut, after checking systemd.exec(5) for what it needs.
var userApplies = []string{
	"Description", "Documentation", "PartOf", "Before", "After", "Wants", "StartLimitIntervalSec", "StartLimitBurst",
	"Type", "NotifyAccess", "ExecStart", "EnvironmentFile", "WorkingDirectory", "SyslogIdentifier", "WatchdogSec",
	"Restart", "RestartSec", "TimeoutStartSec", "TimeoutStopSec", "KillMode",
	"NoNewPrivileges", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
	"SystemCallArchitectures", "SystemCallFilter", "RestrictAddressFamilies", "UMask", "WantedBy",
	// kato-front@'s: its runtime directory is under the user's (%t).
	"AssertPathExists", "ExecStartPre", "ExecReload", "SuccessExitStatus", "RuntimeDirectory", "RuntimeDirectoryMode",
}

func TestEverySystemDirectiveHasAUserDecision(t *testing.T) {
	for _, tmpl := range Templates() {
		// The private network's units, serve's and root's queue helper's
		// are not installed for a user.
		if tmpl.Dir != SystemdDir || isNetworkTemplate(tmpl.Name) || isSystemOnly(tmpl.Name) {
			continue
		}
		for _, line := range directives(tmpl.Content) {
			key, _, _ := strings.Cut(line, "=")
			if !slices.Contains(userApplies, key) && !slices.Contains(UserLeftOut, key) {
				t.Errorf("%s sets %s=, which is neither in userApplies nor in UserLeftOut: does a user manager apply it?", tmpl.Name, key)
			}
		}
	}
}
