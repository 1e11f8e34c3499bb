package kgdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/queue"
)

// Option changes a default of Open.
type Option func(*openOpts)

// Errors callers branch on.
var (
	// ErrContentNotFound means a queue item names a content_id that has no
	// crawled_content row.
	ErrContentNotFound = errors.New("content not found")
	// ErrInvalidContent means the crawled_content row cannot be sent to the
	// KG service as it stands: it breaks the service's request limits.
	ErrInvalidContent = errors.New("invalid content")
	// ErrReadOnly means a write was asked of a queue opened read-only.
	ErrReadOnly = errors.New("queue opened read-only")
)

// Content is a crawled document as it is sent to the KG service.
type Content struct {
	ID       int64
	URL      string
	Title    string
	Markdown string
	Metadata json.RawMessage
	Chunks   []Chunk
}

// DB is the KG database: the leased queue of package queue, and the
// documents and KG results beside it. It is safe for use by many
// goroutines, and many processes may open the same file.
type DB struct {
	*queue.Queue
	db       *sql.DB
	path     string
	readOnly bool
}

type openOpts struct {
	queueOpts []queue.Option
	makeDir   bool
}

// WithMaxRetries sets how many times a failed item is tried again before it
// is marked failed for good. The default is 3.
func WithMaxRetries(n int) Option {
	return func(o *openOpts) { o.queueOpts = append(o.queueOpts, queue.WithMaxRetries(n)) }
}

// WithBackoff sets the delay before the first retry and the longest delay
// between retries. The defaults are 10s and 10m.
func WithBackoff(base, max time.Duration) Option {
	return func(o *openOpts) { o.queueOpts = append(o.queueOpts, queue.WithBackoff(base, max)) }
}

// WithClock replaces the wall clock used for leases and backoff.
func WithClock(now func() time.Time) Option {
	return func(o *openOpts) { o.queueOpts = append(o.queueOpts, queue.WithClock(now)) }
}

// WithoutFileWatch makes idle workers on a SQLite database look for
// commits every WithChangeCheck interval instead of waiting for the kernel
// to report a change to the database's files: the benchmark's baseline.
func WithoutFileWatch() Option {
	return func(o *openOpts) { o.queueOpts = append(o.queueOpts, queue.WithoutFileWatch()) }
}

// WithChangeCheck sets how often idle workers on a SQLite database look for
// commits when they do not watch its files. The default is 50ms.
func WithChangeCheck(every time.Duration) Option {
	return func(o *openOpts) { o.queueOpts = append(o.queueOpts, queue.WithChangeCheck(every)) }
}

// WithMakeDir, when on, makes Open create the database's directory if it is
// missing, for a database no StateDirectory= or tmpfiles.d entry provides:
// kato-manager --user's, under XDG_STATE_HOME.
func WithMakeDir(on bool) Option { return func(o *openOpts) { o.makeDir = on } }

// busyTimeout is how long a statement waits for another connection's write
// lock before failing.
const busyTimeout = 5 * time.Second

// maxPostgresConns is the most connections one process opens to a
// PostgreSQL queue, beside the one it listens on.
const maxPostgresConns = 8

// firstOpenPatience bounds how long Open keeps retrying while other
// processes hold the new database's locks.
const firstOpenPatience = 30 * time.Second

// Open opens the queue database at path, creating it if absent, and migrates
// it to SchemaVersion. Opening a new database while other processes do the
// same retries while SQLite answers busy. A postgres:// URL in place of the
// path opens that PostgreSQL database instead (the database itself must
// exist; the tables are created and migrated as in a SQLite file), and the
// file options (WithFileOwner, WithMakeDir) do not apply.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	if path == "" {
		return nil, errors.New("invalid db_path \"\": must not be empty")
	}
	var o openOpts
	for _, opt := range opts {
		opt(&o)
	}
	if queue.IsURL(path) {
		return openPostgres(ctx, path, false, o)
	}
	if o.makeDir {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("open kg database %s: %w", path, err)
		}
	}
	db, err := sql.Open("sqlite3", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open kg database %s: %w", path, err)
	}
	if err := retryBusy(ctx, func() error {
		if err := db.PingContext(ctx); err != nil {
			return err
		}
		return queue.Migrate(ctx, db, migrations)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open kg database %s: %w", path, err)
	}
	return newQueue(db, path, false, o)
}

// OpenReadOnly opens the queue database at path for reading only: it takes
// no write lock, ever. A database that does not exist yet, or is not
// migrated to SchemaVersion, is opened with Open instead, which creates or
// migrates it; opts apply to that case.
func OpenReadOnly(ctx context.Context, path string, opts ...Option) (*DB, error) {
	if path == "" {
		return nil, errors.New("invalid db_path \"\": must not be empty")
	}
	if queue.IsURL(path) {
		var o openOpts
		for _, opt := range opts {
			opt(&o)
		}
		return openPostgres(ctx, path, true, o)
	}
	if _, err := os.Stat(path); err != nil {
		return Open(ctx, path, opts...)
	}
	db, err := sql.Open("sqlite3", roDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open kg database %s read-only: %w", path, err)
	}
	v, err := queue.SchemaVersion(ctx, db)
	if err != nil || v < SchemaVersion {
		db.Close()
		return Open(ctx, path, opts...)
	}
	var o openOpts
	for _, opt := range opts {
		opt(&o)
	}
	return newQueue(db, path, true, o)
}

// openPostgres opens the PostgreSQL database at rawURL and migrates it to
// SchemaVersion; readOnly marks the queue read-only once it is migrated,
// as OpenReadOnly does for a file. PostgreSQL's row locks keep readers and
// writers apart, so a read-only queue shares its connections with nobody
// and holds up no worker.
func openPostgres(ctx context.Context, rawURL string, readOnly bool, o openOpts) (*DB, error) {
	db, err := queue.OpenPostgres(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("open kg database: %w", err)
	}
	// A worker needs a connection or two at a time (a few more at a high
	// kg.concurrency), and every connection is a server process: cap what
	// one process may hold so that many hosts' workers fit the server's
	// max_connections. The LISTEN connection comes on top.
	db.SetMaxOpenConns(maxPostgresConns)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	if err := queue.Migrate(ctx, db, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("open kg database %s: %w", config.RedactURL(rawURL), err)
	}
	return newQueue(db, config.RedactURL(rawURL), readOnly, o)
}

func newQueue(db *sql.DB, path string, readOnly bool, o openOpts) (*DB, error) {
	q, err := queue.New(db, o.queueOpts...)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &DB{Queue: q, db: db, path: path, readOnly: readOnly}, nil
}

// retryBusy runs fn until it succeeds, fails with something other than
// SQLite's busy or locked, or firstOpenPatience passes. When ctx ends
// first, the error names both the busy database and the context's end.
func retryBusy(ctx context.Context, fn func() error) error {
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		last = fn()
		if last != nil && !isBusy(last) {
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	}, backoff.WithBackOff(busyBackOff()), backoff.WithMaxElapsedTime(firstOpenPatience))
	if err != nil && last != nil && err != last {
		return errors.Join(last, err)
	}
	return err
}

// busyBackOff is the wait between tries of a busy database: 5ms, doubling
// up to 200ms, without jitter.
func busyBackOff() backoff.BackOff {
	return &backoff.ExponentialBackOff{InitialInterval: 5 * time.Millisecond, Multiplier: 2, MaxInterval: 200 * time.Millisecond}
}

// isBusy reports whether err is SQLite's "database is locked" or "table is
// locked".
func isBusy(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	return false
}

func escapePath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// stmtCacheSize is how many prepared statements each connection keeps for
// reuse: the queue's and the worker's statements, prepared once per
// connection instead of on every call.
const stmtCacheSize = 64

// dsn builds the go-sqlite3 connection string: WAL so that readers never
// block the writer, a busy timeout so that writers queue instead of failing,
// BEGIN IMMEDIATE for every transaction so that a transaction takes the
// write lock before it reads what it is going to change, and the driver's
// cache of prepared statements.
func dsn(path string) string {
	return fmt.Sprintf("file:%s?_journal_mode=WAL&_busy_timeout=%d&_txlock=immediate&_foreign_keys=off&_synchronous=NORMAL&_stmt_cache_size=%d",
		escapePath(path), busyTimeout.Milliseconds(), stmtCacheSize)
}

// roDSN is dsn for a connection that never writes: it sets no journal mode,
// which would need the write lock.
func roDSN(path string) string {
	return fmt.Sprintf("file:%s?mode=ro&_busy_timeout=%d&_foreign_keys=off", escapePath(path), busyTimeout.Milliseconds())
}

// Close closes the database.
func (q *DB) Close() error {
	q.Queue.Close() //nolint:errcheck // it never fails
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("close kg database %s: %w", q.path, err)
	}
	return nil
}

// Ping checks that the database answers.
func (q *DB) Ping(ctx context.Context) error {
	if err := q.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping kg database %s: %w", q.path, err)
	}
	return nil
}

// Path returns the file the queue was opened from, or the URL of its
// PostgreSQL database with the password redacted.
func (q *DB) Path() string { return q.path }

// ReadOnly reports whether the queue was opened read-only.
func (q *DB) ReadOnly() bool { return q.readOnly }

// SchemaVersion reports the schema version recorded in the database.
func (q *DB) SchemaVersion(ctx context.Context) (int, error) {
	return queue.SchemaVersion(ctx, q.db)
}

// EnqueueDocuments queues the crawled documents contentIDs for KG
// processing at priority and returns their new items' ids, in the order
// given. A content id without a crawled_content row is refused with an
// InputError naming it, and then nothing is queued: the worker could only
// skip such an item.
func (q *DB) EnqueueDocuments(ctx context.Context, priority int, contentIDs ...int64) ([]int64, error) {
	if len(contentIDs) == 0 {
		return nil, &config.FieldError{Field: "CONTENT_ID", Value: "", Rule: "give one or more crawled_content ids"}
	}
	for _, c := range contentIDs {
		if c <= 0 {
			return nil, &config.FieldError{Field: "CONTENT_ID", Value: strconv.FormatInt(c, 10), Rule: "must be a positive whole number"}
		}
	}
	if q.readOnly {
		return nil, fmt.Errorf("enqueue: %w", ErrReadOnly)
	}
	ids := make([]int64, 0, len(contentIDs))
	err := q.WithTx(ctx, func(tx *sql.Tx) error {
		now := queue.Stamp(q.Now())
		for _, c := range contentIDs {
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM crawled_content WHERE id = ?", c).Scan(&n); err != nil {
				return fmt.Errorf("enqueue content_id %d: %w", c, err)
			}
			if n == 0 {
				return &config.FieldError{Field: "CONTENT_ID", Value: strconv.FormatInt(c, 10), Rule: "has no crawled_content row: only a stored document can be queued"}
			}
			var id int64
			if err := tx.QueryRowContext(ctx, "INSERT INTO kg_processing_queue(content_id, status, priority, queued_at, retry_count) VALUES (?, 'pending', ?, ?, 0) RETURNING id",
				c, priority, now).Scan(&id); err != nil {
				return fmt.Errorf("enqueue content_id %d: %w", c, err)
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// Content loads the crawled document contentID and its chunks in chunk
// order. It returns ErrContentNotFound when there is no such document and
// ErrInvalidContent when it breaks the KG service's request limits, which
// the service would answer with 422.
func (q *DB) Content(ctx context.Context, contentID int64) (*Content, error) {
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
		if !json.Valid([]byte(m)) || m[0] != '{' {
			return nil, fmt.Errorf("load content_id %d: %w: metadata is not a JSON object", contentID, ErrInvalidContent)
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
	if err := NewIngestRequest(c).Validate(); err != nil {
		return nil, fmt.Errorf("load content_id %d: %w: %v", contentID, ErrInvalidContent, err)
	}
	return c, nil
}

// resultSummary is what Complete stores in result_summary: the counts and
// the service's summary.
type resultSummary struct {
	EntitiesExtracted      int             `json:"entities_extracted"`
	RelationshipsExtracted int             `json:"relationships_extracted"`
	ProcessingTimeMS       float64         `json:"processing_time_ms"`
	Neo4jDocumentID        string          `json:"neo4j_document_id"`
	Summary                json.RawMessage `json:"summary"`
}

// Complete marks owner's item id completed and writes the KG service's
// result for its content in the same transaction, as the contract says: one
// chunk_entities row per entity per chunk appearance and one
// chunk_relationships row per relationship, replacing those of an earlier
// run for the same content; the crawled_content kg_* columns; the chunks'
// kg_processed flags; the item's result_summary. It returns ErrLeaseLost,
// and writes nothing, when owner no longer holds the item.
func (q *DB) Complete(ctx context.Context, owner string, id int64, res *IngestResult) error {
	if q.readOnly {
		return fmt.Errorf("complete item %d of %s: %w", id, owner, ErrReadOnly)
	}
	if res == nil {
		return fmt.Errorf("complete item %d of %s: no result", id, owner)
	}
	summary, err := json.Marshal(resultSummary{
		EntitiesExtracted:      res.EntitiesExtracted,
		RelationshipsExtracted: res.RelationshipsExtracted,
		ProcessingTimeMS:       res.ProcessingTimeMS,
		Neo4jDocumentID:        res.Neo4jDocumentID,
		Summary:                res.Summary,
	})
	if err != nil {
		return fmt.Errorf("complete item %d of %s: %w", id, owner, err)
	}
	now := queue.Stamp(q.Now())
	return q.Queue.Complete(ctx, owner, id, string(summary), func(tx *sql.Tx, contentID int64) error {
		return writeResult(ctx, tx, contentID, res, now)
	})
}

// Completion is one item's result for CompleteMany.
type Completion struct {
	ID     int64
	Result *IngestResult
}

// CompleteMany is Complete for several items of owner in one transaction:
// one commit for all of them. An item whose lease owner lost gets
// ErrLeaseLost in the returned slice, at its index, and the others are
// completed; any other error undoes the whole transaction and is returned.
func (q *DB) CompleteMany(ctx context.Context, owner string, items []Completion) ([]error, error) {
	if q.readOnly {
		return nil, fmt.Errorf("complete %d items of %s: %w", len(items), owner, ErrReadOnly)
	}
	summaries := make([]string, len(items))
	for i, c := range items {
		if c.Result == nil {
			return nil, fmt.Errorf("complete item %d of %s: no result", c.ID, owner)
		}
		b, err := json.Marshal(resultSummary{
			EntitiesExtracted:      c.Result.EntitiesExtracted,
			RelationshipsExtracted: c.Result.RelationshipsExtracted,
			ProcessingTimeMS:       c.Result.ProcessingTimeMS,
			Neo4jDocumentID:        c.Result.Neo4jDocumentID,
			Summary:                c.Result.Summary,
		})
		if err != nil {
			return nil, fmt.Errorf("complete item %d of %s: %w", c.ID, owner, err)
		}
		summaries[i] = string(b)
	}
	now := queue.Stamp(q.Now())
	var per []error
	err := q.WithTx(ctx, func(tx *sql.Tx) error {
		per = make([]error, len(items))
		for i, c := range items {
			contentID, err := q.CompleteTx(ctx, tx, owner, c.ID, summaries[i])
			if errors.Is(err, queue.ErrLeaseLost) {
				per[i] = fmt.Errorf("complete item %d of %s: %w", c.ID, owner, err)
				continue
			}
			if err != nil {
				return fmt.Errorf("complete item %d of %s: %w", c.ID, owner, err)
			}
			if err := writeResult(ctx, tx, contentID, c.Result, now); err != nil {
				return fmt.Errorf("complete item %d of %s: %w", c.ID, owner, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return per, nil
}

// The statements writeResult runs for each result.
const (
	insertEntity = `INSERT INTO chunk_entities(chunk_rowid, content_id, entity_text,
	entity_normalized, entity_type_primary, entity_type_sub1, entity_type_sub2, entity_type_sub3,
	confidence, offset_start, offset_end, neo4j_node_id, spans_multiple_chunks)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertRelationship = `INSERT INTO chunk_relationships(content_id, subject_entity,
	predicate, object_entity, confidence, context, neo4j_relationship_id, spans_chunks, chunk_rowids)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

func writeResult(ctx context.Context, tx *sql.Tx, contentID int64, res *IngestResult, now string) error {
	for _, table := range []string{"chunk_entities", "chunk_relationships"} {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE content_id = ?", contentID); err != nil {
			return fmt.Errorf("clear %s of content_id %d: %w", table, contentID, err)
		}
	}
	// Each statement is the connection's cached one (stmtCacheSize): a
	// statement prepared here would be prepared again for every result.
	for _, e := range res.Entities {
		for _, a := range e.ChunkAppearances {
			if _, err := tx.ExecContext(ctx, insertEntity, a.VectorRowID, contentID, e.Text, e.Normalized, e.TypePrimary,
				e.TypeSub1, e.TypeSub2, e.TypeSub3, e.Confidence,
				a.OffsetStart, a.OffsetEnd, e.Neo4jNodeID, e.SpansMultipleChunks); err != nil {
				return fmt.Errorf("write entity %q of content_id %d: %w", e.Text, contentID, err)
			}
		}
	}
	for _, r := range res.Relationships {
		rowids := r.ChunkRowIDs
		if rowids == nil {
			rowids = []int64{}
		}
		js, err := json.Marshal(rowids)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, insertRelationship, contentID, r.SubjectText, r.Predicate, r.ObjectText, r.Confidence,
			r.Context, r.Neo4jRelationshipID, r.SpansChunks, string(js)); err != nil {
			return fmt.Errorf("write relationship %q %q %q of content_id %d: %w",
				r.SubjectText, r.Predicate, r.ObjectText, contentID, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE crawled_content
SET kg_processed = TRUE, kg_entity_count = ?, kg_relationship_count = ?, kg_document_id = ?, kg_processed_at = ?
WHERE id = ?`, res.EntitiesExtracted, res.RelationshipsExtracted, res.Neo4jDocumentID, now, contentID); err != nil {
		return fmt.Errorf("mark content_id %d processed: %w", contentID, err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE content_chunks SET kg_processed = TRUE WHERE content_id = ?", contentID); err != nil {
		return fmt.Errorf("mark chunks of content_id %d processed: %w", contentID, err)
	}
	return nil
}
