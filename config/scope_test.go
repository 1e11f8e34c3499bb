package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestUserPaths(t *testing.T) {
	// annHome is the user scope of HOME=/home/ann with the XDG defaults.
	annHome := Paths{
		User: true, Config: "/home/ann/.config/kato/kato.toml", Registry: "/home/ann/.local/state/kato/instances.toml",
		KGDB: "/home/ann/.local/state/kato/kg/kg.db", UnitDir: "/home/ann/.config/systemd/user", VendorUnitDir: "/home/ann/.local/share/systemd/user",
		EnvDir: "/home/ann/.config/kato/instances", WorkerEnvDir: "/home/ann/.config/kato",
		StateDir: "/home/ann/.local/state/kato/instances", MakeStateDir: true,
		ConfigHome: "/home/ann/.config", StateHome: "/home/ann/.local/state",
		FrontDir: "/home/ann/.config/kato/fronts", FrontRuntimeDir: "/run/user/1000/kato-front",
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want Paths
	}{
		{
			name: "home only: the XDG defaults",
			env:  map[string]string{"HOME": "/home/ann", "XDG_RUNTIME_DIR": "/run/user/1000"},
			want: annHome,
		},
		{
			name: "XDG_CONFIG_HOME and XDG_STATE_HOME honoured",
			env:  map[string]string{"HOME": "/home/ann", "XDG_CONFIG_HOME": "/cfg/", "XDG_STATE_HOME": "/st//ate", "XDG_DATA_HOME": "/data", "XDG_RUNTIME_DIR": "/rt/"},
			want: Paths{
				User: true, Config: "/cfg/kato/kato.toml", Registry: "/st/ate/kato/instances.toml",
				KGDB: "/st/ate/kato/kg/kg.db", UnitDir: "/cfg/systemd/user", VendorUnitDir: "/data/systemd/user",
				EnvDir: "/cfg/kato/instances", WorkerEnvDir: "/cfg/kato",
				StateDir: "/st/ate/kato/instances", MakeStateDir: true,
				ConfigHome: "/cfg", StateHome: "/st/ate",
				FrontDir: "/cfg/kato/fronts", FrontRuntimeDir: "/rt/kato-front",
			},
		},
		{
			name: "relative XDG values are ignored, as the specification says",
			env:  map[string]string{"HOME": "/home/ann", "XDG_CONFIG_HOME": "cfg", "XDG_STATE_HOME": "./state", "XDG_DATA_HOME": "share", "XDG_RUNTIME_DIR": "/run/user/1000"},
			want: annHome,
		},
		{
			name: "no HOME needed when the XDG variables are set",
			env:  map[string]string{"XDG_CONFIG_HOME": "/c", "XDG_STATE_HOME": "/s", "XDG_DATA_HOME": "/d"},
			want: Paths{
				User: true, Config: "/c/kato/kato.toml", Registry: "/s/kato/instances.toml", KGDB: "/s/kato/kg/kg.db",
				UnitDir: "/c/systemd/user", VendorUnitDir: "/d/systemd/user", EnvDir: "/c/kato/instances", WorkerEnvDir: "/c/kato",
				StateDir: "/s/kato/instances", MakeStateDir: true, ConfigHome: "/c", StateHome: "/s",
				// No XDG_RUNTIME_DIR: the one pam_systemd gives the user.
				FrontDir: "/c/kato/fronts", FrontRuntimeDir: fmt.Sprintf("/run/user/%d/kato-front", os.Getuid()),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UserPaths(func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("UserPaths =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestUserPathsNeedAHome(t *testing.T) {
	for _, home := range []string{"", "relative/home"} {
		_, err := ResolvePaths(true, func(k string) string {
			if k == "HOME" {
				return home
			}
			return ""
		})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "HOME" || fe.Value != home {
			t.Errorf("HOME=%q: error %v, want a field error naming HOME", home, err)
		}
	}
}

func TestSystemPaths(t *testing.T) {
	p, err := ResolvePaths(false, func(string) string { t.Fatal("the system scope reads no environment"); return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := Paths{
		Config: "/etc/kato/kato.toml", Registry: "/var/lib/kato/instances.toml", KGDB: "/var/lib/kato/kg/kg.db",
		UnitDir: "/etc/systemd/system", VendorUnitDir: "/usr/local/lib/systemd/system", EnvDir: "/etc/kato/instances", WorkerEnvDir: "/etc/kato",
		StateDir: "/var/lib/kato/instances", SysusersDir: "/usr/local/lib/sysusers.d", TmpfilesDir: "/usr/local/lib/tmpfiles.d",
		AdminSysusersDir: "/etc/sysusers.d", AdminTmpfilesDir: "/etc/tmpfiles.d", FileOwner: "kato",
		FrontDir: "/etc/kato/fronts", FrontRuntimeDir: "/run/kato-front",
	}
	if p != want {
		t.Errorf("SystemPaths =\n%+v\nwant\n%+v", p, want)
	}
	if c := p.Default(); c.KG.DBPath != DefaultKGDBPath || len(c.Services.Units) != 1 {
		t.Errorf("system defaults: db_path %q, services.units %q", c.KG.DBPath, c.Services.Units)
	}
}

// TestScopeLoad checks that the scope's queue database is the default a
// file without kg.db_path gets, and that one in the file still wins.
func TestScopeLoad(t *testing.T) {
	p, err := UserPaths(func(k string) string { return map[string]string{"HOME": "/home/ann"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct{ name, file, want string }{
		{"absent file", "", "/home/ann/.local/state/kato/kg/kg.db"},
		{"file without db_path", "[kg]\nnum_workers = 2\n", "/home/ann/.local/state/kato/kg/kg.db"},
		{"file with db_path", "[kg]\ndb_path = \"/data/kg.db\"\n", "/data/kg.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "absent.toml")
			if tc.file != "" {
				path = filepath.Join(dir, tc.name+".toml")
				if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, err := p.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if c.KG.DBPath != tc.want || c.Path != path {
				t.Errorf("db_path %q (path %q), want %q", c.KG.DBPath, c.Path, tc.want)
			}
			// A user manager cannot start the system's mongod.service.
			if len(c.Services.Units) != 0 {
				t.Errorf("services.units %q in the user scope, want none", c.Services.Units)
			}
		})
	}
}

func TestScopeTemplates(t *testing.T) {
	system, err := SystemPaths().Templates()
	if err != nil {
		t.Fatal(err)
	}
	user, err := UserPaths(func(k string) string { return map[string]string{"HOME": "/home/ann"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	userTemplates, err := user.Templates()
	if err != nil {
		t.Fatal(err)
	}
	if len(system) != 17 || len(userTemplates) != 6 {
		t.Fatalf("%d system and %d user templates, want 17 (units, the private network's units, the front, kato-manager.service, kato-liveness.service and its timer, kato-queue.socket and its service, sysusers.d, tmpfiles.d) and 6 (units, the front)", len(system), len(userTemplates))
	}
	for _, tmpl := range userTemplates {
		if tmpl.Dir != "systemd" {
			t.Errorf("user scope installs %s into %s", tmpl.Name, tmpl.Dir)
		}
	}
	user.ConfigHome = "/home/ann/my config"
	if _, err := user.Templates(); err == nil {
		t.Error("a config home with a space renders")
	}
}

// TestConfigAndRegistryFiles: KATO_CONFIG and KATO_REGISTRY, when set, are
// the files a command uses without --config and --registry.
func TestConfigAndRegistryFiles(t *testing.T) {
	p := SystemPaths()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if got := p.ConfigFile(getenv); got != p.Config {
		t.Errorf("ConfigFile without KATO_CONFIG: %s, want %s", got, p.Config)
	}
	if got := p.RegistryFile(getenv); got != p.Registry {
		t.Errorf("RegistryFile without KATO_REGISTRY: %s, want %s", got, p.Registry)
	}
	env["KATO_CONFIG"], env["KATO_REGISTRY"] = "/x/kato.toml", "/x/instances.toml"
	if got := p.ConfigFile(getenv); got != "/x/kato.toml" {
		t.Errorf("ConfigFile with KATO_CONFIG: %s", got)
	}
	if got := p.RegistryFile(getenv); got != "/x/instances.toml" {
		t.Errorf("RegistryFile with KATO_REGISTRY: %s", got)
	}
}
