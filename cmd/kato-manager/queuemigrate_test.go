package main

import (
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
)

// originalQueue is a KG database as the system being replaced left it.
const originalQueue = `
CREATE TABLE crawled_content (id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT UNIQUE NOT NULL, title TEXT,
	markdown TEXT, metadata TEXT, kg_processed BOOLEAN DEFAULT 0, kg_entity_count INTEGER DEFAULT 0,
	kg_relationship_count INTEGER DEFAULT 0, kg_document_id TEXT, kg_processed_at DATETIME);
CREATE TABLE kg_processing_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, content_id INTEGER NOT NULL,
	status TEXT DEFAULT 'pending', priority INTEGER DEFAULT 1, queued_at DATETIME DEFAULT CURRENT_TIMESTAMP,
	processing_started_at DATETIME, processed_at DATETIME, retry_count INTEGER DEFAULT 0, error_message TEXT,
	result_summary TEXT, skipped_reason TEXT);
INSERT INTO crawled_content(id, url, kg_processed) VALUES (1, 'https://a', 1), (2, 'https://b', 0);
INSERT INTO kg_processing_queue(id, content_id, status, queued_at) VALUES
	(1, 1, 'completed', '2025-10-21 10:00:00'), (2, 2, 'pending', '2025-10-21 10:00:01');
`

// writeOriginalQueue writes originalQueue to kg.db in kgDir, for the
// service user's stand-in, and returns its path.
func writeOriginalQueue(t *testing.T, kgDir string) string {
	t.Helper()
	path := filepath.Join(kgDir, "kg.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(originalQueue); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestQueueMigrate: `queue migrate --to` run by root copies the service
// user's SQLite queue into PostgreSQL, leaves the file byte for byte as it
// was, and refuses a second copy into the now non-empty database; a --to
// that is not a PostgreSQL URL is a usage error that shows no password.
func TestQueueMigrate(t *testing.T) {
	queueTransports(t, queueMigrate)
}

func queueMigrate(t *testing.T, h *kgdbtest.Helpers, configText, kgDir string) {
	url := pgtest.Start(t).NewDB(t)
	path := writeOriginalQueue(t, kgDir)
	sum := func() [32]byte {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(data)
	}
	before := sum()

	code, stdout, stderr := runCLI(t, configText, "queue", "migrate", "--to", "mysql://kato:hunter2@db/kg")
	if code != exitUsage || !strings.Contains(stderr, "--to") || strings.Contains(stderr, "hunter2") || stdout != "" {
		t.Errorf("--to mysql: exit %d, %q %q; want 2 naming --to without the password", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, configText, "queue", "migrate", "--to", url, "--json")
	if code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, stderr)
	}
	var report struct {
		Tables []struct {
			Table string
			Rows  int
		}
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || len(report.Tables) != 2 ||
		report.Tables[0].Table != "crawled_content" || report.Tables[0].Rows != 2 || report.Tables[1].Rows != 2 {
		t.Fatalf("report %s (%v), want 2 documents and 2 items", stdout, err)
	}
	if sum() != before {
		t.Error("the SQLite file changed")
	}
	entries, _ := os.ReadDir(kgDir)
	if len(entries) != 1 {
		t.Errorf("the queue directory holds %v, want only kg.db", entries)
	}
	if n := pgtest.Count(t, url, "SELECT count(*) FROM kg_processing_queue WHERE status = 'pending'"); n != 1 {
		t.Errorf("%d pending items in PostgreSQL, want 1", n)
	}

	code, _, stderr = runCLI(t, configText, "queue", "migrate", "--to", url)
	if code != exitFailed || !strings.Contains(stderr, "not empty") {
		t.Errorf("second migrate: exit %d, %q; want 1 and the target not empty", code, stderr)
	}

	// The copied queue is the one the commands use once kg.db_url names it.
	pgConfig := configText + "db_url = \"" + url + "\"\n"
	if code, _, stderr := runCLI(t, pgConfig, "queue", "enqueue", "2"); code != 0 {
		t.Fatalf("enqueue on PostgreSQL: exit %d: %s", code, stderr)
	}
	code, stdout, stderr = runCLI(t, pgConfig, "queue", "stats", "--json")
	var counts struct{ Pending, Completed, Total int }
	if code != 0 || json.Unmarshal([]byte(stdout), &counts) != nil || counts.Pending != 2 || counts.Completed != 1 || counts.Total != 3 {
		t.Errorf("stats on PostgreSQL: exit %d, %s %s; want 2 pending and 1 completed", code, stdout, stderr)
	}
	if h.Socket && h.Started() != 4 {
		t.Errorf("%d helpers started through the socket, want one per command but the refused --to mysql (4)", h.Started())
	}
}

// TestQueueMigrateHonoursLibpqSources is the finding that root's `queue
// migrate` needed the password on its command line (visible in ps): it
// dropped PGPASSWORD with the child's environment, read no password file or
// service, and took no default from kg.db_url. On a cluster that asks for
// passwords, each source alone lets root copy the queue.
func TestQueueMigrateHonoursLibpqSources(t *testing.T) {
	configText, kgDir := queueDirFor(t)
	writeOriginalQueue(t, kgDir)
	srv := pgtest.StartWithAuth(t, "local all all scram-sha-256")
	const password = "pw-7f3a9c"
	if _, err := srv.Admin(t).Exec("CREATE ROLE migrator LOGIN PASSWORD '" + password + "'"); err != nil {
		t.Fatal(err)
	}
	// target makes an empty database that only migrator, with its password,
	// may write, and returns its URL's parts.
	target := func(t *testing.T) (adminURL string, q url.Values) {
		adminURL = srv.NewDB(t)
		u, err := url.Parse(adminURL)
		if err != nil {
			t.Fatal(err)
		}
		q = u.Query()
		execSQL(t, adminURL, "ALTER SCHEMA "+q.Get("search_path")+" OWNER TO migrator")
		return adminURL, q
	}
	for _, tc := range []struct {
		name string
		// setup returns the config text and queue migrate's arguments.
		setup func(t *testing.T, q url.Values) (string, []string)
	}{
		{"PGPASSWORD", func(t *testing.T, q url.Values) (string, []string) {
			t.Setenv("PGPASSWORD", password)
			return configText, []string{"--to", "postgres://migrator@/kgtest?" + q.Encode()}
		}},
		{"PGPASSFILE", func(t *testing.T, q url.Values) (string, []string) {
			file := filepath.Join(t.TempDir(), "pgpass")
			if err := os.WriteFile(file, []byte("*:*:kgtest:migrator:"+password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PGPASSFILE", file)
			return configText, []string{"--to", "postgres://migrator@/kgtest?" + q.Encode()}
		}},
		{"PGSERVICE", func(t *testing.T, q url.Values) (string, []string) {
			file := filepath.Join(t.TempDir(), "pg_service.conf")
			service := "[kgqueue]\nhost=" + q.Get("host") + "\nport=" + q.Get("port") + "\nuser=migrator\npassword=" + password + "\n"
			if err := os.WriteFile(file, []byte(service), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PGSERVICEFILE", file)
			t.Setenv("PGSERVICE", "kgqueue")
			return configText, []string{"--to", "postgres:///kgtest?search_path=" + q.Get("search_path")}
		}},
		{"kg.db_url", func(t *testing.T, q url.Values) (string, []string) {
			return configText + "db_url = \"postgres://migrator:" + password + "@/kgtest?" + q.Encode() + "\"\n", nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adminURL, q := target(t)
			conf, args := tc.setup(t, q)
			code, stdout, stderr := runCLI(t, conf, append([]string{"queue", "migrate", "--json"}, args...)...)
			if code != 0 {
				t.Fatalf("migrate: exit %d: %s", code, stderr)
			}
			if strings.Contains(stdout, password) {
				t.Errorf("the report shows the password: %s", stdout)
			}
			if n := pgtest.Count(t, adminURL, "SELECT count(*) FROM kg_processing_queue"); n != 2 {
				t.Errorf("%d items in PostgreSQL, want 2", n)
			}
		})
	}

	// Neither --to nor kg.db_url: a usage error naming both.
	code, _, stderr := runCLI(t, configText, "queue", "migrate")
	if code != exitUsage || !strings.Contains(stderr, "--to") || !strings.Contains(stderr, "kg.db_url") {
		t.Errorf("migrate without a target: exit %d, %q; want 2 naming --to and kg.db_url", code, stderr)
	}
}

// execSQL runs statement on the database at dbURL.
func execSQL(t *testing.T, dbURL, statement string) {
	t.Helper()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(statement); err != nil {
		t.Fatalf("%s: %v", statement, err)
	}
}
