package queue_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/queue"
)

// TestLatencies: an item waiting 3s and taking 20s lands in the buckets
// above those figures, an item never claimed counts in neither histogram,
// and a claimed but unfinished item only in the pickup one.
func TestLatencies(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		_, db := open(t, be)
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		q, err := queue.New(db, queue.WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		l, err := q.Latencies(ctx)
		if err != nil || l.Pickup.Count != 0 || l.Done.Count != 0 || len(l.Done.Cumulative) != len(queue.LatencyBuckets) {
			t.Fatalf("empty queue: %+v, %v", l, err)
		}
		enqueueAt := func(contentID int64) {
			if _, err := db.Exec("INSERT INTO kg_processing_queue(content_id, queued_at) VALUES (?, ?)", contentID, queue.Stamp(now)); err != nil {
				t.Fatal(err)
			}
		}
		enqueueAt(1)
		now = now.Add(3 * time.Second)
		items, err := q.ClaimBatch(ctx, "w1", 1, time.Minute)
		if err != nil || len(items) != 1 {
			t.Fatalf("claim: %v %v", items, err)
		}
		now = now.Add(20 * time.Second)
		if err := q.Complete(ctx, "w1", items[0].ID, "ok", func(*sql.Tx, int64) error { return nil }); err != nil {
			t.Fatal(err)
		}
		enqueueAt(2)
		now = now.Add(500 * time.Millisecond)
		if _, err := q.ClaimBatch(ctx, "w1", 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		enqueueAt(3) // never claimed
		if l, err = q.Latencies(ctx); err != nil {
			t.Fatal(err)
		}
		if l.Pickup.Count != 2 || l.Pickup.Sum < 3.49 || l.Pickup.Sum > 3.51 {
			t.Errorf("pickup count %d sum %v, want 2 and 3.5", l.Pickup.Count, l.Pickup.Sum)
		}
		if l.Done.Count != 1 || l.Done.Sum < 19.99 || l.Done.Sum > 20.01 {
			t.Errorf("done count %d sum %v, want 1 and 20", l.Done.Count, l.Done.Sum)
		}
		for i, b := range queue.LatencyBuckets {
			var pickup, done uint64
			if b >= 0.5 {
				pickup++
			}
			if b >= 3 {
				pickup++
			}
			if b >= 20 {
				done++
			}
			if l.Pickup.Cumulative[i] != pickup || l.Done.Cumulative[i] != done {
				t.Errorf("bucket le=%v: pickup %d done %d, want %d and %d", b, l.Pickup.Cumulative[i], l.Done.Cumulative[i], pickup, done)
			}
		}
	})
}
