package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestQueueActionsAsRoot: priority, requeue (of documents and --all),
// delete and clear done by root
// through the service user's child, and every bad input refused with exit
// 2 naming field, value and rule, the queue unchanged.
func TestQueueActionsAsRoot(t *testing.T) {
	configText, kgDir := queueDirFor(t)
	storeDocuments(t, filepath.Join(kgDir, "kg.db"), 7, 8, 9)
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
