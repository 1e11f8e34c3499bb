package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary stand in for kato-manager when a command
// re-executes itself for its database work.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == queueDBCommand {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// queueDirFor makes a directory tree like /var/lib/kato/kg: a root-owned,
// world-searchable parent and a queue directory owned by nobody, who plays
// the kato user.
func queueDirFor(t *testing.T) (configText, kgDir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test is what root does")
	}
	old := serviceUser
	serviceUser = "nobody"
	t.Cleanup(func() { serviceUser = old })
	parent, err := os.MkdirTemp("", "kato-queue-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	kgDir = filepath.Join(parent, "kg")
	if err := os.Mkdir(kgDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(kgDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return "[kg]\ndb_path = \"" + filepath.Join(kgDir, "kg.db") + "\"\n", kgDir
}

func TestRootQueueWorkRunsAsServiceUser(t *testing.T) {
	configText, kgDir := queueDirFor(t)
	if code, _, stderr := runCLI(t, configText, "queue", "enqueue", "7", "8"); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := runCLI(t, configText, "queue", "stats", "--json")
	if code != 0 {
		t.Fatalf("stats: exit %d: %s", code, stderr)
	}
	var counts struct{ Pending, Total int }
	if err := json.Unmarshal([]byte(stdout), &counts); err != nil || counts.Pending != 2 || counts.Total != 2 {
		t.Fatalf("stats = %q (%v), want 2 pending", stdout, err)
	}
	code, stdout, stderr = runCLI(t, configText, "queue", "list", "--json")
	if code != 0 || !strings.Contains(stdout, `"content_id": 8`) {
		t.Fatalf("list: exit %d: %s %s", code, stdout, stderr)
	}
	// Every file of the database was made by the service user, none by root.
	entries, err := os.ReadDir(kgDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("queue directory: %v %v", entries, err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if st := info.Sys().(*syscall.Stat_t); st.Uid != 65534 {
			t.Errorf("%s is owned by uid %d, want the service user's 65534", e.Name(), st.Uid)
		}
	}
}

// TestRootFollowsNoPlantedLink is the finding that root created and
// chowned the target of a symlink the kato user planted at the database's
// path.
func TestRootFollowsNoPlantedLink(t *testing.T) {
	configText, kgDir := queueDirFor(t)
	secret := t.TempDir() // root's, 0700
	planted := filepath.Join(secret, "planted")
	if err := os.Symlink(planted, filepath.Join(kgDir, "kg.db")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"queue", "stats"},
		{"queue", "list"},
		{"queue", "enqueue", "1"},
		{"queue", "retry-failed"},
	} {
		code, _, stderr := runCLI(t, configText, args...)
		if code == 0 {
			t.Errorf("%q through a planted link succeeded", args)
		}
		if !strings.Contains(stderr, "kg.db") {
			t.Errorf("%q: stderr %q does not name the database", args, stderr)
		}
		if _, err := os.Lstat(planted); err == nil {
			t.Fatalf("%q: root created the link's target %s", args, planted)
		}
	}
}

func TestQueueChildRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	code, _, stderr := runCLI(t, "", queueDBCommand, "--db", filepath.Join(t.TempDir(), "kg.db"))
	if code != exitUsage || !strings.Contains(stderr, "must not run as root") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestEnsureQueueDirOnlyBelowRootOwnedDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "kg")
	if err := ensureQueueDir(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); st.Uid != 65534 || info.Mode().Perm() != 0o750 {
		t.Errorf("made %v owned by %d", info.Mode(), st.Uid)
	}
	// A parent another user can write: that user could swap the directory
	// for a link between mkdir and chown.
	open := t.TempDir()
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := ensureQueueDir(filepath.Join(open, "kg"), 65534, 65534); err == nil {
		t.Fatal("created a queue directory below a world-writable directory")
	}
}

// TestReopeningQueueReplacesADeadChild: serve keeps answering /stats after
// its database child died.
func TestReopeningQueueReplacesADeadChild(t *testing.T) {
	_, kgDir := queueDirFor(t)
	ctx := context.Background()
	dbPath := filepath.Join(kgDir, "kg.db")
	open := func() (queueDB, error) {
		return startQueueChild(ctx, dbPath, "--max-retries", "3", "--read-only=false")
	}
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	q := &reopeningQueue{q: first, open: open}
	defer q.Close()
	if _, err := q.Enqueue(ctx, 9, 1); err != nil {
		t.Fatal(err)
	}
	first.(*queueChild).cmd.Process.Kill()
	if _, err := q.Stats(ctx); err == nil {
		t.Fatal("a call to a killed child succeeded")
	}
	c, err := q.Stats(ctx)
	if err != nil || c.Pending != 1 {
		t.Fatalf("after the child died: %+v, %v", c, err)
	}
}
