package kgdb_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
	"github.com/kato-manager/kato-manager/queue"
)

// TestStatementsArePreparedOncePerConnection runs the same statement on a
// kgdb handle and on a plain connection to the same file: preparing a
// statement costs the driver Go allocations (its statement and finalizer),
// so a handle that reuses its prepared statements allocates less per call.
func TestStatementsArePreparedOncePerConnection(t *testing.T) {
	q, path := openQueue(t, kgdbtest.Backends[0])
	raw := rawDB(t, path)
	ctx := context.Background()
	addContent(t, raw, 1, 1)
	id := enqueue(t, q, 1, 1)
	const stmt = "UPDATE kg_processing_queue SET lease_expires_at = ? WHERE id = ? AND status = 'pending'"
	allocs := func(db *sql.DB) float64 {
		return testing.AllocsPerRun(100, func() {
			if _, err := db.ExecContext(ctx, stmt, queue.Stamp(q.Now()), id); err != nil {
				t.Fatal(err)
			}
		})
	}
	cached, plain := allocs(q.DB()), allocs(raw)
	if cached > plain-2 {
		t.Errorf("one statement on the kgdb handle takes %.0f allocations, on a plain connection %.0f: the handle prepares it again on every call", cached, plain)
	}
}

// TestOpenAddsTheClaimIndex: the claim reads the pending items from the
// claim index (queue.AddClaimIndex) in every KG database, new or migrated.
func TestOpenAddsTheClaimIndex(t *testing.T) {
	_, path := openQueue(t, kgdbtest.Backends[0])
	if n := queryInt(t, rawDB(t, path), "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'idx_kg_queue_claim'"); n != 1 {
		t.Errorf("the KG database has %d claim indexes, want 1", n)
	}
}
