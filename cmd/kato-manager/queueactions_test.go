package main

import (
	"database/sql"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
	"github.com/kato-manager/kato-manager/queue"
)

// TestQueueActionsAsRoot: priority, requeue (of documents and --all),
// delete and clear done by root
// through the service user's child, and every bad input refused with exit
// 2 naming field, value and rule, the queue unchanged.
func TestQueueActionsAsRoot(t *testing.T) {
	configText, kgDir := queueDirFor(t)
	kgdbtest.StoreDocuments(t, filepath.Join(kgDir, "kg.db"), 7, 8, 9)
	if code, _, stderr := runCLI(t, configText, "queue", "enqueue", "7", "8", "9"); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr)
	}
	list := func() map[int64]map[string]any {
		t.Helper()
		code, stdout, stderr := runCLI(t, configText, "queue", "list", "--json")
		if code != 0 {
			t.Fatalf("list: exit %d: %s", code, stderr)
		}
		var items []map[string]any
		if err := json.Unmarshal([]byte(stdout), &items); err != nil {
			t.Fatal(err)
		}
		out := map[int64]map[string]any{}
		for _, it := range items {
			out[int64(it["id"].(float64))] = it
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"queue", "priority", "--", "-1", "1"}, "invalid PRIORITY -1: must be a whole number, zero or more"},
		{[]string{"queue", "priority", "-1", "1"}, "unknown shorthand flag"},
		{[]string{"queue", "priority", "5", "99"}, "invalid ITEM_ID 99: no such queue item"},
		{[]string{"queue", "priority", "5"}, "queue priority takes a PRIORITY and one or more ITEM_IDs"},
		{[]string{"queue", "delete", "1", "99"}, "invalid ITEM_ID 99: no such queue item"},
		{[]string{"queue", "delete", "x"}, "invalid ITEM_ID x: must be a positive whole number"},
		{[]string{"queue", "requeue", "7", "70"}, "invalid CONTENT_ID 70: has no queue item"},
		{[]string{"queue", "enqueue", "8", "70"}, "invalid CONTENT_ID 70: has no crawled_content row"},
		{[]string{"queue", "requeue", "--priority", "-2", "7"}, "invalid --priority -2: must be zero or more"},
		{[]string{"queue", "requeue", "--all", "--priority", "-2"}, "invalid --priority -2: must be zero or more"},
		{[]string{"queue", "requeue", "--all", "7"}, "queue requeue takes CONTENT_IDs or --all, not both"},
		{[]string{"queue", "requeue"}, "queue requeue takes one or more crawled_content ids, or --all"},
		{[]string{"queue", "clear", "--status", "processing"}, "invalid --status processing: must be one of pending, completed, failed, skipped"},
		{[]string{"queue", "clear", "--status", "done"}, "invalid --status done"},
		{[]string{"queue", "clear"}, `invalid --status "": must be one of`},
	} {
		code, _, stderr := runCLI(t, configText, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	items := list()
	if len(items) != 3 || items[1]["priority"] != float64(1) {
		t.Fatalf("refused actions changed the queue: %v", items)
	}
	if code, stdout, stderr := runCLI(t, configText, "queue", "priority", "5", "1", "2"); code != 0 || !strings.Contains(stdout, "2 item(s) now at priority 5") {
		t.Fatalf("priority: exit %d: %s %s", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, configText, "queue", "requeue", "7"); code != 0 || !strings.Contains(stdout, "0 document(s) queued again (1 already pending") {
		t.Fatalf("requeue of a pending document: exit %d: %s %s", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, configText, "queue", "requeue", "--all"); code != 0 || !strings.Contains(stdout, "0 document(s) queued again") {
		t.Fatalf("requeue --all of pending documents: exit %d: %s %s", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, configText, "queue", "delete", "3"); code != 0 || !strings.Contains(stdout, "1 item(s) deleted") {
		t.Fatalf("delete: exit %d: %s %s", code, stdout, stderr)
	}
	items = list()
	if len(items) != 2 || items[1]["priority"] != float64(5) || items[2]["priority"] != float64(5) {
		t.Fatalf("after priority and delete: %v", items)
	}
	if code, stdout, stderr := runCLI(t, configText, "queue", "clear", "--status", "pending"); code != 0 || !strings.Contains(stdout, "2 pending item(s) deleted") {
		t.Fatalf("clear: exit %d: %s %s", code, stdout, stderr)
	}
	if items := list(); len(items) != 0 {
		t.Fatalf("after clear: %v", items)
	}
}

// TestQueueClearOlderThanAsRoot: `queue clear --status failed --older-than
// 7d`, done by root through the service user's child, deletes the failed
// items that failed more than 7 days ago and nothing else; bad input is
// refused with exit 2, the queue unchanged.
func TestQueueClearOlderThanAsRoot(t *testing.T) {
	configText, kgDir := queueDirFor(t)
	dbPath := filepath.Join(kgDir, "kg.db")
	kgdbtest.StoreDocuments(t, dbPath, 7, 8, 9, 10)
	if code, _, stderr := runCLI(t, configText, "queue", "enqueue", "7", "8", "9", "10"); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr)
	}
	db, err := sql.Open("sqlite3", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Item 1 failed 10 days ago, item 2 an hour ago, item 3 completed 10
	// days ago; item 4 stays pending.
	for _, u := range []struct {
		id     int
		status string
		ago    time.Duration
	}{{1, "failed", 240 * time.Hour}, {2, "failed", time.Hour}, {3, "completed", 240 * time.Hour}} {
		if _, err := db.Exec("UPDATE kg_processing_queue SET status = ?, processed_at = ? WHERE id = ?",
			u.status, queue.Stamp(time.Now().Add(-u.ago)), u.id); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		t.Helper()
		var n int
		if err := db.QueryRow("SELECT count(*) FROM kg_processing_queue").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"queue", "clear", "--status", "failed", "--older-than", "0d"}, "invalid --older-than 0d: must be a whole number of days (7d) or a duration (36h, 90m), more than zero"},
		{[]string{"queue", "clear", "--status", "failed", "--older-than", "week"}, "invalid --older-than week"},
		{[]string{"queue", "clear", "--status", "processing", "--older-than", "7d"}, "invalid --status processing: must be one of pending, completed, failed, skipped"},
	} {
		code, _, stderr := runCLI(t, configText, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if n := count(); n != 4 {
		t.Fatalf("refused clears changed the queue: %d items", n)
	}
	code, stdout, stderr := runCLI(t, configText, "queue", "clear", "--status", "failed", "--older-than", "7d", "--yes")
	if code != 0 || !strings.Contains(stdout, "1 failed item(s) older than 7d deleted") {
		t.Fatalf("clear --older-than: exit %d: %s %s", code, stdout, stderr)
	}
	var left []int
	rows, err := db.Query("SELECT id FROM kg_processing_queue ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		rows.Scan(&id) //nolint:errcheck // checked below by value
		left = append(left, id)
	}
	if !slices.Equal(left, []int{2, 3, 4}) {
		t.Fatalf("after clear --older-than: items %v, want 2, 3 and 4", left)
	}
}
