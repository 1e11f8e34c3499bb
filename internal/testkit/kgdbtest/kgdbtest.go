// Package kgdbtest holds what the tests of the KG database and of the
// worker share: the backends a test runs on (a SQLite file, a throwaway
// PostgreSQL database), opening a fresh database on one, and setting up
// and reading rows directly; and the kit of the tests of root's access to
// it through the helper (helperkit.go), in kgdb and in kato-manager: the
// stand-in for kato-queue.socket, the queue directory kato owns, the
// helper's test hook.
package kgdbtest

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/queue"
)

// Backend is where a test's KG database lives: a SQLite file or a
// PostgreSQL database. The tests of the queue run against each, as
// subtests named after it.
type Backend struct {
	Name     string
	Location func(t *testing.T) string
}

// Backends are SQLite, then PostgreSQL (pgtest's shared cluster; the test
// binary's TestMain must be pgtest.Main).
var Backends = []Backend{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "kg.db") }},
	{"postgres", func(t *testing.T) string { return pgtest.Shared(t).NewDB(t) }},
}

// EachBackend runs test against every backend, as a subtest each.
func EachBackend(t *testing.T, test func(t *testing.T, be Backend)) {
	for _, be := range Backends {
		t.Run(be.Name, func(t *testing.T) { test(t, be) })
	}
}

// Open opens a fresh database on be: a file in a temporary directory, or
// a new PostgreSQL database. The string is where it is, for OpenAt and
// RawDB.
func Open(t *testing.T, be Backend, opts ...kgdb.Option) (*kgdb.DB, string) {
	t.Helper()
	path := be.Location(t)
	return OpenAt(t, path, opts...), path
}

// OpenAt opens the database at path, closed when the test ends.
func OpenAt(t *testing.T, path string, opts ...kgdb.Option) *kgdb.DB {
	t.Helper()
	q, err := kgdb.Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// RawDB opens the database at path directly, to set up and inspect rows.
func RawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	if queue.IsURL(path) {
		db, err := queue.OpenPostgres(context.Background(), path)
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000&_journal_mode=WAL")
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// MustExec runs query, failing the test on an error.
func MustExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// QueryInt returns the one number query selects.
func QueryInt(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	// BOOLEAN columns of the original schema come back as bool.
	var v any
	if err := db.QueryRow(query, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	switch v := v.(type) {
	case int64:
		return int(v)
	case bool:
		if v {
			return 1
		}
		return 0
	}
	t.Fatalf("%s: %v (%T) is not a number", query, v, v)
	return 0
}

// AddContent inserts crawled_content row id with the given number of
// chunks; chunk k has rowid id*100+k.
func AddContent(t *testing.T, db *sql.DB, id int64, chunks int) {
	t.Helper()
	MustExec(t, db, `INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (?, ?, ?, ?, ?)`,
		id, fmt.Sprintf("https://example.org/%d", id), fmt.Sprintf("Page %d", id),
		fmt.Sprintf("# Page %d\n\nThe body of page %d, long enough for the KG service limits.", id, id), `{"lang":"en"}`)
	for k := 0; k < chunks; k++ {
		text := fmt.Sprintf("chunk %d of page %d", k, id)
		MustExec(t, db, `INSERT INTO content_chunks(rowid, content_id, chunk_index, chunk_text, char_start, char_end, word_count)
VALUES (?, ?, ?, ?, ?, ?, ?)`, id*100+int64(k), id, k, text, k*100, k*100+len(text), 5)
	}
}

// Enqueue queues contentID, failing the test on an error.
func Enqueue(t *testing.T, q *kgdb.DB, contentID int64, priority int) int64 {
	t.Helper()
	id, err := q.Enqueue(context.Background(), contentID, priority)
	if err != nil {
		t.Fatalf("Enqueue(%d, %d): %v", contentID, priority, err)
	}
	return id
}

// Claim claims up to n items for owner, failing the test on an error.
func Claim(t *testing.T, q *kgdb.DB, owner string, n int, lease time.Duration) []queue.Item {
	t.Helper()
	items, err := q.ClaimBatch(context.Background(), owner, n, lease)
	if err != nil {
		t.Fatalf("ClaimBatch(%s, %d): %v", owner, n, err)
	}
	return items
}

// Get reads item id, failing the test on an error.
func Get(t *testing.T, q *kgdb.DB, id int64) queue.Item {
	t.Helper()
	it, err := q.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return it
}

// WaitFor polls cond until it holds or timeout passes.
func WaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
