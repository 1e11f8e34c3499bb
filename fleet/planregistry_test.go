package fleet

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// TestPlanRegistry: the plan is made against the registry file as it is
// on disk, and the registry read is returned with it; a registry that
// cannot be read is the error.
func TestPlanRegistry(t *testing.T) {
	c := config.Default()
	r := config.OpenRegistry(filepath.Join(t.TempDir(), "instances.toml"))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := r.Update(func(reg *config.Registry) error {
		reg.Instances = map[string]*config.Instance{"old": {ID: "old", Name: config.DefaultInstanceName, Unit: "kato@old.service", APIPort: 8001, ZMQPort: 5555,
			Network: config.NetworkHost, Parameters: c.Defaults.Clone(), Created: now, Updated: now}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want, err := resolveFile(t, c, "f.yaml", "instances:\n  - {id: new, port: 8002}\n")
	if err != nil {
		t.Fatal(err)
	}
	plan, reg, err := PlanRegistry(r, "f.yaml", want, true)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Instances["old"] == nil || plan.Count(Create) != 1 || len(plan.Removals()) != 1 || plan.Removals()[0] != "old" {
		t.Errorf("plan %+v of registry %+v: want new created and old removed", plan, reg.Instances)
	}
	bad := config.OpenRegistry(filepath.Join(t.TempDir(), "instances.toml"))
	if err := os.WriteFile(bad.Path, []byte("not toml ["), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := PlanRegistry(bad, "f.yaml", want, true); err == nil {
		t.Error("an unreadable registry was planned against")
	}
}

// TestCheckExportFormat: the formats export writes; another is refused
// by the field it came in, and Export refuses it the same way.
func TestCheckExportFormat(t *testing.T) {
	for _, f := range []string{"yaml", "json", "toml"} {
		if err := CheckExportFormat("--format", f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := CheckExportFormat("--format", "xml"); err == nil || err.Error() != "invalid --format xml: must be yaml, json or toml" {
		t.Errorf("xml: %v", err)
	}
	if _, err := Export(&config.Registry{}, config.Default().Defaults, "YAML"); err == nil || err.Error() != "invalid format YAML: must be yaml, json or toml" {
		t.Errorf("Export as YAML: %v", err)
	}
}
