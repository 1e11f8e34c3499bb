package supervisor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
)

// TestInstanceFilesFromOneReadPerDirectory: the files status and gc look
// at, read once per directory, are those a look per instance finds: an
// instance's drop-in or environment file, a private-network unit's drop-in
// outliving its instance; a drop-in directory without kato-manager's
// drop-in is no file of an instance.
func TestInstanceFilesFromOneReadPerDirectory(t *testing.T) {
	e := newTestEnv(t)
	p := e.m.Paths
	write := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(p.DropInPath("both"))
	write(p.EnvPath("both"))
	write(p.DropInPath("dropin"))
	write(p.EnvPath("env"))
	write(filepath.Join(p.UnitDir, strings.TrimSuffix(units.NetworkPatterns()[0], "*")+"net.api.socket.d", units.DropInName))
	write(filepath.Join(p.UnitDir, units.InstanceDropInDir("other"), "50-admin.conf"))
	write(filepath.Join(p.EnvDir, "not an id.env"))
	files := e.m.readInstanceFiles()
	for _, id := range []string{"both", "dropin", "env", "net", "other", "none"} {
		if got, want := files.has(id), p.HasInstanceFiles(id); got != want {
			t.Errorf("%s: has files %v, a look at its files says %v", id, got, want)
		}
	}
	reg := &config.Registry{Instances: map[string]*config.Instance{"both": {ID: "both"}}}
	if got, want := e.m.orphansIn(reg, []UnitState{{Name: "kato@live.service", ActiveState: "active"}, {Name: "kato@old.service", ActiveState: "inactive"}}),
		[]string{"dropin", "env", "live", "net"}; !slices.Equal(got, want) {
		t.Errorf("orphans = %v, want %v", got, want)
	}
}
