// Package testbed builds the programs of this repository and installs them
// into a real-systemd machine from internal/sdharness, for the end-to-end
// tests and the benchmarks.
package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/kato-manager/kato-manager/internal/sdharness"
)

// Where the programs under test live inside a machine: the paths of a
// normal install, plus the test doubles under /opt/kato-test.
const (
	KatoManager   = "/usr/local/bin/kato-manager"
	KGWorker      = "/usr/libexec/kato-manager/kg-worker"
	FakeProcessor = "/opt/kato-test/fakeprocessor"
	KGServiceFake = "/opt/kato-test/kgservicefake"
	MongoStandIn  = "/opt/kato-test/mongostandin"
)

// MongoUnit is the unit of the MongoDB stand-in inside a machine, listening
// on 127.0.0.1:27017 where services.mongo_url points by default. It is
// installed, not started: a configuration that lists it in services.units
// has every instance start it.
const MongoUnit = "mongod.service"

// mongoUnitFile runs the MongoDB stand-in.
const mongoUnitFile = `[Unit]
Description=MongoDB stand-in for tests (internal/mongostandin)

[Service]
ExecStart=/opt/kato-test/mongostandin --listen 127.0.0.1:27017
`

// GenerationA is a [processors.a] section running the processor test
// double as generation A, to append to Config; generation A needs MongoDB,
// so MongoUnit must run (see ConfigWithMongo).
const GenerationA = `
[processors.a]
command = ["/opt/kato-test/fakeprocessor", "--generation", "a"]
generation = "a"
ready_timeout = 20.0
`

// Config is /etc/kato/kato.toml inside a machine: the KATO processor test
// double as generation B (which ignores SIGTERM, hence the short stop
// timeout), no shared services, a generous ready timeout.
const Config = `
[processor]
command = ["/opt/kato-test/fakeprocessor"]
generation = "b"
ready_timeout = 20.0
stop_timeout = 1.0

[services]
units = []
`

// ConfigWithMongo is Config with MongoUnit as the shared service every
// instance starts after, and the generation-A processor "a".
var ConfigWithMongo = strings.Replace(Config, "units = []", `units = ["`+MongoUnit+`"]`, 1) + GenerationA

var programs = map[string]struct{ pkg, dst string }{
	"kato-manager":  {"./cmd/kato-manager", KatoManager},
	"kg-worker":     {"./cmd/kg-worker", KGWorker},
	"fakeprocessor": {"./internal/fakeprocessor", FakeProcessor},
	"kgservicefake": {"./internal/kgservicefake/cmd/kgservicefake", KGServiceFake},
	"mongostandin":  {"./internal/mongostandin", MongoStandIn},
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// repoRoot is the module root, two levels above this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Build compiles the programs once per process and returns their directory.
func Build() (string, error) {
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "kato-testbed-")
		if buildErr != nil {
			return
		}
		for name, p := range programs {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, name), p.pkg)
			cmd.Dir = repoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", p.pkg, err, out)
				return
			}
		}
	})
	return buildDir, buildErr
}

// Install copies the built programs and the test configuration into m.
func Install(m *sdharness.Machine) error {
	dir, err := Build()
	if err != nil {
		return err
	}
	for name, p := range programs {
		if err := m.CopyFile(filepath.Join(dir, name), p.dst, 0o755); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	if err := m.WriteFile("/etc/systemd/system/"+MongoUnit, []byte(mongoUnitFile), 0o644); err != nil {
		return err
	}
	return m.WriteFile("/etc/kato/kato.toml", []byte(Config), 0o644)
}
