package kgworker_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
)

func inputError(t *testing.T, err error, field, value string) {
	t.Helper()
	var ie *config.FieldError
	if !errors.As(err, &ie) || ie.Field != field || ie.Value != value || ie.Rule == "" {
		t.Errorf("error %v, want an input error on %s %s", err, field, value)
	}
}

// TestAdminActions: priority, delete, requeue and clear change what they
// name, and bad input (unknown id, negative priority, a status that cannot
// be cleared) changes nothing at all.
func TestAdminActions(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, db := openAdmin(t, be)
		ctx := context.Background()
		var ids []int64
		for c := int64(1); c <= 4; c++ {
			id, err := q.Enqueue(ctx, c, 1)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		// Item 1 completes, item 2 fails for good, item 3 is held by a worker.
		claimed, err := q.ClaimBatch(ctx, "w", 1, time.Minute)
		if err != nil || len(claimed) != 1 || claimed[0].ID != ids[0] {
			t.Fatal(claimed, err)
		}
		if err := q.Queue.Complete(ctx, "w", ids[0], "done", func(*sql.Tx, int64) error { return nil }); err != nil {
			t.Fatal(err)
		}
		db.Exec("UPDATE kg_processing_queue SET status = 'failed', error_message = 'boom', retry_count = 2 WHERE id = ?", ids[1])
		db.Exec("UPDATE kg_processing_queue SET status = 'processing', lease_owner = 'w2' WHERE id = ?", ids[2])

		_, err = q.SetPriority(ctx, -1, ids[3])
		inputError(t, err, "PRIORITY", "-1")
		_, err = q.SetPriority(ctx, 5, ids[3], 999)
		inputError(t, err, "ITEM_ID", "999")
		_, err = q.Delete(ctx, ids[3], 999)
		inputError(t, err, "ITEM_ID", "999")
		_, err = q.Requeue(ctx, 1, 1, 77)
		inputError(t, err, "CONTENT_ID", "77")
		_, err = q.Clear(ctx, kgworker.StatusProcessing)
		inputError(t, err, "--status", "processing")
		_, err = q.Clear(ctx, "done")
		inputError(t, err, "--status", "done")
		if n := queryInt(t, db, "SELECT count(*) FROM kg_processing_queue WHERE priority = 1 AND status = 'completed'"); n != 1 {
			t.Fatal("refused requests changed the queue")
		}
		if n := queryInt(t, db, "SELECT count(*) FROM kg_processing_queue"); n != 4 {
			t.Fatalf("refused requests left %d items", n)
		}

		if n, err := q.SetPriority(ctx, 9, ids[3]); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		if it, _ := q.Get(ctx, ids[3]); it.Priority != 9 {
			t.Errorf("priority %d", it.Priority)
		}
		// Requeue moves the completed and the failed documents; the processing
		// one is left to its worker.
		if n, err := q.Requeue(ctx, 3, 1, 2, 3); n != 2 || err != nil {
			t.Fatalf("requeue: %d %v", n, err)
		}
		for _, id := range ids[:2] {
			it, _ := q.Get(ctx, id)
			if it.Status != kgworker.StatusPending || it.RetryCount != 0 || it.ErrorMessage != "" || it.ResultSummary != "" || !it.ProcessedAt.IsZero() || it.Priority != 3 {
				t.Errorf("requeued item %+v", it)
			}
		}
		if it, _ := q.Get(ctx, ids[2]); it.Status != kgworker.StatusProcessing || it.LeaseOwner != "w2" {
			t.Errorf("the held item was touched: %+v", it)
		}
		if n, err := q.Delete(ctx, ids[2]); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		if n, err := q.Clear(ctx, kgworker.StatusPending); n != 3 || err != nil {
			t.Fatalf("clear pending: %d %v", n, err)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM kg_processing_queue"); n != 0 {
			t.Errorf("%d items left", n)
		}
	})
}

// TestRequeueAll: every document whose latest item is completed, failed or
// skipped goes back to pending, cleared as by Requeue; pending and
// processing documents and older items of a document stay; a negative
// priority changes nothing.
func TestRequeueAll(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, db := openAdmin(t, be)
		ctx := context.Background()
		ids := map[int64]int64{}
		for c := int64(1); c <= 6; c++ {
			id, err := q.Enqueue(ctx, c, 1)
			if err != nil {
				t.Fatal(err)
			}
			ids[c] = id
		}
		set := func(c int64, status string) {
			t.Helper()
			if _, err := db.Exec("UPDATE kg_processing_queue SET status = ?, error_message = 'x', result_summary = 'r', retry_count = 2, processed_at = '2026-01-01 00:00:00' WHERE id = ?", status, ids[c]); err != nil {
				t.Fatal(err)
			}
		}
		set(1, "completed")
		set(2, "failed")
		set(3, "skipped")
		set(4, "processing")
		// Document 6 was done once and is queued again: its old item stays.
		set(6, "completed")
		var newest int64
		if err := db.QueryRow("INSERT INTO kg_processing_queue (content_id, status, priority) VALUES (6, 'pending', 1) RETURNING id").Scan(&newest); err != nil {
			t.Fatal(err)
		}

		_, err := q.RequeueAll(ctx, -1)
		inputError(t, err, "PRIORITY", "-1")
		if n := queryInt(t, db, "SELECT count(*) FROM kg_processing_queue WHERE status = 'pending'"); n != 2 {
			t.Fatalf("a refused requeue-all left %d pending items", n)
		}
		n, err := q.RequeueAll(ctx, 4)
		if err != nil || n != 3 {
			t.Fatalf("requeue all: %d, %v; want 3", n, err)
		}
		for _, c := range []int64{1, 2, 3} {
			it, _ := q.Get(ctx, ids[c])
			if it.Status != kgworker.StatusPending || it.RetryCount != 0 || it.ErrorMessage != "" || it.ResultSummary != "" || !it.ProcessedAt.IsZero() || it.Priority != 4 {
				t.Errorf("document %d: %+v", c, it)
			}
		}
		if it, _ := q.Get(ctx, ids[4]); it.Status != kgworker.StatusProcessing {
			t.Errorf("the processing document was touched: %+v", it)
		}
		if it, _ := q.Get(ctx, ids[5]); it.Status != kgworker.StatusPending || it.Priority != 1 {
			t.Errorf("the pending document was touched: %+v", it)
		}
		if it, _ := q.Get(ctx, ids[6]); it.Status != kgworker.StatusCompleted {
			t.Errorf("document 6's older item was requeued: %+v", it)
		}
		if it, _ := q.Get(ctx, newest); it.Status != kgworker.StatusPending || it.Priority != 1 {
			t.Errorf("document 6's latest item: %+v", it)
		}
	})
}

// openAdmin opens a fresh queue with one retry and a short backoff, and
// the database beside it to set up and inspect rows.
func openAdmin(t *testing.T, be backend) (*kgworker.Queue, *sql.DB) {
	t.Helper()
	q, path := openQueue(t, be, kgworker.WithMaxRetries(1), kgworker.WithBackoff(time.Millisecond, time.Millisecond))
	return q, rawDB(t, path)
}

// TestClearOlderThan: only the items of the status that reached it
// longer ago than the age go (an item never processed counts from when it
// was queued); processing and a non-positive age are refused, changing
// nothing.
func TestClearOlderThan(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, db := openAdmin(t, be)
		ctx := context.Background()
		var ids []int64
		for c := int64(1); c <= 5; c++ {
			id, err := q.Enqueue(ctx, c, 1)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		old, recent := queue.Stamp(q.Now().Add(-10*24*time.Hour)), queue.Stamp(q.Now().Add(-time.Hour))
		mustExec(t, db, "UPDATE kg_processing_queue SET status = 'failed', processed_at = ? WHERE id = ?", old, ids[0])
		mustExec(t, db, "UPDATE kg_processing_queue SET status = 'failed', processed_at = ? WHERE id = ?", recent, ids[1])
		mustExec(t, db, "UPDATE kg_processing_queue SET status = 'failed', processed_at = NULL, queued_at = ? WHERE id = ?", old, ids[2])
		mustExec(t, db, "UPDATE kg_processing_queue SET status = 'completed', processed_at = ? WHERE id = ?", old, ids[3])

		_, err := q.ClearOlderThan(ctx, kgworker.StatusProcessing, time.Hour)
		inputError(t, err, "--status", "processing")
		_, err = q.ClearOlderThan(ctx, kgworker.StatusFailed, 0)
		inputError(t, err, "--older-than", "0s")
		if n := queryInt(t, db, "SELECT count(*) FROM kg_processing_queue"); n != 5 {
			t.Fatalf("refused clears left %d items, want 5", n)
		}
		n, err := q.ClearOlderThan(ctx, kgworker.StatusFailed, 7*24*time.Hour)
		if err != nil || n != 2 {
			t.Fatalf("ClearOlderThan(failed, 7d) = %d, %v; want 2", n, err)
		}
		for i, want := range []int{0, 1, 0, 1, 1} {
			if got := queryInt(t, db, "SELECT count(*) FROM kg_processing_queue WHERE id = ?", ids[i]); got != want {
				t.Errorf("item %d: %d rows, want %d", ids[i], got, want)
			}
		}
	})
}

// TestParseAge: days and durations, and what is refused.
func TestParseAge(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{{"7d", 7 * 24 * time.Hour}, {"1d", 24 * time.Hour}, {"36h", 36 * time.Hour}, {"90m", 90 * time.Minute}} {
		if got, err := kgworker.ParseAge("older_than", tc.in); err != nil || got != tc.want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "0d", "-1d", "d", "1.5d", "week", "0s", "-3h", "99999999d"} {
		_, err := kgworker.ParseAge("older_than", in)
		inputError(t, err, "older_than", in)
	}
}
