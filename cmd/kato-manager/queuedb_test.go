package main

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
)

// TestMain lets the test binary stand in for kato-manager when a command
// re-executes itself for its database work.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == queueDBCommand {
		queueOpHook = kgdbtest.Hook
		if grace, ok := kgdbtest.HelperGrace(); ok {
			queueChildGrace = grace
		}
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestRootQueueWorkRunsAsServiceUser(t *testing.T) {
	queueTransports(t, rootQueueWorkRunsAsServiceUser)
}

func rootQueueWorkRunsAsServiceUser(t *testing.T, h *kgdbtest.Helpers, configText, kgDir string) {
	kgdbtest.StoreDocuments(t, filepath.Join(kgDir, "kg.db"), 7, 8)
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
	if h.Socket && h.Started() != 3 {
		t.Errorf("%d helpers started through the socket, want one per command (3)", h.Started())
	}
}

// TestRootFollowsNoPlantedLink is the finding that root created and
// chowned the target of a symlink the kato user planted at the database's
// path.
func TestRootFollowsNoPlantedLink(t *testing.T) {
	queueTransports(t, rootFollowsNoPlantedLink)
}

func rootFollowsNoPlantedLink(t *testing.T, h *kgdbtest.Helpers, configText, kgDir string) {
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

func rootQueueOnPeerAuthPostgres(t *testing.T, h *kgdbtest.Helpers, configText, kgDir string) {
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
	if h.Socket && h.Started() != 4 {
		t.Errorf("%d helpers started through the socket, want one per command (4)", h.Started())
	}
}
