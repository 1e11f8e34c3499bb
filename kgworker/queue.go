package kgworker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
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

// Errors callers branch on.
var (
	// ErrLeaseLost means the caller no longer holds the lease on an item:
	// it expired and was reclaimed, or another worker owns it now. The
	// caller's outcome for the item is discarded.
	ErrLeaseLost = errors.New("lease lost")
	// ErrContentNotFound means a queue item names a content_id that has no
	// crawled_content row.
	ErrContentNotFound = errors.New("content not found")
	// ErrInvalidContent means the crawled_content row cannot be sent to the
	// KG service as it stands.
	ErrInvalidContent = errors.New("invalid content")
)

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

// Content is a crawled document as it is sent to the KG service.
type Content struct {
	ID       int64
	URL      string
	Title    string
	Markdown string
	Metadata json.RawMessage
	Chunks   []Chunk
}

// Queue is the KG processing queue in one SQLite file. It is safe for use by
// many goroutines, and many processes may open the same file.
type Queue struct {
	db          *sql.DB
	path        string
	maxRetries  int
	backoffBase time.Duration
	backoffMax  time.Duration
	now         func() time.Time
	fileOwner   string
	makeDir     bool
}

// Option changes a default of Open.
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

// WithFileOwner makes Open hand the database file and its WAL and shared
// memory files to the named user and that user's primary group, so that
// workers running as that user can write a database an administrator
// created. It takes effect only when the process runs as root; nobody else
// can give files away.
func WithFileOwner(username string) Option { return func(q *Queue) { q.fileOwner = username } }

// WithMakeDir, when on, makes Open create the database's
// directory if it is missing, for a database no StateDirectory= or
// tmpfiles.d entry provides: kato-manager --user's, under XDG_STATE_HOME.
func WithMakeDir(on bool) Option { return func(q *Queue) { q.makeDir = on } }

// timeFormat is how this package writes timestamps: UTC, fixed width, so
// that SQLite compares them correctly as text, and readable by SQLite's own
// date functions.
const timeFormat = "2006-01-02 15:04:05.000"

// busyTimeout is how long a statement waits for another connection's write
// lock before failing.
const busyTimeout = 5 * time.Second

// Open opens the queue database at path, creating it if absent, and migrates
// it to SchemaVersion.
func Open(ctx context.Context, path string, opts ...Option) (*Queue, error) {
	if path == "" {
		return nil, errors.New("invalid db_path \"\": must not be empty")
	}
	q := &Queue{
		path:        path,
		maxRetries:  3,
		backoffBase: 10 * time.Second,
		backoffMax:  10 * time.Minute,
		now:         time.Now,
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
	}
	if q.fileOwner != "" && os.Geteuid() == 0 {
		if err := ensureOwnedDir(filepath.Dir(path), q.fileOwner); err != nil {
			return nil, fmt.Errorf("open kg database %s: %w", path, err)
		}
	} else if q.makeDir {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("open kg database %s: %w", path, err)
		}
	}
	db, err := sql.Open("sqlite3", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open kg database %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open kg database %s: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open kg database %s: %w", path, err)
	}
	if q.fileOwner != "" && os.Geteuid() == 0 {
		if err := chownFiles(path, q.fileOwner); err != nil {
			db.Close()
			return nil, fmt.Errorf("open kg database %s: %w", path, err)
		}
	}
	q.db = db
	return q, nil
}

// ensureOwnedDir creates dir for username when it is missing, as
// kg-worker@.service's StateDirectory= would, so that a queue command run
// before any worker leaves a directory the workers can write.
func ensureOwnedDir(dir, username string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	uid, gid, err := lookupOwner(username)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("give %s to %s: %w", dir, username, err)
	}
	return nil
}

// lookupOwner returns the uid and primary gid of username.
func lookupOwner(username string) (int, int, error) {
	u, err := user.Lookup(username)
	if err != nil {
		return 0, 0, fmt.Errorf("look up file owner %q: %w", username, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("look up file owner %q: uid %q is not a number", username, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("look up file owner %q: gid %q is not a number", username, u.Gid)
	}
	return uid, gid, nil
}

// chownFiles gives the database file and SQLite's companion files, those
// that exist, to username and its primary group.
func chownFiles(path, username string) error {
	uid, gid, err := lookupOwner(username)
	if err != nil {
		return err
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chown(f, uid, gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("give %s to %s: %w", f, username, err)
		}
	}
	return nil
}

// dsn builds the go-sqlite3 connection string: WAL so that readers never
// block the writer, a busy timeout so that writers queue instead of failing,
// and BEGIN IMMEDIATE for every transaction so that a transaction takes the
// write lock before it reads what it is going to change.
func dsn(path string) string {
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return fmt.Sprintf("file:%s?_journal_mode=WAL&_busy_timeout=%d&_txlock=immediate&_foreign_keys=off&_synchronous=NORMAL",
		escaped, busyTimeout.Milliseconds())
}

// Close closes the database.
func (q *Queue) Close() error {
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("close kg database %s: %w", q.path, err)
	}
	return nil
}

// Path returns the file the queue was opened from.
func (q *Queue) Path() string { return q.path }

// SchemaVersion reports the schema version recorded in the database.
func (q *Queue) SchemaVersion(ctx context.Context) (int, error) {
	return schemaVersion(ctx, q.db)
}

func (q *Queue) stamp(t time.Time) string { return t.UTC().Format(timeFormat) }

// withTx runs fn in one write transaction and commits it when fn succeeds.
func (q *Queue) withTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
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
	res, err := q.db.ExecContext(ctx,
		"INSERT INTO kg_processing_queue(content_id, status, priority, queued_at, retry_count) VALUES (?, 'pending', ?, ?, 0)",
		contentID, priority, q.stamp(q.now()))
	if err != nil {
		return 0, fmt.Errorf("enqueue content_id %d: %w", contentID, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("enqueue content_id %d: %w", contentID, err)
	}
	return id, nil
}

const itemColumns = `id, content_id, status, priority, queued_at, processing_started_at, processed_at,
	retry_count, error_message, result_summary, skipped_reason, lease_owner, lease_expires_at, next_attempt_at`

// ClaimBatch leases up to n pending items that are due to owner for the
// given lease, highest priority first, and returns them. The claim is one
// write transaction, so no two callers, in any process, get the same item.
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
	err := q.withTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `
UPDATE kg_processing_queue
SET status = 'processing', lease_owner = ?, lease_expires_at = ?, processing_started_at = ?
WHERE id IN (
	SELECT id FROM kg_processing_queue
	WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
	ORDER BY priority DESC, id
	LIMIT ?)
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
	var held int64
	err := q.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		held, err = res.RowsAffected()
		return err
	})
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
	if len(ids) == 0 {
		return 0, nil
	}
	query, args := inIDs(`UPDATE kg_processing_queue
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL
WHERE lease_owner = ? AND status = 'processing' AND id IN (%s)`, ids)
	args = append([]any{owner}, args...)
	var n int64
	err := q.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
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
	n := 0
	err := q.withTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `
SELECT id, COALESCE(retry_count, 0), COALESCE(lease_owner, '') FROM kg_processing_queue
WHERE status = 'processing' AND (lease_expires_at IS NULL OR lease_expires_at <= ?)`, q.stamp(now))
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
			if _, err := q.spendAttempt(ctx, tx, e.id, e.retries, reason, now); err != nil {
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

// Fail records that an attempt at owner's item id failed with reason. The
// item goes back to pending with a backoff, or to failed once it has been
// retried MaxRetries times; the returned Status says which.
func (q *Queue) Fail(ctx context.Context, owner string, id int64, reason string) (Status, error) {
	now := q.now()
	var status Status
	err := q.withTx(ctx, func(tx *sql.Tx) error {
		var retries int
		err := tx.QueryRowContext(ctx, `SELECT COALESCE(retry_count, 0) FROM kg_processing_queue
WHERE id = ? AND lease_owner = ? AND status = 'processing'`, id, owner).Scan(&retries)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrLeaseLost
		}
		if err != nil {
			return err
		}
		status, err = q.spendAttempt(ctx, tx, id, retries, reason, now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("fail item %d of %s: %w", id, owner, err)
	}
	return status, nil
}

// spendAttempt counts one more attempt at item id, which had used retries
// so far, and either schedules a retry or fails the item for good. It
// returns the item's new status.
func (q *Queue) spendAttempt(ctx context.Context, tx *sql.Tx, id int64, retries int, reason string, now time.Time) (Status, error) {
	attempts := retries + 1
	if attempts > q.maxRetries {
		msg := fmt.Sprintf("%s (gave up after %d attempts)", reason, attempts)
		_, err := tx.ExecContext(ctx, `UPDATE kg_processing_queue
SET status = 'failed', retry_count = ?, error_message = ?, processed_at = ?,
	lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL
WHERE id = ?`, attempts, msg, q.stamp(now), id)
		return StatusFailed, err
	}
	next := now.Add(q.backoff(attempts))
	_, err := tx.ExecContext(ctx, `UPDATE kg_processing_queue
SET status = 'pending', retry_count = ?, error_message = ?, next_attempt_at = ?,
	lease_owner = NULL, lease_expires_at = NULL
WHERE id = ?`, attempts, reason, q.stamp(next), id)
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
	err := q.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE kg_processing_queue
SET status = 'skipped', skipped_reason = ?, processed_at = ?, lease_owner = NULL, lease_expires_at = NULL
WHERE id = ? AND lease_owner = ? AND status = 'processing'`, reason, q.stamp(q.now()), id, owner)
		if err != nil {
			return err
		}
		return mustAffectOne(res)
	})
	if err != nil {
		return fmt.Errorf("skip item %d of %s: %w", id, owner, err)
	}
	return nil
}

// resultSummary is what Complete stores in result_summary.
type resultSummary struct {
	EntitiesExtracted      int     `json:"entities_extracted"`
	RelationshipsExtracted int     `json:"relationships_extracted"`
	ProcessingTimeMS       float64 `json:"processing_time_ms"`
	DocumentID             string  `json:"document_id,omitempty"`
}

// Complete marks owner's item id completed and writes the KG service's
// result for its content in the same transaction: the entity and
// relationship rows, which replace any from an earlier run for the same
// content, the crawled_content kg_* columns and the chunks' kg_processed
// flags. It returns ErrLeaseLost, and writes nothing, when owner no longer
// holds the item.
func (q *Queue) Complete(ctx context.Context, owner string, id int64, res *IngestResult) error {
	if res == nil {
		return fmt.Errorf("complete item %d of %s: no result", id, owner)
	}
	now := q.stamp(q.now())
	summary, err := json.Marshal(resultSummary{
		EntitiesExtracted:      res.EntitiesExtracted,
		RelationshipsExtracted: res.RelationshipsExtracted,
		ProcessingTimeMS:       res.ProcessingTimeMS,
		DocumentID:             res.DocumentID,
	})
	if err != nil {
		return fmt.Errorf("complete item %d of %s: %w", id, owner, err)
	}
	err = q.withTx(ctx, func(tx *sql.Tx) error {
		var contentID int64
		err := tx.QueryRowContext(ctx, `UPDATE kg_processing_queue
SET status = 'completed', processed_at = ?, result_summary = ?, error_message = NULL,
	lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL
WHERE id = ? AND lease_owner = ? AND status = 'processing'
RETURNING content_id`, now, string(summary), id, owner).Scan(&contentID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrLeaseLost
		}
		if err != nil {
			return err
		}
		return writeResult(ctx, tx, contentID, res, now)
	})
	if err != nil {
		return fmt.Errorf("complete item %d of %s: %w", id, owner, err)
	}
	return nil
}

func writeResult(ctx context.Context, tx *sql.Tx, contentID int64, res *IngestResult, now string) error {
	for _, table := range []string{"chunk_entities", "chunk_relationships"} {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE content_id = ?", contentID); err != nil {
			return fmt.Errorf("clear %s of content_id %d: %w", table, contentID, err)
		}
	}
	if len(res.Entities) > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO chunk_entities(chunk_rowid, content_id, entity_text,
	entity_normalized, entity_type_primary, entity_type_sub1, entity_type_sub2, entity_type_sub3,
	confidence, offset_start, offset_end, neo4j_node_id, spans_multiple_chunks)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, e := range res.Entities {
			if _, err := stmt.ExecContext(ctx, e.ChunkRowID, contentID, e.Text, e.Normalized, e.TypePrimary,
				nullString(e.TypeSub1), nullString(e.TypeSub2), nullString(e.TypeSub3), e.Confidence,
				e.OffsetStart, e.OffsetEnd, nullString(e.Neo4jNodeID), e.SpansMultipleChunks); err != nil {
				return fmt.Errorf("write entity %q of content_id %d: %w", e.Text, contentID, err)
			}
		}
	}
	if len(res.Relationships) > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO chunk_relationships(content_id, subject_entity,
	predicate, object_entity, confidence, context, neo4j_relationship_id, spans_chunks, chunk_rowids)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range res.Relationships {
			rowids := r.ChunkRowIDs
			if rowids == nil {
				rowids = []int64{}
			}
			js, err := json.Marshal(rowids)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, contentID, r.Subject, r.Predicate, r.Object, r.Confidence,
				nullString(r.Context), nullString(r.Neo4jRelationshipID), r.SpansChunks, string(js)); err != nil {
				return fmt.Errorf("write relationship %q %q %q of content_id %d: %w",
					r.Subject, r.Predicate, r.Object, contentID, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE crawled_content
SET kg_processed = 1, kg_entity_count = ?, kg_relationship_count = ?, kg_document_id = ?, kg_processed_at = ?
WHERE id = ?`, res.EntitiesExtracted, res.RelationshipsExtracted, nullString(res.DocumentID), now, contentID); err != nil {
		return fmt.Errorf("mark content_id %d processed: %w", contentID, err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE content_chunks SET kg_processed = 1 WHERE content_id = ?", contentID); err != nil {
		return fmt.Errorf("mark chunks of content_id %d processed: %w", contentID, err)
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
	var n int64
	err := q.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retry failed items: %w", err)
	}
	return int(n), nil
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

func statusLabel(s Status) string {
	if s == "" {
		return "all"
	}
	return string(s)
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

// Content loads the crawled document contentID and its chunks in chunk
// order. It returns ErrContentNotFound when there is no such document and
// ErrInvalidContent when its metadata is not JSON.
func (q *Queue) Content(ctx context.Context, contentID int64) (*Content, error) {
	var url, title, markdown, metadata sql.NullString
	err := q.db.QueryRowContext(ctx, "SELECT url, title, markdown, metadata FROM crawled_content WHERE id = ?", contentID).
		Scan(&url, &title, &markdown, &metadata)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("load content_id %d: %w", contentID, ErrContentNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load content_id %d: %w", contentID, err)
	}
	c := &Content{ID: contentID, URL: url.String, Title: title.String, Markdown: markdown.String, Metadata: json.RawMessage("{}")}
	if m := strings.TrimSpace(metadata.String); m != "" {
		if !json.Valid([]byte(m)) {
			return nil, fmt.Errorf("load content_id %d: %w: metadata is not JSON", contentID, ErrInvalidContent)
		}
		c.Metadata = json.RawMessage(m)
	}
	rows, err := q.db.QueryContext(ctx, `SELECT rowid, COALESCE(chunk_index, 0), COALESCE(char_start, 0),
	COALESCE(char_end, 0), COALESCE(chunk_text, '')
FROM content_chunks WHERE content_id = ? ORDER BY chunk_index, rowid`, contentID)
	if err != nil {
		return nil, fmt.Errorf("load chunks of content_id %d: %w", contentID, err)
	}
	defer rows.Close()
	c.Chunks = []Chunk{}
	for rows.Next() {
		var ch Chunk
		if err := rows.Scan(&ch.VectorRowID, &ch.ChunkIndex, &ch.CharStart, &ch.CharEnd, &ch.Text); err != nil {
			return nil, fmt.Errorf("load chunks of content_id %d: %w", contentID, err)
		}
		c.Chunks = append(c.Chunks, ch)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load chunks of content_id %d: %w", contentID, err)
	}
	return c, nil
}

// wakeCheckInterval is how often WaitForWork looks for a change to the file.
const wakeCheckInterval = 50 * time.Millisecond

// WaitForWork blocks until a pending item is due or timeout passes, and
// reports whether work is waiting. It notices items enqueued by any process
// within about wakeCheckInterval: it watches SQLite's data_version, which
// changes whenever another connection commits, and only then looks at the
// queue itself.
func (q *Queue) WaitForWork(ctx context.Context, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := func(err error) (bool, error) {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("wait for queue work: %w", err)
	}
	// data_version is only comparable on one connection, so hold one.
	conn, err := q.db.Conn(ctx)
	if err != nil {
		return done(err)
	}
	defer conn.Close()
	version, err := dataVersion(ctx, conn)
	if err != nil {
		return done(err)
	}
	if ok, err := q.workDue(ctx, conn); err != nil || ok {
		if err != nil {
			return done(err)
		}
		return true, nil
	}
	tick := time.NewTicker(wakeCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-tick.C:
		}
		v, err := dataVersion(ctx, conn)
		if err != nil {
			return done(err)
		}
		if v == version {
			continue
		}
		version = v
		ok, err := q.workDue(ctx, conn)
		if err != nil {
			return done(err)
		}
		if ok {
			return true, nil
		}
	}
}

func dataVersion(ctx context.Context, conn *sql.Conn) (int64, error) {
	var v int64
	err := conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v)
	return v, err
}

func (q *Queue) workDue(ctx context.Context, conn *sql.Conn) (bool, error) {
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
			queued, started, processed, expires, nextTry nullTime
		)
		if err := rows.Scan(&it.ID, &it.ContentID, &status, &priority, &queued, &started, &processed,
			&retries, &errMsg, &summary, &skipped, &owner, &expires, &nextTry); err != nil {
			return nil, err
		}
		it.Status = Status(status.String)
		it.Priority = int(priority.Int64)
		it.RetryCount = int(retries.Int64)
		it.QueuedAt, it.ProcessingStartedAt, it.ProcessedAt = queued.t, started.t, processed.t
		it.LeaseExpiresAt, it.NextAttemptAt = expires.t, nextTry.t
		it.ErrorMessage, it.ResultSummary, it.SkippedReason, it.LeaseOwner = errMsg.String, summary.String, skipped.String, owner.String
		items = append(items, it)
	}
	return items, rows.Err()
}

// nullTime scans a timestamp column whatever shape it was stored in: the
// driver's time.Time, text in any of the usual layouts, or NULL.
type nullTime struct{ t time.Time }

var timeLayouts = []string{
	timeFormat,
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02",
}

func (n *nullTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		n.t = time.Time{}
	case time.Time:
		n.t = v.UTC()
	case string:
		return n.parse(v)
	case []byte:
		return n.parse(string(v))
	case int64:
		n.t = time.Unix(v, 0).UTC()
	case float64:
		n.t = time.UnixMilli(int64(v * 1000)).UTC()
	default:
		return fmt.Errorf("scan timestamp: unsupported type %T", v)
	}
	return nil
}

func (n *nullTime) parse(s string) error {
	s = strings.TrimSuffix(strings.TrimSpace(s), "Z")
	if s == "" {
		n.t = time.Time{}
		return nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			n.t = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("scan timestamp %q: unknown layout", s)
}
