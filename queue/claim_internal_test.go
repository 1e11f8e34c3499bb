package queue

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// TestClaimReadsOnlyWhatItTakes: with the claim index, SQLite reads the
// pending items in the claim's order and stops at its limit; without it,
// every claim sorts all the pending items of the top priority.
func TestClaimReadsOnlyWhatItTakes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		index     bool
		wantSorts bool
	}{
		{"without the claim index", false, true},
		{"with the claim index", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "q.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			steps := []Migration{
				{Version: 1, Name: "queue", Apply: CreateTable},
				{Version: 2, Name: "leases", Apply: AddLeaseColumns},
			}
			if tc.index {
				steps = append(steps, Migration{Version: 3, Name: "claim index", Apply: AddClaimIndex})
			}
			ctx := context.Background()
			if err := Migrate(ctx, db, steps); err != nil {
				t.Fatal(err)
			}
			rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+claimPick+" LIMIT 5", Stamp(time.Time{}))
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			sorts := strings.Contains(strings.Join(plan, "\n"), "TEMP B-TREE")
			if sorts != tc.wantSorts {
				t.Errorf("the claim sorts: %v, want %v; plan:\n%s", sorts, tc.wantSorts, strings.Join(plan, "\n"))
			}
		})
	}
}
