package kgdb

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/kato-manager/kato-manager/queue"
)

// SchemaVersion is the version of the schema this package writes. It is
// recorded in the kg_schema_version table once every migration up to it has
// been applied.
const SchemaVersion = 6

// migrations are the KG database's steps: the queue's own, from package
// queue, beside the document and result tables of this package.
var migrations = []queue.Migration{
	{Version: 1, Name: "content and queue tables", Apply: func(ctx context.Context, tx *sql.Tx) error {
		if err := createTables(ctx, tx); err != nil {
			return err
		}
		return queue.CreateTable(ctx, tx)
	}},
	{Version: 2, Name: "queue leases and retry backoff", Apply: func(ctx context.Context, tx *sql.Tx) error {
		if err := queue.AddLeaseColumns(ctx, tx); err != nil {
			return err
		}
		return addResultIndexes(ctx, tx)
	}},
	{Version: 3, Name: "worker reports", Apply: createWorkerReports},
	{Version: 4, Name: "queue notifications", Apply: queue.AddNotify},
	{Version: 5, Name: "worker reports per host", Apply: createHostReports},
	{Version: 6, Name: "queue claim order index", Apply: queue.AddClaimIndex},
}

// createHostReports adds the report table keyed by host and worker number,
// for workers on many hosts sharing one PostgreSQL database; the reports of
// kg_workers, all from one host, are carried over with the host unknown
// ("") until their workers next report. kg_workers itself is left as it is.
func createHostReports(ctx context.Context, tx *sql.Tx) error {
	const stmt = `CREATE TABLE IF NOT EXISTS kg_worker_reports (
	host TEXT NOT NULL,
	worker_id INTEGER NOT NULL,
	owner TEXT NOT NULL,
	pid INTEGER NOT NULL,
	started_at TIMESTAMP NOT NULL,
	updated_at TIMESTAMP NOT NULL,
	stats TEXT NOT NULL,
	service TEXT NOT NULL,
	PRIMARY KEY (host, worker_id)
)`
	if _, err := tx.ExecContext(ctx, queue.DDL(ctx, stmt)); err != nil {
		return fmt.Errorf("create kg_worker_reports: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO kg_worker_reports(host, worker_id, owner, pid, started_at, updated_at, stats, service)
SELECT '', worker_id, owner, pid, started_at, updated_at, stats, service FROM kg_workers WHERE true
ON CONFLICT DO NOTHING`); err != nil {
		return fmt.Errorf("carry over worker reports: %w", err)
	}
	return nil
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
	if _, err := tx.ExecContext(ctx, queue.DDL(ctx, stmt)); err != nil {
		return fmt.Errorf("create kg_workers: %w", err)
	}
	return nil
}

// baseSchema is the shape of the document and result tables as the system
// this package replaces created them (the KG service contract gives it);
// existing databases already hold them.
const baseSchema = `
CREATE TABLE IF NOT EXISTS crawled_content (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	url TEXT UNIQUE NOT NULL,
	title TEXT,
	content TEXT,
	markdown TEXT,
	content_hash TEXT,
	timestamp DATETIME DEFAULT CURRENT_TIMESTAMP,
	added_by_session TEXT,
	retention_policy TEXT DEFAULT 'permanent',
	tags TEXT,
	metadata TEXT,
	kg_processed BOOLEAN DEFAULT 0,
	kg_entity_count INTEGER DEFAULT 0,
	kg_relationship_count INTEGER DEFAULT 0,
	kg_document_id TEXT,
	kg_processed_at DATETIME
);
CREATE TABLE IF NOT EXISTS content_chunks (
	rowid INTEGER PRIMARY KEY,
	content_id INTEGER NOT NULL REFERENCES crawled_content(id) ON DELETE CASCADE,
	chunk_index INTEGER NOT NULL,
	chunk_text TEXT NOT NULL,
	char_start INTEGER NOT NULL,
	char_end INTEGER NOT NULL,
	word_count INTEGER,
	kg_processed BOOLEAN DEFAULT 0,
	created_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS chunk_entities (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	chunk_rowid INTEGER NOT NULL REFERENCES content_chunks(rowid),
	content_id INTEGER NOT NULL REFERENCES crawled_content(id),
	entity_text TEXT NOT NULL,
	entity_normalized TEXT,
	entity_type_primary TEXT,
	entity_type_sub1 TEXT,
	entity_type_sub2 TEXT,
	entity_type_sub3 TEXT,
	confidence REAL,
	offset_start INTEGER,
	offset_end INTEGER,
	neo4j_node_id TEXT,
	spans_multiple_chunks BOOLEAN DEFAULT 0,
	created_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS chunk_relationships (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	content_id INTEGER NOT NULL REFERENCES crawled_content(id),
	subject_entity TEXT NOT NULL,
	predicate TEXT NOT NULL,
	object_entity TEXT NOT NULL,
	confidence REAL,
	context TEXT,
	neo4j_relationship_id TEXT,
	spans_chunks BOOLEAN DEFAULT 0,
	chunk_rowids TEXT,
	created_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_content_chunks_content_id ON content_chunks(content_id);
CREATE INDEX IF NOT EXISTS idx_chunk_entities_chunk ON chunk_entities(chunk_rowid);
`

func createTables(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, queue.DDL(ctx, baseSchema)); err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	return nil
}

// addResultIndexes adds the indexes the write-back and the chunk loads use.
func addResultIndexes(ctx context.Context, tx *sql.Tx) error {
	const indexes = `
CREATE INDEX IF NOT EXISTS idx_chunk_entities_content ON chunk_entities(content_id);
CREATE INDEX IF NOT EXISTS idx_chunk_relationships_content ON chunk_relationships(content_id);
CREATE INDEX IF NOT EXISTS idx_content_chunks_content ON content_chunks(content_id, chunk_index);
`
	if _, err := tx.ExecContext(ctx, indexes); err != nil {
		return fmt.Errorf("create result indexes: %w", err)
	}
	return nil
}
