package kgdb_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/queue"
)

// originalShape is the schema as the system being replaced created it,
// before this package added its columns.
const originalShape = `
CREATE TABLE crawled_content (id INTEGER PRIMARY KEY, url TEXT, title TEXT, markdown TEXT, metadata TEXT,
	kg_processed INTEGER DEFAULT 0, kg_entity_count INTEGER DEFAULT 0, kg_relationship_count INTEGER DEFAULT 0,
	kg_document_id TEXT, kg_processed_at TIMESTAMP);
CREATE TABLE kg_processing_queue (id INTEGER PRIMARY KEY AUTOINCREMENT,
	content_id INTEGER NOT NULL REFERENCES crawled_content(id), status TEXT DEFAULT 'pending',
	priority INTEGER DEFAULT 1, queued_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, processing_started_at TIMESTAMP,
	processed_at TIMESTAMP, retry_count INTEGER DEFAULT 0, error_message TEXT, result_summary TEXT, skipped_reason TEXT);
CREATE INDEX idx_kg_queue_status ON kg_processing_queue(status, priority, queued_at);
CREATE TABLE content_chunks (rowid INTEGER PRIMARY KEY, content_id INTEGER, chunk_index INTEGER, chunk_text TEXT,
	char_start INTEGER, char_end INTEGER, word_count INTEGER, kg_processed INTEGER DEFAULT 0,
	created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE chunk_entities (chunk_rowid INTEGER, content_id INTEGER, entity_text TEXT, entity_normalized TEXT,
	entity_type_primary TEXT, entity_type_sub1 TEXT, entity_type_sub2 TEXT, entity_type_sub3 TEXT, confidence REAL,
	offset_start INTEGER, offset_end INTEGER, neo4j_node_id TEXT, spans_multiple_chunks INTEGER DEFAULT 0);
CREATE TABLE chunk_relationships (content_id INTEGER, subject_entity TEXT, predicate TEXT, object_entity TEXT,
	confidence REAL, context TEXT, neo4j_relationship_id TEXT, spans_chunks INTEGER DEFAULT 0, chunk_rowids TEXT);
INSERT INTO crawled_content(id, url, title, markdown, kg_processed, kg_entity_count) VALUES
	(1, 'https://a', 'A', '# A', 0, 0),
	(2, 'https://b', 'B', '# B', 0, 0),
	(3, 'https://c', 'C', '# C', 1, 4);
INSERT INTO kg_processing_queue(id, content_id, status, priority, queued_at, processing_started_at, processed_at,
	retry_count, result_summary) VALUES
	(1, 1, 'pending', 2, '2025-10-21 10:00:00', NULL, NULL, 0, NULL),
	(2, 2, 'processing', 1, '2025-10-21 10:00:01', '2025-10-21 10:05:00', NULL, 0, NULL),
	(3, 3, 'completed', 1, '2025-10-21T09:00:00.123456', '2025-10-21 09:01:00', '2025-10-21 09:02:00', 1,
		'{"entities_extracted":4}');
INSERT INTO chunk_entities(chunk_rowid, content_id, entity_text) VALUES (300, 3, 'Old');
`

func createFile(t *testing.T, schema string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kg.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if schema != "" {
		if _, err := db.Exec(schema); err != nil {
			t.Fatalf("create old database: %v", err)
		}
	}
	return path
}

func columns(t *testing.T, db *sql.DB, table string) map[string]bool {
	t.Helper()
	rows, err := db.Query("SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		out[name] = true
	}
	return out
}

func TestMigrateExistingDatabase(t *testing.T) {
	for _, tc := range []struct {
		name      string
		schema    string
		wantItems int
	}{
		{"original shape with rows", originalShape, 3},
		{"original shape with one added column already there", originalShape +
			"ALTER TABLE kg_processing_queue ADD COLUMN lease_owner TEXT;", 3},
		{"empty file", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := createFile(t, tc.schema)
			ctx := context.Background()
			for round := 1; round <= 2; round++ {
				q, err := kgdb.Open(ctx, path)
				if err != nil {
					t.Fatalf("Open round %d: %v", round, err)
				}
				v, err := q.SchemaVersion(ctx)
				q.Close()
				if err != nil || v != kgdb.SchemaVersion {
					t.Fatalf("round %d: schema version %d, %v; want %d", round, v, err, kgdb.SchemaVersion)
				}
			}
			db := rawDB(t, path)
			cols := columns(t, db, "kg_processing_queue")
			for _, c := range []string{"id", "content_id", "status", "retry_count", "skipped_reason",
				"lease_owner", "lease_expires_at", "next_attempt_at"} {
				if !cols[c] {
					t.Errorf("kg_processing_queue lacks column %s after migration", c)
				}
			}
			for _, table := range []string{"crawled_content", "content_chunks", "chunk_entities", "chunk_relationships"} {
				if len(columns(t, db, table)) == 0 {
					t.Errorf("table %s missing after migration", table)
				}
			}
			if n := queryInt(t, db, "SELECT count(*) FROM kg_schema_version"); n != kgdb.SchemaVersion {
				t.Errorf("kg_schema_version holds %d rows after two opens, want %d", n, kgdb.SchemaVersion)
			}
			if n := queryInt(t, db, "SELECT count(*) FROM kg_processing_queue"); n != tc.wantItems {
				t.Errorf("queue holds %d items after migration, want %d", n, tc.wantItems)
			}
		})
	}
}

func TestMigratedRowsKeepWorking(t *testing.T) {
	path := createFile(t, originalShape)
	clk := newClock()
	q := openQueueAt(t, path, kgdb.WithClock(clk.Now))
	ctx := context.Background()
	db := rawDB(t, path)

	done := get(t, q, 3)
	if done.Status != queue.StatusCompleted || done.ResultSummary != `{"entities_extracted":4}` || done.RetryCount != 1 {
		t.Errorf("completed row after migration = %+v", done)
	}
	if want := time.Date(2025, 10, 21, 9, 0, 0, 123456000, time.UTC); !done.QueuedAt.Equal(want) {
		t.Errorf("queued_at read as %v, want %v", done.QueuedAt, want)
	}
	if n := queryInt(t, db, "SELECT count(*) FROM chunk_entities WHERE content_id = 3"); n != 1 {
		t.Errorf("old entity rows = %d, want 1", n)
	}

	// The row the old system left in processing is reclaimed, the pending
	// one is claimable at once.
	if n, err := q.ReclaimExpired(ctx); err != nil || n != 1 {
		t.Fatalf("ReclaimExpired = %d, %v; want the one stuck row", n, err)
	}
	if it := get(t, q, 2); it.Status != queue.StatusPending || it.RetryCount != 1 {
		t.Errorf("stuck row after reclaim: %q with %d retries, want pending with 1", it.Status, it.RetryCount)
	}
	items := claim(t, q, "w", 5, time.Minute)
	if len(items) != 1 || items[0].ID != 1 {
		t.Fatalf("claimed %v, want item 1 (item 2 waits for its backoff)", ids(items))
	}
	if err := q.Complete(ctx, "w", 1, sampleResult()); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, db, "SELECT kg_entity_count FROM crawled_content WHERE id = 1"); n != 2 {
		t.Errorf("kg_entity_count of content 1 = %d, want 2", n)
	}
}

// TestOpenConcurrently opens one new file from many connections at once:
// every migration must be applied once and every Open must succeed.
func TestOpenConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kg.db")
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, err := kgdb.Open(context.Background(), path)
			if err == nil {
				err = q.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
	db := rawDB(t, path)
	if got := queryInt(t, db, "SELECT count(*) FROM kg_schema_version"); got != kgdb.SchemaVersion {
		t.Errorf("kg_schema_version holds %d rows, want %d", got, kgdb.SchemaVersion)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}
