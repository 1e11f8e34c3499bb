package queue

import (
	"context"
	"testing"
)

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"UPDATE t SET a = ?, b = ? WHERE id = ?", "UPDATE t SET a = $1, b = $2 WHERE id = $3"},
		{"SELECT '?', \"a?\" FROM t WHERE x = ?", "SELECT '?', \"a?\" FROM t WHERE x = $1"},
		{"VALUES (?1, ?1, ?2)", "VALUES ($1, $1, $2)"},
		{`SELECT 'it''s ?' WHERE x LIKE ? ESCAPE '\'`, `SELECT 'it''s ?' WHERE x LIKE $1 ESCAPE '\'`},
	} {
		if got := rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDDLForPostgres(t *testing.T) {
	ctx := context.WithValue(context.Background(), dialectKey{}, Postgres)
	in := `CREATE TABLE IF NOT EXISTS x (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	rowid2 INTEGER PRIMARY KEY,
	content_id INTEGER NOT NULL REFERENCES crawled_content(id) ON DELETE CASCADE,
	at DATETIME DEFAULT CURRENT_TIMESTAMP,
	done BOOLEAN DEFAULT 0,
	score REAL
)`
	want := `CREATE TABLE IF NOT EXISTS x (
	id BIGSERIAL PRIMARY KEY,
	rowid2 BIGSERIAL PRIMARY KEY,
	content_id BIGINT NOT NULL,
	at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
	done BOOLEAN DEFAULT FALSE,
	score DOUBLE PRECISION
)`
	if got := DDL(ctx, in); got != want {
		t.Errorf("DDL =\n%s\nwant\n%s", got, want)
	}
	if got := DDL(context.Background(), in); got != in {
		t.Errorf("DDL for SQLite changed the statement:\n%s", got)
	}
}
