package supervisor

import (
	"context"
	"os"
	"path/filepath"
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
