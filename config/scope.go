package config

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kato-manager/kato-manager/units"
)

// Paths are the scope kato-manager works in: which systemd manager it
// drives and where its files live for it. There are two: the system's
// (SystemPaths, as root) and the invoking user's own manager (UserPaths,
// `kato-manager --user`). The command line resolves them once and hands them
// to everything that touches a file, the bus or the journal.
type Paths struct {
	// User selects the invoking user's systemd user manager (systemctl
	// --user, journalctl --user) instead of the system manager.
	User bool
	// Config is the configuration file: /etc/kato/kato.toml.
	Config string
	// Registry is the instance registry: /var/lib/kato/instances.toml.
	Registry string
	// KGDB is the default KG queue database, kg.db_path: /var/lib/kato/kg/kg.db.
	KGDB string
	// UnitDir holds the per-instance drop-ins and the .wants links:
	// /etc/systemd/system, the administrator's directory.
	UnitDir string
	// VendorUnitDir holds the unit files install-units writes:
	// /usr/local/lib/systemd/system, where systemd looks after /etc, so
	// /etc stays the administrator's for overrides. (The package puts the
	// same files under /usr/lib.)
	VendorUnitDir string
	// EnvDir holds the per-instance environment files: /etc/kato/instances.
	EnvDir string
	// WorkerEnvDir holds the environment file of the KG workers: /etc/kato.
	WorkerEnvDir string
	// StateDir holds the instances' state directories:
	// /var/lib/kato/instances.
	StateDir string
	// MakeStateDir says kato-manager and the workers make the directories
	// of an instance's state (in StateDir) and of the queue database
	// themselves; otherwise systemd does (StateDirectory=, which a user
	// manager on systemd before 254 puts under XDG_CONFIG_HOME, and
	// tmpfiles.d).
	MakeStateDir bool
	// SysusersDir and TmpfilesDir receive kato's sysusers.d and tmpfiles.d
	// entries: /usr/local/lib/sysusers.d and /usr/local/lib/tmpfiles.d.
	// They are empty where no system user and no system directories are
	// made (user scope).
	SysusersDir string
	TmpfilesDir string
	// AdminSysusersDir and AdminTmpfilesDir are the administrator's
	// directories, where earlier versions wrote the vendor files;
	// install-units removes the files it wrote there: /etc/sysusers.d and
	// /etc/tmpfiles.d.
	AdminSysusersDir string
	AdminTmpfilesDir string
	// FileOwner is the user a queue database created by kato-manager is
	// handed to, so the workers can write it, and the group install-units
	// gives kato.toml to: kato. Empty keeps the creator's (user scope:
	// everything is the user's own).
	FileOwner string
	// ConfigHome and StateHome are the XDG base directories the user scope
	// resolved (XDG_CONFIG_HOME, XDG_STATE_HOME); empty in the system scope.
	ConfigHome, StateHome string
	// FrontDir holds the fronts' configurations, GROUP.cfg:
	// /etc/kato/fronts.
	FrontDir string
	// FrontRuntimeDir holds each front's runtime directory, GROUP/, with
	// its sockets and saved server states, as kato-front@.service's
	// RuntimeDirectory= places it: /run/kato-front.
	FrontRuntimeDir string
	// Executable is the kato-manager binary the system's units run
	// (kato-manager.service's ExecStart=): the one that installs them, so
	// that a source install's unit runs /usr/local/bin/kato-manager. Empty
	// keeps units.PackagedManager.
	Executable string
}

// SystemPaths is the system scope: the system manager, as root, with the
// paths of a normal install. EnvDir, WorkerEnvDir and StateDir match the
// unit files in units.
func SystemPaths() Paths {
	return Paths{
		Config:           DefaultConfigPath,
		Registry:         DefaultRegistryPath,
		KGDB:             DefaultKGDBPath,
		UnitDir:          "/etc/systemd/system",
		VendorUnitDir:    "/usr/local/lib/systemd/system",
		EnvDir:           units.EnvironmentDir,
		WorkerEnvDir:     filepath.Dir(DefaultConfigPath),
		StateDir:         units.InstanceStateRoot,
		SysusersDir:      "/usr/local/lib/sysusers.d",
		TmpfilesDir:      "/usr/local/lib/tmpfiles.d",
		AdminSysusersDir: "/etc/sysusers.d",
		AdminTmpfilesDir: "/etc/tmpfiles.d",
		FileOwner:        ServiceUser,
		FrontDir:         units.FrontConfigDir,
		FrontRuntimeDir:  "/run/kato-front",
	}
}

// UserPaths is the user scope of the user whose environment getenv reads,
// following the XDG base directory specification:
//
//	configuration  $XDG_CONFIG_HOME/kato/kato.toml (~/.config/kato/kato.toml)
//	environment    $XDG_CONFIG_HOME/kato/instances/ID.env, kato/kg-worker.env
//	drop-ins       $XDG_CONFIG_HOME/systemd/user (~/.config/systemd/user)
//	unit files     $XDG_DATA_HOME/systemd/user (~/.local/share/systemd/user)
//	registry       $XDG_STATE_HOME/kato/instances.toml (~/.local/state/kato/…)
//	KG queue       $XDG_STATE_HOME/kato/kg/kg.db
//	instance state $XDG_STATE_HOME/kato/instances/ID
//
// An XDG variable that is unset, empty or not an absolute path is ignored,
// as the specification says; then HOME must be an absolute path.
func UserPaths(getenv func(string) string) (Paths, error) {
	dir := func(xdg, underHome string) (string, error) {
		if d := getenv(xdg); filepath.IsAbs(d) {
			return filepath.Clean(d), nil
		}
		home := getenv("HOME")
		if !filepath.IsAbs(home) {
			return "", &FieldError{Field: "HOME", Value: home, Rule: "must be an absolute path when " + xdg + " is not set (--user mode)"}
		}
		return filepath.Join(home, underHome), nil
	}
	configHome, err := dir("XDG_CONFIG_HOME", ".config")
	if err != nil {
		return Paths{}, err
	}
	stateHome, err := dir("XDG_STATE_HOME", ".local/state")
	if err != nil {
		return Paths{}, err
	}
	dataHome, err := dir("XDG_DATA_HOME", ".local/share")
	if err != nil {
		return Paths{}, err
	}
	conf := filepath.Join(configHome, "kato")
	state := filepath.Join(stateHome, "kato")
	// The user manager's %t, where a user's kato-front@ has its runtime
	// directory: XDG_RUNTIME_DIR, which pam_systemd sets to /run/user/UID.
	runtimeDir := getenv("XDG_RUNTIME_DIR")
	if !filepath.IsAbs(runtimeDir) {
		runtimeDir = fmt.Sprintf("/run/user/%d", os.Getuid())
	}
	return Paths{
		User:            true,
		Config:          filepath.Join(conf, "kato.toml"),
		Registry:        filepath.Join(state, "instances.toml"),
		KGDB:            filepath.Join(state, "kg", "kg.db"),
		UnitDir:         filepath.Join(configHome, "systemd", "user"),
		VendorUnitDir:   filepath.Join(dataHome, "systemd", "user"),
		EnvDir:          filepath.Join(conf, "instances"),
		WorkerEnvDir:    conf,
		StateDir:        filepath.Join(state, "instances"),
		MakeStateDir:    true,
		ConfigHome:      configHome,
		StateHome:       stateHome,
		FrontDir:        filepath.Join(conf, "fronts"),
		FrontRuntimeDir: filepath.Join(filepath.Clean(runtimeDir), "kato-front"),
	}, nil
}

// ResolvePaths is UserPaths when user is set and SystemPaths otherwise.
func ResolvePaths(user bool, getenv func(string) string) (Paths, error) {
	if !user {
		return SystemPaths(), nil
	}
	p, err := UserPaths(getenv)
	if err != nil {
		return Paths{}, fmt.Errorf("--user: %w", err)
	}
	return p, nil
}

// Default is the configuration of the scope when its file is absent:
// Default() with the scope's queue database and, in the user scope, no
// shared services, since a user manager cannot start the system's units.
func (p Paths) Default() *Config {
	c := Default()
	if p.KGDB != "" {
		c.KG.DBPath = p.KGDB
	}
	if p.User {
		c.Services.Units = []string{}
	}
	return c
}

// Load reads the configuration file at path, as Load does, over the
// scope's defaults.
func (p Paths) Load(path string) (*Config, error) {
	return load(path, p.Default())
}

// Templates are the files install-units writes in the scope: the system
// units, sysusers.d and tmpfiles.d entries, or the units rendered for a user
// manager with this scope's directories.
func (p Paths) Templates() ([]units.Template, error) {
	if !p.User {
		return units.SystemTemplates(p.Executable)
	}
	return units.UserTemplates(units.UserDirs{
		EnvDir:       p.EnvDir,
		WorkerEnvDir: p.WorkerEnvDir,
		StateDir:     p.StateDir,
		ConfigHome:   p.ConfigHome,
		StateHome:    p.StateHome,
		FrontDir:     p.FrontDir,
	})
}

// DropInPath is the drop-in kato-manager writes for the instance id.
func (p Paths) DropInPath(id string) string {
	return filepath.Join(p.UnitDir, units.InstanceDropInDir(id), units.DropInName)
}

// EnvPath is the environment file kato-manager writes for the instance id.
func (p Paths) EnvPath(id string) string {
	return filepath.Join(p.EnvDir, id+".env")
}

// HasInstanceFiles reports whether kato-manager's drop-in or environment
// file for the instance id exists: an instance that can be stopped even
// without a registry entry.
func (p Paths) HasInstanceFiles(id string) bool {
	if ValidateID(id) != nil {
		return false
	}
	for _, path := range []string{p.DropInPath(id), p.EnvPath(id)} {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

// ConfigFile is the configuration file a command reads when --config is
// not given: KATO_CONFIG when it is set, else the scope's.
func (p Paths) ConfigFile(getenv func(string) string) string {
	return cmp.Or(getenv("KATO_CONFIG"), p.Config)
}

// RegistryFile is the instance registry a command uses when --registry is
// not given: KATO_REGISTRY when it is set, else the scope's.
func (p Paths) RegistryFile(getenv func(string) string) string {
	return cmp.Or(getenv("KATO_REGISTRY"), p.Registry)
}
