package main

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
)

// hostileError is KG error text as a hostile or broken service can make
// it: escape sequences that retitle the window and clear the screen, a
// carriage return, a C1 control, a bidirectional override, a tab and a
// newline that would break the table.
const hostileError = "kg ingest failed: answered 500: \x1b]0;owned\x07\x1b[2J\rfake\u009b31m\u202eevil\tcell\nrow"

// TestQueueListEscapesErrorText: queue list's table shows the error text
// escaped, one row per item, and --json keeps it exact.
func TestQueueListEscapesErrorText(t *testing.T) {
	configText, kgDir := queueDirFor(t)
	kgdbtest.StoreDocuments(t, filepath.Join(kgDir, "kg.db"), 7)
	if code, _, stderr := runCLI(t, configText, "queue", "enqueue", "7"); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr)
	}
	path := filepath.Join(kgDir, "kg.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE kg_processing_queue SET status = 'failed', error_message = ?, lease_owner = ?`,
		hostileError, "kg-worker@1\x1b[8m"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Give the files back to the service user, as the workers leave them.
	entries, _ := os.ReadDir(kgDir)
	for _, e := range entries {
		if err := os.Chown(filepath.Join(kgDir, e.Name()), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}

	code, stdout, stderr := runCLI(t, configText, "queue", "list")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	for _, bad := range []string{"\x1b", "\x07", "\r", "\u009b", "\u202e", "\t"} {
		if strings.Contains(stdout, bad) {
			t.Errorf("queue list printed %q raw:\n%q", bad, stdout)
		}
	}
	if lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n"); len(lines) != 2 {
		t.Errorf("queue list printed %d lines for one item:\n%s", len(lines), stdout)
	}
	for _, want := range []string{`\x1b]0;owned\x07\x1b[2J\x0dfake\u009b31m\u202eevil\x09cell\x0arow`, `kg-worker@1\x1b[8m`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("queue list lacks %s:\n%s", want, stdout)
		}
	}

	code, stdout, stderr = runCLI(t, configText, "queue", "list", "--json")
	if code != 0 {
		t.Fatalf("list --json: exit %d: %s", code, stderr)
	}
	var items []struct {
		ErrorMessage string `json:"error_message"`
	}
	if err := json.Unmarshal([]byte(stdout), &items); err != nil || len(items) != 1 || items[0].ErrorMessage != hostileError {
		t.Errorf("queue list --json = %s (%v), want the error text exactly", stdout, err)
	}
	if strings.Contains(stdout, "\x1b") {
		t.Errorf("queue list --json printed ESC raw")
	}
}
