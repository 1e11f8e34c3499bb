package queue

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kato-manager/kato-manager/internal/redact"
)

// Dialect is the SQL dialect of a queue database: SQLite, the embedded
// default, or PostgreSQL, a server that workers on many hosts share.
type Dialect int

// The dialects.
const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgresql"
	}
	return "sqlite"
}

// NotifyChannel is the channel a PostgreSQL queue NOTIFYs when an item
// becomes pending: enqueued, released, requeued, retried, or put back when
// its lease expired. Idle workers LISTEN on it.
const NotifyChannel = "kg_queue_pending"

// IsURL reports whether s names a PostgreSQL database (a postgres:// or
// postgresql:// URL) rather than a SQLite file.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// pgDriver is the database/sql driver of a PostgreSQL queue: pgx's, with
// the queue's SQL, written with ? placeholders as SQLite takes them,
// rewritten to PostgreSQL's $1, $2, ... on the way. Every statement of the
// queue and of its callers is then one text for both dialects.
type pgDriver struct {
	config *pgx.ConnConfig
	inner  driver.Connector
}

func (d *pgDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("open a PostgreSQL queue database with queue.OpenPostgres")
}

func (d *pgDriver) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := d.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{Conn: c.(*stdlib.Conn)}, nil
}

func (d *pgDriver) Driver() driver.Driver { return d }

// pgConn is pgx's connection with the placeholders rewritten; everything
// else, transactions included, is pgx's own.
type pgConn struct{ *stdlib.Conn }

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(rebind(query))
}

func (c *pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, rebind(query))
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, rebind(query), args)
}

func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, rebind(query), args)
}

// rebind turns each ? placeholder of query into $1, $2, ... and each ?NNN
// into $NNN, leaving quoted strings and identifiers alone.
func rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '"':
			quote = ch
		case ch == '?':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			if j > i+1 {
				b.WriteString("$" + query[i+1:j])
				i = j - 1
				continue
			}
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// OpenPostgres opens the PostgreSQL database at rawURL for a queue. The
// sessions run in UTC, so that the TIMESTAMP columns hold UTC as the SQLite
// text timestamps do. Errors never show the password.
func OpenPostgres(ctx context.Context, rawURL string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		// pgx's message may quote the URL: give only the redacted one.
		return nil, fmt.Errorf("invalid database URL %s: %s", redact.URL(rawURL), parseErrorReason(err))
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["timezone"] = "UTC"
	d := &pgDriver{config: cfg, inner: stdlib.GetConnector(*cfg)}
	db := sql.OpenDB(d)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s: %s", redact.URL(rawURL), scrub(err.Error(), cfg.Password))
	}
	return db, nil
}

// parseErrorReason is the part of a pgx parse error after the URL it
// quotes, when it quotes one.
func parseErrorReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return "not a PostgreSQL connection URL"
}

func scrub(msg, password string) string {
	if password == "" {
		return msg
	}
	return strings.ReplaceAll(msg, password, "xxxxx")
}

// DialectOf returns the dialect of db: Postgres for a database opened by
// OpenPostgres, SQLite otherwise.
func DialectOf(db *sql.DB) Dialect {
	if _, ok := db.Driver().(*pgDriver); ok {
		return Postgres
	}
	return SQLite
}

type dialectKey struct{}

// DialectFrom returns the dialect of the database a migration step runs
// against; Migrate puts it in the step's context.
func DialectFrom(ctx context.Context) Dialect {
	d, _ := ctx.Value(dialectKey{}).(Dialect)
	return d
}

var (
	ddlAutoID     = regexp.MustCompile(`(?i)\bINTEGER PRIMARY KEY( AUTOINCREMENT)?`)
	ddlReferences = regexp.MustCompile(`(?i)\s+REFERENCES\s+\w+\s*\(\w+\)(\s+ON DELETE CASCADE)?`)
	ddlDatetime   = regexp.MustCompile(`(?i)\bDATETIME\b`)
	ddlBoolFalse  = regexp.MustCompile(`(?i)\bBOOLEAN DEFAULT 0\b`)
	ddlReal       = regexp.MustCompile(`(?i)\bREAL\b`)
	ddlInteger    = regexp.MustCompile(`\bINTEGER\b`)
)

// DDL renders a CREATE statement written in SQLite's dialect, the shape
// the original system's tables have, for the database of ctx's migration.
// For PostgreSQL: ids become BIGSERIAL keys, DATETIME TIMESTAMP (UTC),
// BOOLEAN DEFAULT 0 BOOLEAN DEFAULT FALSE, REAL DOUBLE PRECISION, INTEGER
// BIGINT, and REFERENCES clauses are left out: the original ran SQLite
// with foreign keys off, and the queue keeps that behaviour on both.
func DDL(ctx context.Context, stmt string) string {
	if DialectFrom(ctx) != Postgres {
		return stmt
	}
	stmt = ddlAutoID.ReplaceAllString(stmt, "BIGSERIAL PRIMARY KEY")
	stmt = ddlReferences.ReplaceAllString(stmt, "")
	stmt = ddlDatetime.ReplaceAllString(stmt, "TIMESTAMP")
	stmt = ddlBoolFalse.ReplaceAllString(stmt, "BOOLEAN DEFAULT FALSE")
	stmt = ddlReal.ReplaceAllString(stmt, "DOUBLE PRECISION")
	return ddlInteger.ReplaceAllString(stmt, "BIGINT")
}

// AddNotify makes a PostgreSQL queue NOTIFY NotifyChannel whenever an item
// becomes pending, by whatever writes it (this package, an operator's SQL,
// the crawler that enqueues documents). On SQLite it does nothing: workers
// there watch the file's data_version.
func AddNotify(ctx context.Context, tx *sql.Tx) error {
	if DialectFrom(ctx) != Postgres {
		return nil
	}
	stmt := `
CREATE OR REPLACE FUNCTION kg_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('` + NotifyChannel + `', '');
	RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER kg_queue_pending_notify
	AFTER INSERT OR UPDATE OF status, next_attempt_at ON kg_processing_queue
	FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION kg_queue_notify();`
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create queue notification trigger: %w", err)
	}
	return nil
}
