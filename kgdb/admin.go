package kgdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"

	"github.com/kato-manager/kato-manager/queue"
)

// checkItems fails with a *config.FieldError naming the first id that is not an
// item of the queue.
func checkItems(ctx context.Context, tx *sql.Tx, ids []int64) error {
	for _, id := range ids {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM kg_processing_queue WHERE id = ?", id).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return &config.FieldError{Field: "ITEM_ID", Value: strconv.FormatInt(id, 10), Rule: "no such queue item"}
		}
	}
	return nil
}

// SetPriority changes the priority of the items; higher is claimed first.
// An unknown id or a negative priority changes nothing.
func (q *DB) SetPriority(ctx context.Context, priority int, ids ...int64) (int, error) {
	if err := CheckPriority("PRIORITY", priority); err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, &config.FieldError{Field: "ITEM_ID", Value: "", Rule: "give one or more queue item ids"}
	}
	var n int
	err := q.WithTx(ctx, func(tx *sql.Tx) error {
		if err := checkItems(ctx, tx, ids); err != nil {
			return err
		}
		query, args := inIDs("UPDATE kg_processing_queue SET priority = ? WHERE id IN (%s)", ids)
		res, err := tx.ExecContext(ctx, query, append([]any{priority}, args...)...)
		if err != nil {
			return err
		}
		n, err = affected(res)
		return err
	})
	return n, wrapAdmin("set priority", err)
}

// Delete removes the items. An item a worker holds may be deleted: the
// worker's outcome for it is then discarded as for a lost lease. An
// unknown id changes nothing.
func (q *DB) Delete(ctx context.Context, ids ...int64) (int, error) {
	if len(ids) == 0 {
		return 0, &config.FieldError{Field: "ITEM_ID", Value: "", Rule: "give one or more queue item ids"}
	}
	var n int
	err := q.WithTx(ctx, func(tx *sql.Tx) error {
		if err := checkItems(ctx, tx, ids); err != nil {
			return err
		}
		query, args := inIDs("DELETE FROM kg_processing_queue WHERE id IN (%s)", ids)
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = affected(res)
		return err
	})
	return n, wrapAdmin("delete items", err)
}

// Requeue asks for documents to be processed again: each content's latest
// item, when completed, failed or skipped, is put back to pending with its
// retries, error and result cleared, queued now. A content that is already
// pending or processing is left as it is; one with no item is refused, and
// then nothing changes. It returns how many items it moved.
func (q *DB) Requeue(ctx context.Context, priority int, contentIDs ...int64) (int, error) {
	if err := CheckPriority("PRIORITY", priority); err != nil {
		return 0, err
	}
	if len(contentIDs) == 0 {
		return 0, &config.FieldError{Field: "CONTENT_ID", Value: "", Rule: "give one or more crawled_content ids"}
	}
	moved := 0
	err := q.WithTx(ctx, func(tx *sql.Tx) error {
		now := queue.Stamp(q.Now())
		for _, c := range contentIDs {
			var id int64
			var status string
			err := tx.QueryRowContext(ctx, "SELECT id, COALESCE(status, '') FROM kg_processing_queue WHERE content_id = ? ORDER BY id DESC LIMIT 1"+forUpdate(q.Dialect()), c).Scan(&id, &status)
			if errors.Is(err, sql.ErrNoRows) {
				return &config.FieldError{Field: "CONTENT_ID", Value: strconv.FormatInt(c, 10), Rule: "has no queue item (queue it with `queue enqueue`)"}
			}
			if err != nil {
				return err
			}
			if queue.Status(status) == queue.StatusPending || queue.Status(status) == queue.StatusProcessing {
				continue
			}
			if _, err := tx.ExecContext(ctx, requeueSet+" WHERE id = ?", priority, now, id); err != nil {
				return err
			}
			moved++
		}
		return nil
	})
	if err != nil {
		return 0, wrapAdmin("requeue", err)
	}
	return moved, nil
}

// requeueSet puts an item back to pending as Requeue does: priority and
// queued_at are its arguments.
const requeueSet = `UPDATE kg_processing_queue SET status = 'pending', priority = ?, queued_at = ?,
	processing_started_at = NULL, processed_at = NULL, retry_count = 0, error_message = NULL, result_summary = NULL,
	skipped_reason = NULL, lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL`

// RequeueAll is Requeue of every document in the queue: each content's
// latest item, when completed, failed or skipped, goes back to pending, in
// one statement. Documents pending or processing are left as they are. It
// returns how many items it moved.
func (q *DB) RequeueAll(ctx context.Context, priority int) (int, error) {
	if err := CheckPriority("PRIORITY", priority); err != nil {
		return 0, err
	}
	res, err := q.db.ExecContext(ctx, requeueSet+` WHERE status IN ('completed', 'failed', 'skipped')
	AND id IN (SELECT MAX(id) FROM kg_processing_queue GROUP BY content_id)`, priority, queue.Stamp(q.Now()))
	if err != nil {
		return 0, wrapAdmin("requeue all", err)
	}
	return affected(res)
}

// Clear deletes every item in a status. Processing items are held by
// workers and cannot be cleared; stop the pool first.
func (q *DB) Clear(ctx context.Context, status queue.Status) (int, error) {
	if _, err := ParseClearStatus("--status", string(status)); err != nil {
		return 0, err
	}
	res, err := q.db.ExecContext(ctx, "DELETE FROM kg_processing_queue WHERE status = ?", string(status))
	if err != nil {
		return 0, fmt.Errorf("clear %s items: %w", status, err)
	}
	return affected(res)
}

func affected(res sql.Result) (int, error) {
	n, err := res.RowsAffected()
	return int(n), err
}

// ClearableStatuses are the statuses items may be cleared of: any but
// processing, whose items workers hold.
func ClearableStatuses() []queue.Status {
	var out []queue.Status
	for _, st := range queue.Statuses() {
		if st != queue.StatusProcessing {
			out = append(out, st)
		}
	}
	return out
}

// ParseClearStatus returns the status named by s that items may be
// cleared of (ClearableStatuses). A bad s is a *config.FieldError on field.
func ParseClearStatus(field, s string) (queue.Status, error) {
	st, err := queue.ParseStatus(s)
	if err != nil || !slices.Contains(ClearableStatuses(), st) {
		var names []string
		for _, st := range ClearableStatuses() {
			names = append(names, string(st))
		}
		return "", &config.FieldError{Field: field, Value: s, Rule: "must be one of " + strings.Join(names, ", ") + " (processing items are held by workers)"}
	}
	return st, nil
}

// wrapAdmin names the operation of a database error; bad input stays as
// it is.
func wrapAdmin(op string, err error) error {
	var fe *config.FieldError
	if err == nil || errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

// forUpdate is the row lock a read-then-write takes: PostgreSQL's FOR
// UPDATE; SQLite's transactions take the write lock when they begin.
func forUpdate(d queue.Dialect) string {
	if d == queue.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

func inIDs(query string, ids []int64) (string, []any) {
	marks := make([]string, len(ids))
	args := make([]any, len(ids))
	for i, id := range ids {
		marks[i] = "?"
		args[i] = id
	}
	return fmt.Sprintf(query, strings.Join(marks, ", ")), args
}

// ClearOlderThan deletes the items in status that reached it more than
// age ago (by processed_at, or queued_at for an item never processed):
// `queue clear --status failed --older-than 7d`. Like Clear, it refuses
// processing, and a non-positive age.
func (q *DB) ClearOlderThan(ctx context.Context, status queue.Status, age time.Duration) (int, error) {
	if _, err := ParseClearStatus("--status", string(status)); err != nil {
		return 0, err
	}
	if age <= 0 {
		return 0, &config.FieldError{Field: "--older-than", Value: age.String(), Rule: "must be more than zero"}
	}
	if q.readOnly {
		return 0, fmt.Errorf("clear %s items: %w", status, ErrReadOnly)
	}
	before := queue.Stamp(q.Now().Add(-age))
	res, err := q.db.ExecContext(ctx, "DELETE FROM kg_processing_queue WHERE status = ? AND COALESCE(processed_at, queued_at) < ?", string(status), before)
	if err != nil {
		return 0, fmt.Errorf("clear %s items older than %s: %w", status, age, err)
	}
	return affected(res)
}

// ParseAge returns the age s names: a whole number of days ("7d") or a
// duration ("36h", "90m"), more than zero. A bad s is a
// *config.FieldError on field.
func ParseAge(field, s string) (time.Duration, error) {
	bad := &config.FieldError{Field: field, Value: s, Rule: "must be a whole number of days (7d) or a duration (36h, 90m), more than zero"}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 100*365 {
			return 0, bad
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, bad
	}
	return d, nil
}
