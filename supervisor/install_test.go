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
	e.start(t, StartRequest{ID: "a"})
	for name, state := range map[string]string{
		"kato@orphan.service": "active", "kato@b.service": "inactive", "kg-worker@1.service": "active",
		"kg-worker@2.service": "failed", "mongod.service": "active",
	} {
		e.sd.set(name, func(u *UnitState) { u.ActiveState = state })
	}
	// An earlier version's drop-in, which the restart renders again.
	dropIn := filepath.Join(e.m.Paths.UnitDir, units.InstanceDropInDir("a"), units.DropInName)
	if err := os.WriteFile(dropIn, []byte("[Service]\nExecStart=/bin/old\n"), 0o644); err != nil {
		t.Fatal(err)
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
	if want := []string{"kato@a.service", "kato@orphan.service", "kg-worker@1.service"}; !slices.Equal(restarted, want) {
		t.Errorf("restarted %q, want %q", restarted, want)
	}
	if data, err := os.ReadFile(dropIn); err != nil || strings.Contains(string(data), "/bin/old") {
		t.Errorf("the registered instance's drop-in was not rendered again: %v\n%s", err, data)
	}
	for _, u := range []string{"kato@b.service", "kg-worker@2.service", "mongod.service"} {
		if slices.Contains(e.sd.callLog(), "restart "+u) || slices.Contains(e.sd.callLog(), "start "+u) {
			t.Errorf("%s was restarted", u)
		}
	}
	// Installed again with nothing new: no template changed.
	res, err = e.m.InstallUnits(context.Background())
	if err != nil || res.NewServiceTemplates() {
		t.Errorf("second install: new templates %v (%v)", res.Written, err)
	}
}

// TestLongIDNamesItsUser: an id too long for kato@.service's User=kato-%i
// gets its user from the drop-in, on the system manager only; a user
// manager runs everything as its own user.
func TestLongIDNamesItsUser(t *testing.T) {
	id := strings.Repeat("x", 40)
	for _, user := range []bool{false, true} {
		e := newTestEnv(t)
		e.m.Paths.User = user
		e.start(t, StartRequest{ID: id})
		data, err := os.ReadFile(filepath.Join(e.m.Paths.UnitDir, units.InstanceDropInDir(id), units.DropInName))
		if err != nil {
			t.Fatal(err)
		}
		named := strings.Contains(string(data), "\nUser="+units.InstanceUser(id)+"\n")
		if named == user || (user && strings.Contains(string(data), "User=")) {
			t.Errorf("user manager %v: drop-in names the user %v:\n%s", user, named, data)
		}
	}
}
