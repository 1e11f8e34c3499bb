package kgworker_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
)

// The shared helpers of the KG database's tests (internal/testkit/kgdbtest).
type backend = kgdbtest.Backend

var (
	backends    = kgdbtest.Backends
	eachBackend = kgdbtest.EachBackend
	openQueue   = kgdbtest.Open
	openQueueAt = kgdbtest.OpenAt
	rawDB       = kgdbtest.RawDB
	mustExec    = kgdbtest.MustExec
	queryInt    = kgdbtest.QueryInt
	addContent  = kgdbtest.AddContent
	enqueue     = kgdbtest.Enqueue
	claim       = kgdbtest.Claim
	get         = kgdbtest.Get
	waitFor     = kgdbtest.WaitFor
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// serviceBackend is the one backend of the tests about the KG service
// rather than the database: its faults and its contract.
var serviceBackend = backends[0]

// createFile makes a SQLite file holding schema, as another program would.
func createFile(t *testing.T, schema string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kg.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if schema != "" {
		if _, err := db.Exec(schema); err != nil {
			t.Fatalf("create old database: %v", err)
		}
	}
	return path
}
