package queue

import (
	"context"
	"database/sql"
	"fmt"
)

// Migration is one additive, idempotent step of a schema. Each step must be
// safe to run on a database where it was already applied by hand or by an
// earlier run that did not get to record its version.
type Migration struct {
	Version int
	Name    string
	Apply   func(ctx context.Context, tx *sql.Tx) error
}

// Migrate applies steps, in order, that the database has not recorded in
// kg_schema_version yet. Every step runs in its own write transaction, so
// processes migrating the same file at once apply each step exactly once
// between them (on PostgreSQL, under a transaction-level advisory lock). The
// queue's own steps are CreateTable, AddLeaseColumns and AddNotify; the
// caller places them in its list beside its own tables. A step learns the
// database's dialect from DialectFrom(ctx) and renders its CREATE
// statements with DDL.
func Migrate(ctx context.Context, db *sql.DB, steps []Migration) error {
	ctx = context.WithValue(ctx, dialectKey{}, DialectOf(db))
	const versionTable = `CREATE TABLE IF NOT EXISTS kg_schema_version (
	version INTEGER PRIMARY KEY,
	name TEXT,
	applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)`
	if err := createVersionTable(ctx, db, versionTable); err != nil {
		return fmt.Errorf("create kg_schema_version: %w", err)
	}
	for _, m := range steps {
		if err := applyMigration(ctx, db, m); err != nil {
			return fmt.Errorf("migrate to schema version %d (%s): %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// createVersionTable runs stmt; on PostgreSQL under the migrations'
// advisory lock, since concurrent CREATE TABLE IF NOT EXISTS statements
// there can collide in the catalogue.
func createVersionTable(ctx context.Context, db *sql.DB, stmt string) error {
	if DialectFrom(ctx) != Postgres {
		_, err := db.ExecContext(ctx, stmt)
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", migrationLockKey); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return err
	}
	return tx.Commit()
}

func applyMigration(ctx context.Context, db *sql.DB, m Migration) error {
	var n int
	// Look first without the write lock: an up-to-date database, the usual
	// case, is then opened without writing anything.
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM kg_schema_version WHERE version = ?", m.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if DialectFrom(ctx) == Postgres {
		// Concurrent CREATE ... IF NOT EXISTS can collide in PostgreSQL's
		// catalogue: migrating processes take turns.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", migrationLockKey); err != nil {
			return err
		}
	}
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM kg_schema_version WHERE version = ?", m.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if err := m.Apply(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO kg_schema_version(version, name) VALUES (?, ?)", m.Version, m.Name); err != nil {
		return err
	}
	return tx.Commit()
}

// migrationLockKey is the advisory lock migrations of a PostgreSQL queue
// database take.
const migrationLockKey int64 = 0x6b675f71756575 // "kg_queue"

// SchemaVersion reports the highest migration recorded in the database, 0
// when none is.
func SchemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(version) FROM kg_schema_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// CreateTable creates the queue table as the system this package replaces
// created it; existing databases already hold it.
func CreateTable(ctx context.Context, tx *sql.Tx) error {
	const stmt = `
CREATE TABLE IF NOT EXISTS kg_processing_queue (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	content_id INTEGER NOT NULL REFERENCES crawled_content(id),
	status TEXT DEFAULT 'pending',
	priority INTEGER DEFAULT 1,
	queued_at DATETIME DEFAULT CURRENT_TIMESTAMP,
	processing_started_at DATETIME,
	processed_at DATETIME,
	retry_count INTEGER DEFAULT 0,
	error_message TEXT,
	result_summary TEXT,
	skipped_reason TEXT
);
CREATE INDEX IF NOT EXISTS idx_kg_queue_status_priority
	ON kg_processing_queue(status, priority, queued_at);
CREATE INDEX IF NOT EXISTS idx_kg_queue_content ON kg_processing_queue(content_id);`
	if _, err := tx.ExecContext(ctx, DDL(ctx, stmt)); err != nil {
		return fmt.Errorf("create kg_processing_queue: %w", err)
	}
	return nil
}

// leaseColumns are the columns this package adds to kg_processing_queue.
// Timestamps are UTC text in TimeFormat so that they compare as strings.
var leaseColumns = []struct{ name, decl string }{
	{"lease_owner", "TEXT"},
	{"lease_expires_at", "TIMESTAMP"},
	{"next_attempt_at", "TIMESTAMP"},
}

// AddLeaseColumns adds the lease and backoff columns and their index.
func AddLeaseColumns(ctx context.Context, tx *sql.Tx) error {
	have, err := TableColumns(ctx, tx, "kg_processing_queue")
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
	if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS idx_kg_queue_lease ON kg_processing_queue(status, lease_expires_at)`); err != nil {
		return fmt.Errorf("create lease index: %w", err)
	}
	return nil
}

// AddClaimIndex adds the index a claim reads the pending items from in the
// order it takes them: highest priority first, then oldest id.
func AddClaimIndex(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS idx_kg_queue_claim ON kg_processing_queue(status, priority DESC, id)`); err != nil {
		return fmt.Errorf("create claim index: %w", err)
	}
	return nil
}

// TableColumns returns the set of column names of table, in the dialect
// of ctx's migration.
func TableColumns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	query := "SELECT name FROM pragma_table_info(?)"
	if DialectFrom(ctx) == Postgres {
		query = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?"
	}
	rows, err := tx.QueryContext(ctx, query, table)
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
