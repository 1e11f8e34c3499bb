package sdharness

import (
	"strings"
	"testing"
	"time"
)

// TestReboot: a reboot keeps the disk, starts afresh with /run and /tmp, and
// brings back what was enabled, not what was only started.
func TestReboot(t *testing.T) {
	t.Parallel()
	m := ForTest(t, Options{BootTimeout: 90 * time.Second})
	ctx := t.Context()
	run := func(name string, args ...string) string {
		t.Helper()
		out, _, err := m.Run(ctx, name, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	unit := "[Unit]\nDescription=%s\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
	for _, name := range []string{"enabled", "started"} {
		if err := m.WriteFile("/etc/systemd/system/sdharness-"+name+".service", []byte(strings.ReplaceAll(unit, "%s", name)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("systemctl", "daemon-reload")
	run("systemctl", "enable", "--now", "sdharness-enabled.service")
	run("systemctl", "start", "sdharness-started.service")
	run("sh", "-c", "echo kept >/var/lib/sdharness-disk && echo gone >/run/sdharness-run && echo gone >/tmp/sdharness-tmp")
	firstPID := m.PID()

	if err := m.Reboot(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if m.PID() == firstPID {
		t.Fatalf("PID 1 is still host pid %d", firstPID)
	}
	if got := strings.TrimSpace(run("cat", "/var/lib/sdharness-disk")); got != "kept" {
		t.Errorf("/var/lib lost its file: %q", got)
	}
	for _, p := range []string{"/run/sdharness-run", "/tmp/sdharness-tmp"} {
		if out, _, err := m.Run(ctx, "test", "-e", p); err == nil {
			t.Errorf("%s survived the reboot %s", p, out)
		}
	}
	if got := strings.TrimSpace(run("systemctl", "is-active", "sdharness-enabled.service")); got != "active" {
		t.Errorf("the enabled unit is %s after the reboot", got)
	}
	if out, _, _ := m.Run(ctx, "systemctl", "is-active", "sdharness-started.service"); strings.TrimSpace(out) != "inactive" {
		t.Errorf("the unit that was only started is %s after the reboot", strings.TrimSpace(out))
	}
	// The first boot was shut down, not cut off: its units were stopped.
	if console, err := m.ConsoleLog(); err != nil || !strings.Contains(console, "Stopped") {
		t.Errorf("the console shows no shutdown (%v)", err)
	}
	// Reboots are repeatable.
	if err := m.Reboot(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(run("systemctl", "is-active", "sdharness-enabled.service")); got != "active" {
		t.Errorf("the enabled unit is %s after the second reboot", got)
	}
}
