package kgworker

import (
	"context"
	"database/sql"
	"fmt"
)

// SchemaVersion is the version of the queue schema this package writes. It is
// recorded in the kg_schema_version table once every migration up to it has
// been applied.
const SchemaVersion = 3

// migration is one additive, idempotent step of the schema. Each step must be
// safe to run on a database where it was already applied by hand or by an
// earlier run that did not get to record its version.
type migration struct {
	version int
	name    string
	apply   func(ctx context.Context, tx *sql.Tx) error
}

var migrations = []migration{
	{version: 1, name: "content and queue tables", apply: createTables},
	{version: 2, name: "queue leases and retry backoff", apply: addLeaseColumns},
	{version: 3, name: "worker reports", apply: createWorkerReports},
}

// createWorkerReports adds the table where each worker process publishes
// its counters, so that `kato-manager workers stats` can add them up.
func createWorkerReports(ctx context.Context, tx *sql.Tx) error {
	const stmt = `CREATE TABLE IF NOT EXISTS kg_workers (
	worker_id INTEGER PRIMARY KEY,
	owner TEXT NOT NULL,
	pid INTEGER NOT NULL,
	started_at TIMESTAMP NOT NULL,
	updated_at TIMESTAMP NOT NULL,
	stats TEXT NOT NULL,
	service TEXT NOT NULL
)`
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create kg_workers: %w", err)
	}
	return nil
}

// baseSchema is the shape of the tables as the system this package replaces
// created them; existing databases already hold it.
const baseSchema = `
CREATE TABLE IF NOT EXISTS crawled_content (
	id INTEGER PRIMARY KEY,
	url TEXT,
	title TEXT,
	markdown TEXT,
	metadata TEXT,
	kg_processed INTEGER DEFAULT 0,
	kg_entity_count INTEGER DEFAULT 0,
	kg_relationship_count INTEGER DEFAULT 0,
	kg_document_id TEXT,
	kg_processed_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS kg_processing_queue (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	content_id INTEGER NOT NULL REFERENCES crawled_content(id),
	status TEXT DEFAULT 'pending',
	priority INTEGER DEFAULT 1,
	queued_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
	processing_started_at TIMESTAMP,
	processed_at TIMESTAMP,
	retry_count INTEGER DEFAULT 0,
	error_message TEXT,
	result_summary TEXT,
	skipped_reason TEXT
);
CREATE INDEX IF NOT EXISTS idx_kg_queue_status_priority
	ON kg_processing_queue(status, priority, queued_at);
CREATE TABLE IF NOT EXISTS content_chunks (
	rowid INTEGER PRIMARY KEY,
	content_id INTEGER,
	chunk_index INTEGER,
	chunk_text TEXT,
	char_start INTEGER,
	char_end INTEGER,
	word_count INTEGER,
	kg_processed INTEGER DEFAULT 0,
	created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS chunk_entities (
	chunk_rowid INTEGER,
	content_id INTEGER,
	entity_text TEXT,
	entity_normalized TEXT,
	entity_type_primary TEXT,
	entity_type_sub1 TEXT,
	entity_type_sub2 TEXT,
	entity_type_sub3 TEXT,
	confidence REAL,
	offset_start INTEGER,
	offset_end INTEGER,
	neo4j_node_id TEXT,
	spans_multiple_chunks INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunk_relationships (
	content_id INTEGER,
	subject_entity TEXT,
	predicate TEXT,
	object_entity TEXT,
	confidence REAL,
	context TEXT,
	neo4j_relationship_id TEXT,
	spans_chunks INTEGER DEFAULT 0,
	chunk_rowids TEXT
);
`

func createTables(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, baseSchema); err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	return nil
}

// leaseColumns are the columns this package adds to kg_processing_queue.
// Timestamps are UTC text in timeFormat so that they compare as strings.
var leaseColumns = []struct{ name, decl string }{
	{"lease_owner", "TEXT"},
	{"lease_expires_at", "TIMESTAMP"},
	{"next_attempt_at", "TIMESTAMP"},
}

func addLeaseColumns(ctx context.Context, tx *sql.Tx) error {
	have, err := tableColumns(ctx, tx, "kg_processing_queue")
	if err != nil {
		return err
	}
	for _, c := range leaseColumns {
		if have[c.name] {
			continue
		}
		// Names and declarations are constants of this package, never input.
		stmt := "ALTER TABLE kg_processing_queue ADD COLUMN " + c.name + " " + c.decl
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("add column kg_processing_queue.%s: %w", c.name, err)
		}
	}
	const indexes = `
CREATE INDEX IF NOT EXISTS idx_kg_queue_lease ON kg_processing_queue(status, lease_expires_at);
CREATE INDEX IF NOT EXISTS idx_chunk_entities_content ON chunk_entities(content_id);
CREATE INDEX IF NOT EXISTS idx_chunk_relationships_content ON chunk_relationships(content_id);
CREATE INDEX IF NOT EXISTS idx_content_chunks_content ON content_chunks(content_id, chunk_index);
`
	if _, err := tx.ExecContext(ctx, indexes); err != nil {
		return fmt.Errorf("create lease indexes: %w", err)
	}
	return nil
}

// tableColumns returns the set of column names of table.
func tableColumns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, err)
	}
	defer rows.Close()
	cols := make(map[string]bool)
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", table, err)
		}
		cols[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("read columns of %s: table does not exist", table)
	}
	return cols, nil
}

// migrate brings the database up to SchemaVersion. Every step runs in its own
// write transaction, so processes opening the same file at once apply each
// step exactly once between them.
func migrate(ctx context.Context, db *sql.DB) error {
	const versionTable = `CREATE TABLE IF NOT EXISTS kg_schema_version (
	version INTEGER PRIMARY KEY,
	name TEXT,
	applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)`
	if _, err := db.ExecContext(ctx, versionTable); err != nil {
		return fmt.Errorf("create kg_schema_version: %w", err)
	}
	for _, m := range migrations {
		if err := applyMigration(ctx, db, m); err != nil {
			return fmt.Errorf("migrate to schema version %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM kg_schema_version WHERE version = ?", m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if err := m.apply(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO kg_schema_version(version, name) VALUES (?, ?)", m.version, m.name); err != nil {
		return err
	}
	return tx.Commit()
}

// schemaVersion reports the highest migration recorded in the database.
func schemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(version) FROM kg_schema_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}
