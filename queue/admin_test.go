package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/queue"
)

func inputError(t *testing.T, err error, field, value string) {
	t.Helper()
	var ie *queue.InputError
	if !errors.As(err, &ie) || ie.Field != field || ie.Value != value || ie.Rule == "" {
		t.Errorf("error %v, want an input error on %s %s", err, field, value)
	}
}

// TestAdminActions: priority, delete, requeue and clear change what they
// name, and bad input (unknown id, negative priority, a status that cannot
// be cleared) changes nothing at all.
func TestAdminActions(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, db := open(t, be)
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
		if err := q.Complete(ctx, "w", ids[0], "done", func(*sql.Tx, int64) error { return nil }); err != nil {
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
		_, err = q.Clear(ctx, queue.StatusProcessing)
		inputError(t, err, "--status", `"processing"`)
		_, err = q.Clear(ctx, "done")
		inputError(t, err, "--status", `"done"`)
		if n := count(t, db, "SELECT count(*) FROM kg_processing_queue WHERE priority = 1 AND status = 'completed'"); n != 1 {
			t.Fatal("refused requests changed the queue")
		}
		if n := count(t, db, "SELECT count(*) FROM kg_processing_queue"); n != 4 {
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
			if it.Status != queue.StatusPending || it.RetryCount != 0 || it.ErrorMessage != "" || it.ResultSummary != "" || !it.ProcessedAt.IsZero() || it.Priority != 3 {
				t.Errorf("requeued item %+v", it)
			}
		}
		if it, _ := q.Get(ctx, ids[2]); it.Status != queue.StatusProcessing || it.LeaseOwner != "w2" {
			t.Errorf("the held item was touched: %+v", it)
		}
		if n, err := q.Delete(ctx, ids[2]); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		if n, err := q.Clear(ctx, queue.StatusPending); n != 3 || err != nil {
			t.Fatalf("clear pending: %d %v", n, err)
		}
		if n := count(t, db, "SELECT count(*) FROM kg_processing_queue"); n != 0 {
			t.Errorf("%d items left", n)
		}
	})
}
