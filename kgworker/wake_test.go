package kgworker_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
)

// TestWorkerWakesOnAnotherProgramsCommit: an idle worker on SQLite picks up
// an item another program wrote into the queue table with the sqlite3
// shell, as a crawler does, at once. Its poll interval is a minute and its
// fallback look at the file an hour: only the kernel's report of the
// change to the file can wake it this fast.
func TestWorkerWakesOnAnotherProgramsCommit(t *testing.T) {
	shell, err := exec.LookPath("sqlite3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sqlite3 is not installed; packaging/deps.sh installs it")
		}
		t.Skip("sqlite3 is not installed")
	}
	r := newRig(t, backends[0], kgdb.WithChangeCheck(time.Hour))
	addContent(t, r.db, 1, 1)
	r.start(t, kgworker.Opts{PollInterval: time.Minute, ProgressInterval: time.Minute})
	time.Sleep(500 * time.Millisecond) // the worker has found nothing and idles

	for i := range 3 {
		cmd := exec.Command(shell, "-bail", "-cmd", ".timeout 5000", r.path,
			"INSERT INTO kg_processing_queue(content_id, status) VALUES (1, 'pending') RETURNING id")
		out, err := cmd.CombinedOutput()
		wrote := time.Now()
		if err != nil {
			t.Fatalf("sqlite3: %v: %s", err, out)
		}
		id := strings.TrimSpace(string(out))
		var status string
		for time.Since(wrote) < 5*time.Second {
			if err := r.db.QueryRow("SELECT status FROM kg_processing_queue WHERE id = ?", id).Scan(&status); err != nil {
				t.Fatal(err)
			}
			if status != "pending" {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if took := time.Since(wrote); status == "pending" || took > time.Second {
			t.Fatalf("item %d (%s) is %s %s after sqlite3 wrote it; want picked up within 1s, long before the 1m poll interval", i, id, status, took)
		}
		waitFor(t, 5*time.Second, "item completed", func() bool {
			return queryInt(t, r.db, "SELECT count(*) FROM kg_processing_queue WHERE status = 'pending' OR status = 'processing'") == 0
		})
	}
}
