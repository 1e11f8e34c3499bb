package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/queue"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// backend makes an empty database of one dialect for a test. Every test of
// this package runs against each backend, as a subtest named after it.
type backend struct {
	name string
	open func(t *testing.T) *sql.DB
}

var backends = []backend{
	{"sqlite", func(t *testing.T) *sql.DB {
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "q.db")+"?_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}},
	{"postgres", func(t *testing.T) *sql.DB {
		db, err := queue.OpenPostgres(context.Background(), pgtest.Shared(t).NewDB(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}},
}

// eachBackend runs test against every backend.
func eachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}

// open makes a database of the caller's own, as the queue expects: the
// queue table and the caller's table beside it.
func open(t *testing.T, be backend) (*queue.Queue, *sql.DB) {
	t.Helper()
	db := be.open(t)
	steps := []queue.Migration{
		{Version: 1, Name: "queue", Apply: queue.CreateTable},
		{Version: 2, Name: "leases", Apply: queue.AddLeaseColumns},
		{Version: 3, Name: "results", Apply: func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "CREATE TABLE results(content_id INTEGER, value TEXT)")
			return err
		}},
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := queue.Migrate(ctx, db, steps); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := queue.SchemaVersion(ctx, db); err != nil || v != 3 {
		t.Fatalf("schema version %d, %v", v, err)
	}
	q, err := queue.New(db, queue.WithMaxRetries(1), queue.WithBackoff(time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return q, db
}

func count(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCompleteInTheCallersTransaction: the caller's result write and the
// completion commit together, and a failed write undoes the completion.
func TestCompleteInTheCallersTransaction(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, db := open(t, be)
		ctx := context.Background()
		id, err := q.Enqueue(ctx, 7, 1)
		if err != nil {
			t.Fatal(err)
		}
		if items, err := q.ClaimBatch(ctx, "w", 5, time.Minute); err != nil || len(items) != 1 {
			t.Fatalf("claim: %v %v", items, err)
		}
		boom := errors.New("write failed")
		err = q.Complete(ctx, "w", id, `{"n":1}`, func(tx *sql.Tx, contentID int64) error {
			if _, err := tx.Exec("INSERT INTO results VALUES (?, 'half')", contentID); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Complete = %v, want the write's error", err)
		}
		if it, _ := q.Get(ctx, id); it.Status != queue.StatusProcessing || count(t, db, "SELECT count(*) FROM results") != 0 {
			t.Fatalf("after a failed write: item %s, %d result rows; want processing and none", it.Status, count(t, db, "SELECT count(*) FROM results"))
		}
		err = q.WithTx(ctx, func(tx *sql.Tx) error {
			contentID, err := q.CompleteTx(ctx, tx, "w", id, `{"n":1}`)
			if err != nil {
				return err
			}
			_, err = tx.Exec("INSERT INTO results VALUES (?, 'whole')", contentID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		it, _ := q.Get(ctx, id)
		if it.Status != queue.StatusCompleted || it.ResultSummary != `{"n":1}` || count(t, db, "SELECT count(*) FROM results WHERE content_id = 7") != 1 {
			t.Errorf("item %+v, want completed with its summary and one result row", it)
		}
		// The lease is gone with the completion.
		if err := q.Complete(ctx, "w", id, "", nil); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("completing twice = %v, want ErrLeaseLost", err)
		}
	})
}

// TestFailFinalAndNotBefore: a final failure ends the item whatever its
// retries; a failure with NotBefore is not due before it.
func TestFailFinalAndNotBefore(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, _ := open(t, be)
		ctx := context.Background()
		a, _ := q.Enqueue(ctx, 1, 1)
		b, _ := q.Enqueue(ctx, 2, 1)
		q.ClaimBatch(ctx, "w", 2, time.Minute)
		if st, err := q.FailWith(ctx, "w", a, queue.Failure{Reason: "422", Final: true}); err != nil || st != queue.StatusFailed {
			t.Errorf("final failure = %s, %v", st, err)
		}
		start := time.Now()
		if st, err := q.FailWith(ctx, "w", b, queue.Failure{Reason: "busy", NotBefore: time.Hour}); err != nil || st != queue.StatusPending {
			t.Errorf("failure with NotBefore = %s, %v", st, err)
		}
		it, _ := q.Get(ctx, b)
		if it.NextAttemptAt.Sub(start) < 59*time.Minute || it.RetryCount != 1 {
			t.Errorf("item %+v, want due in an hour after one attempt", it)
		}
		if items, _ := q.ClaimBatch(ctx, "w", 2, time.Minute); len(items) != 0 {
			t.Errorf("claimed %v before NotBefore", items)
		}
		// ReleaseUntil hands back without an attempt.
		c, _ := q.Enqueue(ctx, 3, 1)
		q.ClaimBatch(ctx, "w", 1, time.Minute)
		if n, err := q.ReleaseUntil(ctx, "w", time.Now().Add(time.Hour), c); n != 1 || err != nil {
			t.Fatalf("ReleaseUntil = %d, %v", n, err)
		}
		if it, _ := q.Get(ctx, c); it.Status != queue.StatusPending || it.RetryCount != 0 || it.NextAttemptAt.IsZero() {
			t.Errorf("released item %+v, want pending, no attempt, not due yet", it)
		}
	})
}
