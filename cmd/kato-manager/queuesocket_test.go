package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
)

// queueVars are the settings of root's access to the helper that the
// helper kit changes for a test.
var queueVars = kgdbtest.Vars{User: &serviceUser, Socket: &queueSocket}

// queueTransports runs test with forked helpers, then through a stand-in
// for kato-queue.socket (kgdbtest.Transports), with the configuration of
// its queue directory.
func queueTransports(t *testing.T, test func(t *testing.T, h *kgdbtest.Helpers, configText, kgDir string)) {
	kgdbtest.Transports(t, queueVars, func(t *testing.T, h *kgdbtest.Helpers, kgDir string) {
		test(t, h, queueConfig(kgDir), kgDir)
	})
}

// queueDirFor makes a queue directory like /var/lib/kato/kg
// (kgdbtest.DBDir) and returns it with the configuration that names it.
func queueDirFor(t *testing.T) (configText, kgDir string) {
	t.Helper()
	kgDir = kgdbtest.DBDir(t, queueVars)
	return queueConfig(kgDir), kgDir
}

// queueConfig is a kato.toml whose queue is kg.db in kgDir.
func queueConfig(kgDir string) string {
	return "[kg]\ndb_path = \"" + filepath.Join(kgDir, "kg.db") + "\"\n"
}

// TestQueueSocketOnlyRoots: the first request may carry a PostgreSQL
// password, so root sends it only to a socket of root's at queueSocket,
// never to one another user made, nor to a file in its place.
func TestQueueSocketOnlyRoots(t *testing.T) {
	configText, _ := queueDirFor(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		make func(path string) error
	}{
		{"another user's socket", func(path string) error {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
			return os.Lchown(path, 65534, 65534)
		}},
		{"a file", func(path string) error { return os.WriteFile(path, nil, 0o600) }},
		{"a link to root's socket", func(path string) error {
			target := filepath.Join(dir, "roots.sock")
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: target, Net: "unix"})
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
			return os.Symlink(target, path)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".sock")
			if err := tc.make(path); err != nil {
				t.Fatal(err)
			}
			old := queueSocket
			queueSocket = path
			t.Cleanup(func() { queueSocket = old })
			code, _, stderr := runCLI(t, configText, "queue", "stats")
			if code == 0 || !strings.Contains(stderr, path+" is not a socket of root's") {
				t.Errorf("queue stats with %s at the socket's path: exit %d, %q", tc.name, code, stderr)
			}
		})
	}
}
