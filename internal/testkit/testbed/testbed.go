// Package testbed builds the programs of this repository and installs them
// into a real-systemd machine from internal/testkit/sdharness, for the end-to-end
// tests and the benchmarks.
package testbed

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
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
Description=MongoDB stand-in for tests (internal/testkit/mongostandin)

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
	"fakeprocessor": {"./internal/testkit/fakeprocessor", FakeProcessor},
	"kgservicefake": {"./internal/testkit/kgservicefake/cmd/kgservicefake", KGServiceFake},
	"mongostandin":  {"./internal/testkit/mongostandin", MongoStandIn},
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// repoRoot is the module root, three levels above this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Build compiles the programs once per process and returns their directory.
func Build() (string, error) { return BuildShowing(nil) }

// BuildShowing is Build that, on the first call, tells progress what it
// fetches and compiles as it goes (nil: nothing). The programs build in one
// `go build`, side by side, with the build configuration the environment
// gives (the Makefile's, from packaging/build.env), so a machine compiles
// the SQLite driver once for the demo, the tests and the binaries.
func BuildShowing(progress io.Writer) (string, error) {
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "kato-testbed-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-o", buildDir + "/"}
		if progress != nil {
			args = append(args, "-v")
		}
		for _, p := range programs {
			args = append(args, p.pkg)
		}
		slices.Sort(args[3:])
		cmd := exec.Command("go", args...)
		cmd.Dir = repoRoot()
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = &out
		if progress != nil {
			cmd.Stderr = &compileProgress{w: progress, all: &out}
		}
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build %s: %v\n%s", strings.Join(args[1:], " "), err, out.Bytes())
			return
		}
		for name := range programs {
			if _, err := os.Stat(filepath.Join(buildDir, name)); err != nil {
				buildErr = fmt.Errorf("go build left no %s: %w", name, err)
				return
			}
		}
	})
	return buildDir, buildErr
}

// compileProgress turns what `go build -v` writes (a package's path as it
// is compiled, "go: downloading …" as a module is fetched) into one line
// per step, and keeps all of it for an error message.
type compileProgress struct {
	w       io.Writer
	all     *bytes.Buffer
	partial []byte
}

// slowPackages are compiled for longer than a few seconds on a cold cache.
var slowPackages = map[string]string{
	"github.com/mattn/go-sqlite3": " (SQLite's C: a minute or more, once per machine)",
}

func (c *compileProgress) Write(p []byte) (int, error) {
	c.all.Write(p)
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(c.partial[:i])
		c.partial = c.partial[i+1:]
		switch {
		case strings.HasPrefix(line, "go: "):
			fmt.Fprintln(c.w, "   ", strings.TrimPrefix(line, "go: "))
		case line != "" && !strings.ContainsAny(line, " \t#"):
			fmt.Fprintf(c.w, "    compiling %s%s\n", line, slowPackages[line])
		}
	}
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
