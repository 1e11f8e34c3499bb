package kgworker_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/kgworker"
)

// copySource is the original shape with a worker report and a table of
// the crawler's that is none of the KG database's.
const copySource = originalShape + `
CREATE TABLE kg_workers (worker_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, pid INTEGER NOT NULL,
	started_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, stats TEXT NOT NULL, service TEXT NOT NULL);
INSERT INTO kg_workers VALUES (1, 'kg-worker@1/77', 77, '2025-10-21 10:00:00', '2025-10-21 10:01:00', '{}', '{}');
CREATE TABLE sessions (id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO sessions VALUES (1, 'kept in SQLite');
`

// fileState is the names and checksums of the files in dir.
func fileState(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = sha256.Sum256(data)
	}
	return out
}

// TestCopyToPostgresRoundTrip copies a SQLite database of the original
// shape into PostgreSQL: every row arrives, the queue and the documents
// read the same from both, new ids follow the copied ones, the source's
// bytes are unchanged, and a second copy into the now non-empty target is
// refused without touching it.
func TestCopyToPostgresRoundTrip(t *testing.T) {
	srv := pgtest.Shared(t)
	ctx := context.Background()
	path := createFile(t, copySource)
	before := fileState(t, filepath.Dir(path))
	url := srv.NewDB(t)

	report, err := kgworker.CopyToPostgres(ctx, path, url)
	if err != nil {
		t.Fatal(err)
	}
	want := []kgworker.TableCopy{{Table: "crawled_content", Rows: 3}, {Table: "content_chunks", Rows: 0},
		{Table: "chunk_entities", Rows: 1}, {Table: "chunk_relationships", Rows: 0},
		{Table: "kg_processing_queue", Rows: 3}, {Table: "kg_workers", Rows: 1}}
	if !reflect.DeepEqual(report.Tables, want) || !reflect.DeepEqual(report.Skipped, []string{"sessions"}) {
		t.Errorf("report %+v, want tables %+v and sessions skipped", report, want)
	}
	if after := fileState(t, filepath.Dir(path)); !reflect.DeepEqual(after, before) {
		t.Errorf("the source directory changed: %v, was %v", after, before)
	}

	// The same queue and documents, read from both sides.
	pg := openQueueAt(t, url)
	lite := openQueueAt(t, createCopyOf(t, path))
	for _, q := range []*kgworker.Queue{pg, lite} {
		if st, err := q.Stats(ctx); err != nil || st.Pending != 1 || st.Processing != 1 || st.Completed != 1 {
			t.Errorf("%s: stats %+v, %v", q.Path(), st, err)
		}
	}
	pgItems, err := pg.List(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	liteItems, err := lite.List(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pgItems, liteItems) {
		t.Errorf("queue items differ:\npostgres %+v\nsqlite   %+v", pgItems, liteItems)
	}
	pgDocs, _ := pg.Documents(ctx, "", 10)
	liteDocs, _ := lite.Documents(ctx, "", 10)
	if !reflect.DeepEqual(pgDocs, liteDocs) || len(pgDocs) != 3 || !pgDocs[0].KGProcessed {
		t.Errorf("documents differ:\npostgres %+v\nsqlite   %+v", pgDocs, liteDocs)
	}
	// New rows get ids after the copied ones.
	if id := enqueue(t, pg, 1, 1); id != 4 {
		t.Errorf("first item enqueued after the copy got id %d, want 4", id)
	}
	db := rawDB(t, url)
	var contentID int64
	if err := db.QueryRow("INSERT INTO crawled_content(url) VALUES ('https://new') RETURNING id").Scan(&contentID); err != nil || contentID != 4 {
		t.Errorf("new document id %d, %v; want 4", contentID, err)
	}

	_, err = kgworker.CopyToPostgres(ctx, path, url)
	if !errors.Is(err, kgworker.ErrTargetNotEmpty) || !strings.Contains(err.Error(), "crawled_content holds 4 rows") {
		t.Errorf("second copy = %v, want ErrTargetNotEmpty naming the table", err)
	}
	if n := queryInt(t, db, "SELECT count(*) FROM kg_processing_queue"); n != 4 {
		t.Errorf("the refused copy changed the target: %d items", n)
	}
}

// TestCopyToPostgresIsOneTransaction: a row PostgreSQL cannot take, late
// in the copy, leaves the target without any of the rows before it.
func TestCopyToPostgresIsOneTransaction(t *testing.T) {
	srv := pgtest.Shared(t)
	path := createFile(t, copySource+"INSERT INTO chunk_relationships(content_id, subject_entity, spans_chunks) VALUES (3, 'x', 'maybe');")
	url := srv.NewDB(t)
	_, err := kgworker.CopyToPostgres(context.Background(), path, url)
	if err == nil || !strings.Contains(err.Error(), "chunk_relationships") || !strings.Contains(err.Error(), "nothing was committed") {
		t.Fatalf("copy = %v, want an error naming chunk_relationships", err)
	}
	db := rawDB(t, url)
	if n := queryInt(t, db, "SELECT count(*) FROM crawled_content"); n != 0 {
		t.Errorf("%d documents committed by a failed copy", n)
	}
}

// createCopyOf copies the file at path to a new directory.
func createCopyOf(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}
