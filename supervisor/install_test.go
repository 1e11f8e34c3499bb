package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/units"
)

// TestInstallUnitsRunsTheInstallingBinary: kato-manager.service as
// install-units writes it runs the kato-manager of Paths.Executable, the
// binary that installs it, not the packages' /usr/bin/kato-manager.
func TestInstallUnitsRunsTheInstallingBinary(t *testing.T) {
	for _, tc := range []struct{ exe, want string }{
		{"/usr/local/bin/kato-manager", `ExecStart="/usr/local/bin/kato-manager" "serve"`},
		{"", "ExecStart=" + units.PackagedManager + " serve"},
	} {
		e := newTestEnv(t)
		e.m.Paths.Executable = tc.exe
		if _, err := e.m.InstallUnits(context.Background()); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(e.m.Paths.VendorUnitDir, units.ManagerService))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "\n"+tc.want+"\n") {
			t.Errorf("executable %q: kato-manager.service has no %s:\n%s", tc.exe, tc.want, data)
		}
	}
}

// TestRestartRunning restarts what runs, instances and workers, so that it
// runs on newly installed unit files; what is stopped stays stopped.
func TestRestartRunning(t *testing.T) {
	e := newTestEnv(t)
	for name, state := range map[string]string{
		"kato@a.service": "active", "kato@b.service": "inactive", "kg-worker@1.service": "active",
		"kg-worker@2.service": "failed", "mongod.service": "active",
	} {
		e.sd.set(name, func(u *UnitState) { u.ActiveState = state })
	}
	res, err := e.m.InstallUnits(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.NewServiceTemplates() {
		t.Fatalf("a first install reports no new service templates: %v", res.Written)
	}
	restarted, err := e.m.RestartRunning(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(restarted)
	if want := []string{"kato@a.service", "kg-worker@1.service"}; !slices.Equal(restarted, want) {
		t.Errorf("restarted %q, want %q", restarted, want)
	}
	var calls []string
	for _, c := range e.sd.callLog() {
		if strings.HasPrefix(c, "restart ") {
			calls = append(calls, c)
		}
	}
	if len(calls) != 2 {
		t.Errorf("restart calls %q", calls)
	}
	// Installed again with nothing new: no template changed.
	res, err = e.m.InstallUnits(context.Background())
	if err != nil || res.NewServiceTemplates() {
		t.Errorf("second install: new templates %v (%v)", res.Written, err)
	}
}
