package kgdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/queue"
)

// copyTables are the tables of a KG database, in the order CopyToPostgres
// copies them: the documents and chunks, the results, the queue and the
// worker reports. The schema version is the target's own.
var copyTables = []string{
	"crawled_content", "content_chunks", "chunk_entities", "chunk_relationships",
	"kg_processing_queue", "kg_workers", "kg_worker_reports",
}

// TableCopy is one table CopyToPostgres copied, with its row count, the
// same in the source and, once copied, in the target.
type TableCopy struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
}

// CopyReport is what CopyToPostgres did.
type CopyReport struct {
	Source string      `json:"source"`
	Target string      `json:"target"`
	Tables []TableCopy `json:"tables"`
	// Skipped are tables of the source that are not the KG database's:
	// they stay where they are.
	Skipped []string `json:"skipped_tables,omitempty"`
}

// ErrTargetNotEmpty means the PostgreSQL database of CopyToPostgres already
// holds KG rows: copying into it could mix two queues.
var ErrTargetNotEmpty = errors.New("target database is not empty")

// CopyToPostgres copies the SQLite KG database at srcPath, of the original
// system's shape or of any later schema version, into the PostgreSQL
// database at dstURL, in one transaction: the tables are created there (as
// Open does), every row of the KG tables is copied, the row counts of both
// sides are compared before the commit, and the id sequences are moved past
// the copied ids. The source is opened read-only, from one snapshot, and
// never changed. A target that already holds KG rows is refused with
// ErrTargetNotEmpty; nothing is then copied.
func CopyToPostgres(ctx context.Context, srcPath, dstURL string) (*CopyReport, error) {
	target := config.RedactURL(dstURL)
	if !queue.IsURL(dstURL) {
		return nil, fmt.Errorf("invalid target %s: must be a postgres:// or postgresql:// URL", target)
	}
	if _, err := os.Stat(srcPath); err != nil {
		return nil, fmt.Errorf("source queue database: %w", err)
	}
	src, err := sql.Open("sqlite3", roDSN(srcPath))
	if err != nil {
		return nil, fmt.Errorf("open %s read-only: %w", srcPath, err)
	}
	defer src.Close()
	srcTx, err := src.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", srcPath, err)
	}
	defer srcTx.Rollback() //nolint:errcheck // read-only
	have, err := sqliteTables(ctx, srcTx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", srcPath, err)
	}
	if !have["crawled_content"] || !have["kg_processing_queue"] {
		return nil, fmt.Errorf("%s is not a KG database: it has no crawled_content or kg_processing_queue table", srcPath)
	}

	dst, err := Open(ctx, dstURL)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	report := &CopyReport{Source: srcPath, Target: target}
	for _, table := range copyTables {
		var n int64
		if err := dst.db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			return nil, fmt.Errorf("count %s in %s: %w", table, target, err)
		}
		if n > 0 {
			return nil, fmt.Errorf("%w: %s holds %d rows in %s; queue migrate copies into an empty database only", ErrTargetNotEmpty, table, n, target)
		}
	}
	copying := map[string]bool{"kg_schema_version": true}
	err = dst.WithTx(ctx, func(tx *sql.Tx) error {
		for _, table := range copyTables {
			if !have[table] {
				continue
			}
			copying[table] = true
			n, err := copyTable(ctx, srcTx, tx, table)
			if err != nil {
				return fmt.Errorf("copy %s: %w", table, err)
			}
			var want, got int64
			if err := srcTx.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&want); err != nil {
				return err
			}
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&got); err != nil {
				return err
			}
			if want != got || n != want {
				return fmt.Errorf("copy %s: %d rows in the source, %d copied, %d in the target", table, want, n, got)
			}
			if err := advanceSequences(ctx, tx, table); err != nil {
				return fmt.Errorf("copy %s: %w", table, err)
			}
			report.Tables = append(report.Tables, TableCopy{Table: table, Rows: got})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy %s to %s (nothing was committed): %w", srcPath, target, err)
	}
	for name := range have {
		if !copying[name] {
			report.Skipped = append(report.Skipped, name)
		}
	}
	sort.Strings(report.Skipped)
	return report, nil
}

func sqliteTables(ctx context.Context, tx *sql.Tx) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		out[name] = true
	}
	return out, rows.Err()
}

// copyTable copies the rows of table, the columns both sides have, and
// returns how many it wrote.
func copyTable(ctx context.Context, src, dst *sql.Tx, table string) (int64, error) {
	rows, err := src.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return 0, err
	}
	var srcCols []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return 0, err
		}
		srcCols = append(srcCols, name)
	}
	rows.Close()
	types, err := postgresColumns(ctx, dst, table)
	if err != nil {
		return 0, err
	}
	var cols []string
	for _, c := range srcCols {
		if _, ok := types[c]; ok {
			cols = append(cols, c)
		}
	}
	if len(cols) == 0 {
		return 0, nil
	}
	// Names come from the two schemas, never from input.
	list := strings.Join(cols, ", ")
	stmt, err := dst.PrepareContext(ctx, "INSERT INTO "+table+"("+list+") VALUES ("+strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")+")")
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	rows, err = src.QueryContext(ctx, "SELECT "+list+" FROM "+table)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		args := make([]any, len(cols))
		for i, v := range vals {
			if args[i], err = toPostgres(v, types[cols[i]]); err != nil {
				return n, fmt.Errorf("row %d, column %s: %w", n+1, cols[i], err)
			}
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return n, fmt.Errorf("row %d: %w", n+1, err)
		}
		n++
	}
	return n, rows.Err()
}

// postgresColumns maps the columns of table to their PostgreSQL types.
func postgresColumns(ctx context.Context, tx *sql.Tx, table string) (map[string]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ?`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		out[name] = typ
	}
	return out, rows.Err()
}

// toPostgres converts a value SQLite stored, of whatever storage class its
// dynamic typing allowed, to what the PostgreSQL column of type typ takes.
func toPostgres(v any, typ string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case "boolean":
		switch v := v.(type) {
		case int64:
			return v != 0, nil
		case float64:
			return v != 0, nil
		case bool:
			return v, nil
		case string, []byte:
			s := strings.ToLower(strings.TrimSpace(fmt.Sprintf("%s", v)))
			switch s {
			case "1", "true", "t", "yes":
				return true, nil
			case "0", "false", "f", "no", "":
				return false, nil
			}
			return nil, fmt.Errorf("%q is not a boolean", s)
		}
	case "text":
		switch v := v.(type) {
		case []byte:
			return string(v), nil
		case time.Time:
			return queue.Stamp(v), nil
		case int64:
			return strconv.FormatInt(v, 10), nil
		case float64:
			return strconv.FormatFloat(v, 'g', -1, 64), nil
		}
	case "timestamp without time zone":
		switch v := v.(type) {
		case time.Time:
			return v.UTC(), nil
		case string, []byte:
			var t queue.NullTime
			if err := t.Scan(v); err != nil {
				return nil, err
			}
			if t.Time.IsZero() {
				return nil, nil
			}
			return t.Time, nil
		case int64:
			return time.Unix(v, 0).UTC(), nil
		}
	}
	if b, ok := v.([]byte); ok {
		return string(b), nil
	}
	return v, nil
}

// advanceSequences moves each id sequence of table past the largest id
// copied, so that new rows get new ids.
func advanceSequences(ctx context.Context, tx *sql.Tx, table string) error {
	rows, err := tx.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ? AND column_default LIKE 'nextval(%'`, table)
	if err != nil {
		return err
	}
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return err
		}
		cols = append(cols, c)
	}
	rows.Close()
	for _, c := range cols {
		if _, err := tx.ExecContext(ctx, "SELECT setval(pg_get_serial_sequence(?, ?), COALESCE((SELECT max("+c+") FROM "+table+"), 0) + 1, false)", table, c); err != nil {
			return fmt.Errorf("advance the sequence of %s.%s: %w", table, c, err)
		}
	}
	return nil
}
