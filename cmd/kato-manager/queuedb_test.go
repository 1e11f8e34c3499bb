package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/kgdb"
)

// slowChildOp is how long each request takes in a child on slow.db.
const slowChildOp = 300 * time.Millisecond

// TestMain lets the test binary stand in for kato-manager when a command
// re-executes itself for its database work.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == queueDBCommand {
		// A database named slow.db or hung.db makes the helper slow, or
		// never answer, in every request but the first.
		queueOpHook = func(db, op string) {
			if op == "open" || op == "ping" {
				return
			}
			switch filepath.Base(db) {
			case "slow.db":
				time.Sleep(slowChildOp)
			case "hung.db":
				time.Sleep(time.Hour)
			}
		}
		if grace, err := time.ParseDuration(os.Getenv(testGraceEnv)); err == nil {
			queueChildGrace = grace
		}
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
	old, oldSocket := serviceUser, queueSocket
	serviceUser = "nobody"
	// No kato-queue.socket: the child is forked.
	queueSocket = filepath.Join(t.TempDir(), "no-queue.sock")
	t.Cleanup(func() { serviceUser, queueSocket = old, oldSocket })
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
	queueTransports(t, rootQueueWorkRunsAsServiceUser)
}

func rootQueueWorkRunsAsServiceUser(t *testing.T, h *helpers, configText, kgDir string) {
	storeDocuments(t, filepath.Join(kgDir, "kg.db"), 7, 8)
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
	if h.socket && h.started() != 3 {
		t.Errorf("%d helpers started through the socket, want one per command (3)", h.started())
	}
}

// TestRootFollowsNoPlantedLink is the finding that root created and
// chowned the target of a symlink the kato user planted at the database's
// path.
func TestRootFollowsNoPlantedLink(t *testing.T) {
	queueTransports(t, rootFollowsNoPlantedLink)
}

func rootFollowsNoPlantedLink(t *testing.T, h *helpers, configText, kgDir string) {
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
	code, _, stderr := runCLI(t, "", queueDBCommand)
	if code != exitUsage || !strings.Contains(stderr, "must not run as root") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// TestRootQueueOnPeerAuthPostgres is the finding that root's queue
// commands connected to a PostgreSQL socket URL as root: with peer
// authentication, the README's set-up, they failed while the workers, as
// kato, worked. They reach the database as the service user, with the URL
// the workers use.
func TestRootQueueOnPeerAuthPostgres(t *testing.T) {
	queueTransports(t, rootQueueOnPeerAuthPostgres)
}

func rootQueueOnPeerAuthPostgres(t *testing.T, h *helpers, configText, kgDir string) {
	srv := pgtest.StartWithAuth(t, "local all all peer")
	adminURL := srv.NewDB(t)
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	admin := srv.Admin(t)
	// nobody plays kato: its role is the one peer authentication lets in.
	if _, err := admin.Exec("CREATE ROLE nobody LOGIN"); err != nil {
		t.Fatal(err)
	}
	execSQL(t, adminURL, "ALTER SCHEMA "+q.Get("search_path")+" OWNER TO nobody")
	// No user in the URL, as the README's: each side connects as itself.
	configText += "db_url = \"postgres:///kgtest?" + q.Encode() + "\"\n"

	// A document PostgreSQL does not hold is refused, and nothing is queued.
	code, _, stderr := runCLI(t, configText, "queue", "enqueue", "3", "4")
	if code != exitUsage || !strings.Contains(stderr, "invalid CONTENT_ID 3: has no crawled_content row") {
		t.Fatalf("queue enqueue of unknown documents: exit %d, %q; want 2 and CONTENT_ID 3 named", code, stderr)
	}
	if n := pgtest.Count(t, adminURL, "SELECT count(*) FROM kg_processing_queue"); n != 0 {
		t.Fatalf("a refused enqueue queued %d items", n)
	}
	execSQL(t, adminURL, "INSERT INTO crawled_content(id, url) VALUES (3, 'https://example.com/3'), (4, 'https://example.com/4')")
	if code, stdout, stderr := runCLI(t, configText, "queue", "enqueue", "3", "4"); code != 0 {
		t.Fatalf("queue enqueue: exit %d: %s %s", code, stdout, stderr)
	}
	code, stdout, stderr := runCLI(t, configText, "queue", "list", "--json")
	if code != 0 || !strings.Contains(stdout, `"content_id": 4`) {
		t.Errorf("queue list: exit %d: %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, configText, "queue", "stats", "--json")
	var counts struct{ Pending, Total int }
	if code != 0 || json.Unmarshal([]byte(stdout), &counts) != nil || counts.Pending != 2 {
		t.Errorf("queue stats: exit %d: %s %s; want 2 pending", code, stdout, stderr)
	}
	if n := pgtest.Count(t, adminURL, "SELECT count(*) FROM kg_processing_queue"); n != 2 {
		t.Errorf("%d items in PostgreSQL, want 2", n)
	}
	if entries, _ := os.ReadDir(kgDir); len(entries) != 0 {
		t.Errorf("a SQLite file was made with kg.db_url set: %v", entries)
	}
	if h.socket && h.started() != 4 {
		t.Errorf("%d helpers started through the socket, want one per command (4)", h.started())
	}
}

// storeDocuments creates the queue database at path, as the service user
// (nobody) will find it, holding crawled_content rows with the given ids.
func storeDocuments(t *testing.T, path string, contentIDs ...int64) {
	t.Helper()
	q, err := kgdb.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range contentIDs {
		if _, err := db.Exec("INSERT INTO crawled_content(id, url) VALUES (?, ?)", c, fmt.Sprintf("https://example.com/%d", c)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	q.Close()
	files, _ := filepath.Glob(path + "*")
	for _, f := range files {
		if err := os.Chown(f, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
}
