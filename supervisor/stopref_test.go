package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kato-manager/kato-manager/config"
)

func TestStopTarget(t *testing.T) {
	dir := t.TempDir()
	reg := config.OpenRegistry(filepath.Join(dir, "instances.toml"))
	if err := os.WriteFile(reg.Path, []byte(`[instances.processor-1]
name = "Main Processor"
unit = "kato@processor-1.service"
api_port = 8001
created = 2026-01-01T00:00:00Z
updated = 2026-01-01T00:00:00Z
`), 0o644); err != nil {
		t.Fatal(err)
	}
	paths := config.Paths{UnitDir: filepath.Join(dir, "units"), EnvDir: filepath.Join(dir, "env")}
	if err := os.MkdirAll(paths.EnvDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Unit files without a registry entry: "ghost", and "main", which is
	// also the start of a registered name.
	for _, id := range []string{"ghost", "main"} {
		if err := os.WriteFile(paths.EnvPath(id), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ ref, want string }{
		{"processor-1", "processor-1"},
		{"Main Processor", "processor-1"},
		{"Main Pro", "processor-1"},
		{"ghost", "ghost"},
		{"main", "main"},
	} {
		got, err := StopTarget(reg, paths, tc.ref)
		if err != nil || got != tc.want {
			t.Errorf("StopTarget(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}
	if got, err := StopTarget(reg, paths, "nope"); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("StopTarget(nope) = %q, %v; want the registry's not found", got, err)
	}
	// An unreadable registry still lets an instance with unit files stop.
	if err := os.WriteFile(reg.Path, []byte("not toml ["), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := StopTarget(reg, paths, "ghost"); err != nil || got != "ghost" {
		t.Errorf("StopTarget(ghost) over a broken registry = %q, %v; want ghost", got, err)
	}
	if _, err := StopTarget(reg, paths, "processor-1"); err == nil {
		t.Error("StopTarget(processor-1) over a broken registry: no error")
	}
}
