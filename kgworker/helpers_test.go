package kgworker_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
)

// clock is a settable clock for leases and backoff.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 10, 21, 23, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMain(m *testing.M) { pgtest.Main(m) }

// backend is where a test's KG database lives: a SQLite file or a
// PostgreSQL database. The tests of the queue run against each, as
// subtests named after it.
type backend struct {
	name     string
	location func(t *testing.T) string
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "kg.db") }},
	{"postgres", func(t *testing.T) string { return pgtest.Shared(t).NewDB(t) }},
}

// serviceBackend is the one backend of the tests about the KG service
// rather than the database: its faults and its contract.
var serviceBackend = backends[0]

// eachBackend runs test against every backend.
func eachBackend(t *testing.T, test func(t *testing.T, be backend)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { test(t, be) })
	}
}

// openQueue opens a fresh queue: a file in a temporary directory, or a
// new PostgreSQL database. The string is where it is, for openQueueAt and
// rawDB.
func openQueue(t *testing.T, be backend, opts ...kgworker.Option) (*kgworker.Queue, string) {
	t.Helper()
	path := be.location(t)
	return openQueueAt(t, path, opts...), path
}

func openQueueAt(t *testing.T, path string, opts ...kgworker.Option) *kgworker.Queue {
	t.Helper()
	q, err := kgworker.Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// rawDB opens the queue database directly, to set up and inspect rows.
func rawDB(t *testing.T, path string) *sql.DB {
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

func mustExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func queryInt(t *testing.T, db *sql.DB, query string, args ...any) int {
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

// addContent inserts crawled_content row id with the given number of
// chunks; chunk k has rowid id*100+k.
func addContent(t *testing.T, db *sql.DB, id int64, chunks int) {
	t.Helper()
	mustExec(t, db, `INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (?, ?, ?, ?, ?)`,
		id, fmt.Sprintf("https://example.org/%d", id), fmt.Sprintf("Page %d", id),
		fmt.Sprintf("# Page %d\n\nThe body of page %d, long enough for the KG service limits.", id, id), `{"lang":"en"}`)
	for k := 0; k < chunks; k++ {
		text := fmt.Sprintf("chunk %d of page %d", k, id)
		mustExec(t, db, `INSERT INTO content_chunks(rowid, content_id, chunk_index, chunk_text, char_start, char_end, word_count)
VALUES (?, ?, ?, ?, ?, ?, ?)`, id*100+int64(k), id, k, text, k*100, k*100+len(text), 5)
	}
}

func enqueue(t *testing.T, q *kgworker.Queue, contentID int64, priority int) int64 {
	t.Helper()
	id, err := q.Enqueue(context.Background(), contentID, priority)
	if err != nil {
		t.Fatalf("Enqueue(%d, %d): %v", contentID, priority, err)
	}
	return id
}

func claim(t *testing.T, q *kgworker.Queue, owner string, n int, lease time.Duration) []kgworker.Item {
	t.Helper()
	items, err := q.ClaimBatch(context.Background(), owner, n, lease)
	if err != nil {
		t.Fatalf("ClaimBatch(%s, %d): %v", owner, n, err)
	}
	return items
}

func get(t *testing.T, q *kgworker.Queue, id int64) kgworker.Item {
	t.Helper()
	it, err := q.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return it
}

func ids(items []kgworker.Item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
