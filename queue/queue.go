// Package queue is the leased work queue of the KG pool, built the way goqite
// is: it owns the queue table and every state change of an item (claim,
// extend, release, fail, complete, retry, stats and the schema migrations)
// over a *sql.DB the caller opened and owns. What an item's work is, and
// what its results are, belong to the caller: Complete and Fail have
// variants that run inside the caller's transaction, so that results are
// written in the same commit that completes the item.
//
// The database is SQLite (the embedded default) or PostgreSQL (OpenPostgres),
// for workers on many hosts. The statements are one text for both, written
// with ? placeholders; where the dialects differ (claims skip rows other
// claimers hold locked, waiting for work LISTENs instead of watching the
// file) the Queue branches on its Dialect.
//
// Items are claimed under a lease in one statement, so no two callers, in
// any process or on any host, hold the same item. A holder that dies loses its
// leases when they expire, and ReclaimExpired, run by any caller, spends an
// attempt on each such item.
package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Status is the state of a queue item.
type Status string

// The states of a queue item. Pending items wait to be claimed; a processing
// item is held under a lease by one worker; the other three are final until
// an operator or a new enqueue asks for the content again.
const (
	StatusPending    Status = "pending"
	StatusProcessing Status = "processing"
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
	StatusSkipped    Status = "skipped"
)

var statuses = []Status{StatusPending, StatusProcessing, StatusCompleted, StatusFailed, StatusSkipped}

// Statuses returns every status, in the order an item goes through them.
func Statuses() []Status { return slices.Clone(statuses) }

// ParseStatus returns the Status named by s.
func ParseStatus(s string) (Status, error) {
	for _, st := range statuses {
		if string(st) == s {
			return st, nil
		}
	}
	names := make([]string, len(statuses))
	for i, st := range statuses {
		names[i] = string(st)
	}
	return "", fmt.Errorf("invalid status %q: must be one of %s", s, strings.Join(names, ", "))
}

// ErrLeaseLost means the caller no longer holds the lease on an item: it
// expired and was reclaimed, or another worker owns it now. The caller's
// outcome for the item is discarded.
var ErrLeaseLost = errors.New("lease lost")

// Item is one row of kg_processing_queue. Zero times stand for NULL.
type Item struct {
	ID                  int64     `json:"id"`
	ContentID           int64     `json:"content_id"`
	Status              Status    `json:"status"`
	Priority            int       `json:"priority"`
	QueuedAt            time.Time `json:"queued_at"`
	ProcessingStartedAt time.Time `json:"processing_started_at,omitzero"`
	ProcessedAt         time.Time `json:"processed_at,omitzero"`
	RetryCount          int       `json:"retry_count"`
	ErrorMessage        string    `json:"error_message,omitempty"`
	ResultSummary       string    `json:"result_summary,omitempty"`
	SkippedReason       string    `json:"skipped_reason,omitempty"`
	LeaseOwner          string    `json:"lease_owner,omitempty"`
	LeaseExpiresAt      time.Time `json:"lease_expires_at,omitzero"`
	NextAttemptAt       time.Time `json:"next_attempt_at,omitzero"`
}

// Counts is the number of queue items in each status.
type Counts struct {
	Pending    int `json:"pending"`
	Processing int `json:"processing"`
	Completed  int `json:"completed"`
	Failed     int `json:"failed"`
	Skipped    int `json:"skipped"`
	Total      int `json:"total"`
}

// Queue is the queue table in a database the caller opened. It is safe for
// use by many goroutines, and many processes may share the database.
type Queue struct {
	db          *sql.DB
	dialect     Dialect
	listener    *listener
	maxRetries  int
	backoffBase time.Duration
	backoffMax  time.Duration
	now         func() time.Time
	// watchFiles watches an SQLite database's files for WaitForWork; nil
	// when told not to (WithoutFileWatch).
	watchFiles  func(path string) (fileChanges, error)
	watchErr    atomic.Pointer[error]
	changeCheck time.Duration
	// writer orders the write transactions on a SQLite file, made on the
	// first one; nil on PostgreSQL, whose row locks need no turns.
	writer     *writerLock
	writerOnce sync.Once
}

// Option changes a default of New.
type Option func(*Queue)

// WithMaxRetries sets how many times a failed item is tried again before it
// is marked failed for good. Zero means the first failure is final. The
// default is 3.
func WithMaxRetries(n int) Option { return func(q *Queue) { q.maxRetries = n } }

// WithBackoff sets the delay before the first retry and the longest delay
// between retries. Delays double with each attempt and are jittered to
// between half and all of the computed value. The defaults are 10s and 10m.
func WithBackoff(base, max time.Duration) Option {
	return func(q *Queue) { q.backoffBase, q.backoffMax = base, max }
}

// WithClock replaces the wall clock used for leases and backoff.
func WithClock(now func() time.Time) Option { return func(q *Queue) { q.now = now } }

// TimeFormat is how this package writes timestamps: UTC, fixed width, so
// that SQLite compares them correctly as text, and readable by SQLite's own
// date functions.
const TimeFormat = "2006-01-02 15:04:05.000"

// New returns the queue kept in db. The schema must be in place (see
// Migrate). The caller keeps db and closes it after the last use.
func New(db *sql.DB, opts ...Option) (*Queue, error) {
	if db == nil {
		return nil, errors.New("invalid queue database: nil")
	}
	q := &Queue{
		db:          db,
		dialect:     DialectOf(db),
		maxRetries:  3,
		backoffBase: 10 * time.Second,
		backoffMax:  10 * time.Minute,
		now:         time.Now,
		watchFiles:  watchDBFiles,
		changeCheck: defaultChangeCheck,
	}
	for _, o := range opts {
		o(q)
	}
	switch {
	case q.maxRetries < 0:
		return nil, fmt.Errorf("invalid max_retries %d: must be zero or more", q.maxRetries)
	case q.backoffBase <= 0:
		return nil, fmt.Errorf("invalid backoff base %s: must be positive", q.backoffBase)
	case q.backoffMax < q.backoffBase:
		return nil, fmt.Errorf("invalid backoff max %s: must be at least the base %s", q.backoffMax, q.backoffBase)
	case q.now == nil:
		return nil, errors.New("invalid clock: must not be nil")
	case q.changeCheck <= 0:
		return nil, fmt.Errorf("invalid change check interval %s: must be positive", q.changeCheck)
	}
	if q.dialect == Postgres {
		q.listener = &listener{config: db.Driver().(*pgDriver).config}
	}
	return q, nil
}

// DB returns the database the queue lives in.
func (q *Queue) DB() *sql.DB { return q.db }

// Dialect returns the SQL dialect of the queue's database.
func (q *Queue) Dialect() Dialect { return q.dialect }

// Close releases what the queue holds beside the caller's database: the
// connection a PostgreSQL queue listens on. The database stays open.
func (q *Queue) Close() error {
	if q.listener != nil {
		q.listener.close()
	}
	q.writerOnce.Do(func() {})
	if q.writer != nil {
		q.writer.close()
	}
	return nil
}

// lockClause is what a statement that selects rows to change adds so that
// a concurrent transaction on PostgreSQL waits for them (FOR UPDATE) or
// passes them by (FOR UPDATE SKIP LOCKED). SQLite needs neither: every
// write transaction holds the whole file.
func (q *Queue) lockClause(skipLocked bool) string {
	switch {
	case q.dialect != Postgres:
		return ""
	case skipLocked:
		return " FOR UPDATE SKIP LOCKED"
	default:
		return " FOR UPDATE"
	}
}

// Now returns the queue's clock reading.
func (q *Queue) Now() time.Time { return q.now() }

// Stamp renders t as the queue stores timestamps.
func Stamp(t time.Time) string { return t.UTC().Format(TimeFormat) }

func (q *Queue) stamp(t time.Time) string { return Stamp(t) }

// WithTx runs fn in one write transaction and commits it when fn succeeds.
// On SQLite the write transactions of every handle and process on the file
// take turns (see WriterLockSuffix), so that a writer starts as soon as
// the one before it commits instead of when SQLite's busy handler next
// wakes it.
func (q *Queue) WithTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if q.dialect != Postgres {
		q.writerOnce.Do(func() { q.writer = newWriterLock(q.db) })
		defer q.writer.lock(ctx)()
	}
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback() //nolint:errcheck // the error from fn is the one to report
		return err
	}
	return tx.Commit()
}

// Enqueue adds a pending item for contentID and returns its id. Higher
// priorities are claimed first.
func (q *Queue) Enqueue(ctx context.Context, contentID int64, priority int) (int64, error) {
	if contentID <= 0 {
		return 0, fmt.Errorf("invalid content_id %d: must be positive", contentID)
	}
	var id int64
	err := q.db.QueryRowContext(ctx,
		"INSERT INTO kg_processing_queue(content_id, status, priority, queued_at, retry_count) VALUES (?, 'pending', ?, ?, 0) RETURNING id",
		contentID, priority, q.stamp(q.now())).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("enqueue content_id %d: %w", contentID, err)
	}
	return id, nil
}

const itemColumns = `id, content_id, status, priority, queued_at, processing_started_at, processed_at,
	retry_count, error_message, result_summary, skipped_reason, lease_owner, lease_expires_at, next_attempt_at`

// claimPick selects the items a claim takes, in the order it takes them.
// The claim index (AddClaimIndex) holds the pending items in this order,
// so that a claim reads the items it takes and no others, however long the
// queue: without it, every claim sorted all the pending items of the top
// priority.
const claimPick = `SELECT id FROM kg_processing_queue
	WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
	ORDER BY priority DESC, id`

// ClaimBatch leases up to n pending items that are due to owner for the
// given lease, highest priority first, and returns them. The claim is one
// statement: on SQLite it holds the file's write lock, on PostgreSQL it
// passes by the rows other claimers hold (FOR UPDATE SKIP LOCKED), so no
// two callers, in any process or on any host, get the same item.
func (q *Queue) ClaimBatch(ctx context.Context, owner string, n int, lease time.Duration) ([]Item, error) {
	switch {
	case owner == "":
		return nil, errors.New("invalid lease owner \"\": must not be empty")
	case n <= 0:
		return nil, fmt.Errorf("invalid batch size %d: must be positive", n)
	case lease <= 0:
		return nil, fmt.Errorf("invalid lease %s: must be positive", lease)
	}
	now := q.now()
	var items []Item
	err := q.WithTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `
UPDATE kg_processing_queue
SET status = 'processing', lease_owner = ?, lease_expires_at = ?, processing_started_at = ?
WHERE id IN (
	`+claimPick+`
	LIMIT ?`+q.lockClause(true)+`)
RETURNING `+itemColumns,
			owner, q.stamp(now.Add(lease)), q.stamp(now), q.stamp(now), n)
		if err != nil {
			return err
		}
		items, err = scanItems(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim %d items for %s: %w", n, owner, err)
	}
	// RETURNING gives rows in no particular order.
	sort.Slice(items, func(i, j int) bool {
		if items[i].Priority != items[j].Priority {
			return items[i].Priority > items[j].Priority
		}
		return items[i].ID < items[j].ID
	})
	return items, nil
}

// ExtendLease renews owner's lease on the items with the given ids and
// returns how many of them it still holds.
func (q *Queue) ExtendLease(ctx context.Context, owner string, lease time.Duration, ids ...int64) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if lease <= 0 {
		return 0, fmt.Errorf("invalid lease %s: must be positive", lease)
	}
	query, args := inIDs(`UPDATE kg_processing_queue SET lease_expires_at = ?
WHERE lease_owner = ? AND status = 'processing' AND id IN (%s)`, ids)
	args = append([]any{q.stamp(q.now().Add(lease)), owner}, args...)
	res, err := q.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("extend lease of %s on %d items: %w", owner, len(ids), err)
	}
	held, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("extend lease of %s on %d items: %w", owner, len(ids), err)
	}
	return int(held), nil
}

// Release hands owner's items with the given ids back to the queue as
// pending without spending an attempt, and returns how many it released.
// Workers release what they hold when the KG service is unavailable and when
// they shut down.
func (q *Queue) Release(ctx context.Context, owner string, ids ...int64) (int, error) {
	return q.ReleaseUntil(ctx, owner, time.Time{}, ids...)
}

// ReleaseUntil is Release with the items not due again before notBefore;
// a zero notBefore makes them due at once.
func (q *Queue) ReleaseUntil(ctx context.Context, owner string, notBefore time.Time, ids ...int64) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	query, args := inIDs(`UPDATE kg_processing_queue
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = ?
WHERE lease_owner = ? AND status = 'processing' AND id IN (%s)`, ids)
	var next any
	if !notBefore.IsZero() {
		next = q.stamp(notBefore)
	}
	args = append([]any{next, owner}, args...)
	res, err := q.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("release %d items of %s: %w", len(ids), owner, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("release %d items of %s: %w", len(ids), owner, err)
	}
	return int(n), nil
}

// ReclaimExpired puts items whose lease has expired back in the queue and
// returns how many it reclaimed. The holder most likely died with the item in
// hand, so this spends an attempt: the item is retried after a backoff, or
// marked failed once its retries are used up. Items left in processing
// without any lease, by the system this package replaces, count as expired.
func (q *Queue) ReclaimExpired(ctx context.Context) (int, error) {
	now := q.now()
	// Most rounds find nothing: look before taking the write lock.
	var one int
	err := q.db.QueryRowContext(ctx, `SELECT 1 FROM kg_processing_queue
WHERE status = 'processing' AND (lease_expires_at IS NULL OR lease_expires_at <= ?) LIMIT 1`, q.stamp(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reclaim expired leases: %w", err)
	}
	n := 0
	err = q.WithTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `
SELECT id, COALESCE(retry_count, 0), COALESCE(lease_owner, '') FROM kg_processing_queue
WHERE status = 'processing' AND (lease_expires_at IS NULL OR lease_expires_at <= ?)`+q.lockClause(true), q.stamp(now))
		if err != nil {
			return err
		}
		type expired struct {
			id      int64
			retries int
			owner   string
		}
		var list []expired
		for rows.Next() {
			var e expired
			if err := rows.Scan(&e.id, &e.retries, &e.owner); err != nil {
				rows.Close()
				return err
			}
			list = append(list, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, e := range list {
			reason := "lease expired without an owner"
			if e.owner != "" {
				reason = fmt.Sprintf("lease of %s expired", e.owner)
			}
			if _, err := q.spendAttempt(ctx, tx, e.id, e.retries, reason, now, 0); err != nil {
				return err
			}
		}
		n = len(list)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reclaim expired leases: %w", err)
	}
	return n, nil
}

// Failure is how an attempt at an item failed.
type Failure struct {
	// Reason is stored in error_message, bounded by BoundMessage.
	Reason string
	// Final fails the item for good whatever retries it has left: trying
	// the same thing again cannot give another answer.
	Final bool
	// NotBefore is the least delay before the item is tried again, such as
	// a Retry-After the service gave; the backoff applies when it is longer.
	NotBefore time.Duration
}

// Fail records that an attempt at owner's item id failed with reason. The
// item goes back to pending with a backoff, or to failed once it has been
// retried MaxRetries times; the returned Status says which.
func (q *Queue) Fail(ctx context.Context, owner string, id int64, reason string) (Status, error) {
	return q.FailWith(ctx, owner, id, Failure{Reason: reason})
}

// FailWith is Fail with the details of Failure.
func (q *Queue) FailWith(ctx context.Context, owner string, id int64, f Failure) (Status, error) {
	var status Status
	err := q.WithTx(ctx, func(tx *sql.Tx) error {
		var err error
		status, err = q.FailTx(ctx, tx, owner, id, f)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("fail item %d of %s: %w", id, owner, err)
	}
	return status, nil
}

// FailTx is FailWith inside the caller's transaction.
func (q *Queue) FailTx(ctx context.Context, tx *sql.Tx, owner string, id int64, f Failure) (Status, error) {
	var retries int
	err := tx.QueryRowContext(ctx, `SELECT COALESCE(retry_count, 0) FROM kg_processing_queue
WHERE id = ? AND lease_owner = ? AND status = 'processing'`+q.lockClause(false), id, owner).Scan(&retries)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrLeaseLost
	}
	if err != nil {
		return "", err
	}
	if f.Final {
		retries = max(retries, q.maxRetries)
	}
	return q.spendAttempt(ctx, tx, id, retries, f.Reason, q.now(), f.NotBefore)
}

// spendAttempt counts one more attempt at item id, which had used retries
// so far, and either schedules a retry, no sooner than notBefore from now,
// or fails the item for good. It returns the item's new status.
func (q *Queue) spendAttempt(ctx context.Context, tx *sql.Tx, id int64, retries int, reason string, now time.Time, notBefore time.Duration) (Status, error) {
	attempts := retries + 1
	if attempts > q.maxRetries {
		gaveUp := fmt.Sprintf(" (gave up after %d attempts)", attempts)
		msg := BoundMessage(reason, MaxMessageBytes-len(gaveUp)) + gaveUp
		_, err := tx.ExecContext(ctx, `UPDATE kg_processing_queue
SET status = 'failed', retry_count = ?, error_message = ?, processed_at = ?,
	lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL
WHERE id = ?`, attempts, msg, q.stamp(now), id)
		return StatusFailed, err
	}
	next := now.Add(max(q.backoff(attempts), notBefore))
	_, err := tx.ExecContext(ctx, `UPDATE kg_processing_queue
SET status = 'pending', retry_count = ?, error_message = ?, next_attempt_at = ?,
	lease_owner = NULL, lease_expires_at = NULL
WHERE id = ?`, attempts, BoundMessage(reason, MaxMessageBytes), q.stamp(next), id)
	return StatusPending, err
}

// backoff is the delay before retry number attempt (1 for the first retry):
// the base doubled per earlier attempt, capped at the maximum, then jittered
// to between half and all of that so that items failed together do not come
// back together.
func (q *Queue) backoff(attempt int) time.Duration {
	d := q.backoffBase
	for i := 1; i < attempt && d < q.backoffMax; i++ {
		d *= 2
	}
	if d > q.backoffMax {
		d = q.backoffMax
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Skip marks owner's item id skipped with reason; it is not retried.
func (q *Queue) Skip(ctx context.Context, owner string, id int64, reason string) error {
	res, err := q.db.ExecContext(ctx, `UPDATE kg_processing_queue
SET status = 'skipped', skipped_reason = ?, processed_at = ?, lease_owner = NULL, lease_expires_at = NULL
WHERE id = ? AND lease_owner = ? AND status = 'processing'`, BoundMessage(reason, MaxMessageBytes), q.stamp(q.now()), id, owner)
	if err == nil {
		err = mustAffectOne(res)
	}
	if err != nil {
		return fmt.Errorf("skip item %d of %s: %w", id, owner, err)
	}
	return nil
}

// CompleteTx marks owner's item id completed with summary as its
// result_summary, inside the caller's transaction, and returns the item's
// content_id so that the caller can write the results in the same
// transaction. It returns ErrLeaseLost, and changes nothing, when owner no
// longer holds the item.
func (q *Queue) CompleteTx(ctx context.Context, tx *sql.Tx, owner string, id int64, summary string) (int64, error) {
	var contentID int64
	err := tx.QueryRowContext(ctx, `UPDATE kg_processing_queue
SET status = 'completed', processed_at = ?, result_summary = ?, error_message = NULL,
	lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL
WHERE id = ? AND lease_owner = ? AND status = 'processing'
RETURNING content_id`, q.stamp(q.now()), nullString(summary), id, owner).Scan(&contentID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrLeaseLost
	}
	return contentID, err
}

// Complete marks owner's item id completed; write, when not nil, runs in
// the same transaction with the item's content_id and its error undoes the
// completion.
func (q *Queue) Complete(ctx context.Context, owner string, id int64, summary string, write func(tx *sql.Tx, contentID int64) error) error {
	err := q.WithTx(ctx, func(tx *sql.Tx) error {
		contentID, err := q.CompleteTx(ctx, tx, owner, id, summary)
		if err != nil || write == nil {
			return err
		}
		return write(tx, contentID)
	})
	if err != nil {
		return fmt.Errorf("complete item %d of %s: %w", id, owner, err)
	}
	return nil
}

// RetryFailed puts failed items back in the queue with their retry count
// reset and returns how many it moved. With no ids it moves every failed
// item.
func (q *Queue) RetryFailed(ctx context.Context, ids ...int64) (int, error) {
	query := `UPDATE kg_processing_queue
SET status = 'pending', retry_count = 0, next_attempt_at = NULL, processed_at = NULL
WHERE status = 'failed'`
	var args []any
	if len(ids) > 0 {
		query, args = inIDs(query+" AND id IN (%s)", ids)
	}
	res, err := q.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("retry failed items: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("retry failed items: %w", err)
	}
	return int(n), nil
}

func statusLabel(s Status) string {
	if s == "" {
		return "all"
	}
	return string(s)
}

// List returns up to limit items, newest first. An empty status lists every
// status; a limit of 0 lists all.
func (q *Queue) List(ctx context.Context, status Status, limit int) ([]Item, error) {
	if status != "" {
		if _, err := ParseStatus(string(status)); err != nil {
			return nil, err
		}
	}
	if limit < 0 {
		return nil, fmt.Errorf("invalid limit %d: must be zero (no limit) or more", limit)
	}
	query := "SELECT " + itemColumns + " FROM kg_processing_queue"
	var args []any
	if status != "" {
		query += " WHERE status = ?"
		args = append(args, string(status))
	}
	query += " ORDER BY id DESC"
	if limit > 0 {
		query += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := q.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s items: %w", statusLabel(status), err)
	}
	items, err := scanItems(rows)
	if err != nil {
		return nil, fmt.Errorf("list %s items: %w", statusLabel(status), err)
	}
	return items, nil
}

// Get returns the item with the given id.
func (q *Queue) Get(ctx context.Context, id int64) (Item, error) {
	rows, err := q.db.QueryContext(ctx, "SELECT "+itemColumns+" FROM kg_processing_queue WHERE id = ?", id)
	if err != nil {
		return Item{}, fmt.Errorf("get item %d: %w", id, err)
	}
	items, err := scanItems(rows)
	if err != nil {
		return Item{}, fmt.Errorf("get item %d: %w", id, err)
	}
	if len(items) == 0 {
		return Item{}, fmt.Errorf("get item %d: no such item", id)
	}
	return items[0], nil
}

// Stats counts the items in each status.
func (q *Queue) Stats(ctx context.Context) (Counts, error) {
	rows, err := q.db.QueryContext(ctx, "SELECT COALESCE(status, ''), count(*) FROM kg_processing_queue GROUP BY status")
	if err != nil {
		return Counts{}, fmt.Errorf("count queue items: %w", err)
	}
	defer rows.Close()
	var c Counts
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return Counts{}, fmt.Errorf("count queue items: %w", err)
		}
		c.Total += n
		switch Status(status) {
		case StatusPending:
			c.Pending = n
		case StatusProcessing:
			c.Processing = n
		case StatusCompleted:
			c.Completed = n
		case StatusFailed:
			c.Failed = n
		case StatusSkipped:
			c.Skipped = n
		}
	}
	if err := rows.Err(); err != nil {
		return Counts{}, fmt.Errorf("count queue items: %w", err)
	}
	return c, nil
}

// WaitForWork blocks until a pending item is due or timeout passes, and
// reports whether work is waiting. On SQLite it notices items enqueued by
// any process, through any program: it has the kernel report changes to
// the database's files (inotify on Linux), confirms each by SQLite's
// data_version, which changes whenever another connection commits, and
// only then looks at the queue itself; where the files cannot be watched it
// looks at data_version every WithChangeCheck interval. On PostgreSQL it
// LISTENs on NotifyChannel and wakes as soon as an item becomes pending, on
// any host. On both, timeout, the poll interval, remains the fallback for
// items whose backoff ends.
func (q *Queue) WaitForWork(ctx context.Context, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var ok bool
	var err error
	if q.dialect == Postgres {
		ok, err = q.waitNotified(ctx)
	} else {
		ok, err = q.waitChanged(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("wait for queue work: %w", err)
	}
	return ok, nil
}

func dataVersion(ctx context.Context, conn *sql.Conn) (int64, error) {
	var v int64
	err := conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v)
	return v, err
}

func (q *Queue) workDue(ctx context.Context, conn interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (bool, error) {
	var one int
	err := conn.QueryRowContext(ctx, `SELECT 1 FROM kg_processing_queue
WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) LIMIT 1`, q.stamp(q.now())).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// inIDs fills the %s in query with one placeholder per id.
func inIDs(query string, ids []int64) (string, []any) {
	marks := make([]string, len(ids))
	args := make([]any, len(ids))
	for i, id := range ids {
		marks[i] = "?"
		args[i] = id
	}
	return fmt.Sprintf(query, strings.Join(marks, ", ")), args
}

func mustAffectOne(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func scanItems(rows *sql.Rows) ([]Item, error) {
	defer rows.Close()
	var items []Item
	for rows.Next() {
		var (
			it                                           Item
			status, errMsg, summary, skipped, owner      sql.NullString
			priority, retries                            sql.NullInt64
			queued, started, processed, expires, nextTry NullTime
		)
		if err := rows.Scan(&it.ID, &it.ContentID, &status, &priority, &queued, &started, &processed,
			&retries, &errMsg, &summary, &skipped, &owner, &expires, &nextTry); err != nil {
			return nil, err
		}
		it.Status = Status(status.String)
		it.Priority = int(priority.Int64)
		it.RetryCount = int(retries.Int64)
		it.QueuedAt, it.ProcessingStartedAt, it.ProcessedAt = queued.Time, started.Time, processed.Time
		it.LeaseExpiresAt, it.NextAttemptAt = expires.Time, nextTry.Time
		it.ErrorMessage, it.ResultSummary, it.SkippedReason, it.LeaseOwner = errMsg.String, summary.String, skipped.String, owner.String
		items = append(items, it)
	}
	return items, rows.Err()
}

// NullTime scans a timestamp column whatever shape it was stored in: the
// driver's time.Time, text in any of the usual layouts, or NULL (the zero
// time).
type NullTime struct{ Time time.Time }

var timeLayouts = []string{
	TimeFormat,
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02",
}

// Scan implements sql.Scanner.
func (n *NullTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		n.Time = time.Time{}
	case time.Time:
		n.Time = v.UTC()
	case string:
		return n.parse(v)
	case []byte:
		return n.parse(string(v))
	case int64:
		n.Time = time.Unix(v, 0).UTC()
	case float64:
		n.Time = time.UnixMilli(int64(v * 1000)).UTC()
	default:
		return fmt.Errorf("scan timestamp: unsupported type %T", v)
	}
	return nil
}

func (n *NullTime) parse(s string) error {
	s = strings.TrimSuffix(strings.TrimSpace(s), "Z")
	if s == "" {
		n.Time = time.Time{}
		return nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			n.Time = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("scan timestamp %q: unknown layout", s)
}
