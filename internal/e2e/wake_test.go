package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWorkersWakeOnAnotherProgramsCommit: inside kg-worker@.service's
// sandbox an idle worker has the kernel watch the queue database's
// directory (an inotify watch on its inode, seen in /proc/PID/fdinfo) and
// picks up items the sqlite3 shell writes into the queue table, as the
// crawler does, within a second, its poll interval a minute.
func TestWorkersWakeOnAnotherProgramsCommit(t *testing.T) {
	p := bootKGPool(t, "poll_interval = 60.0\n", 0)
	p.addContent(1, 3)
	p.startWorkers(1)
	pid := p.intProp(workerUnit(1), "MainPID")
	ino, err := strconv.ParseUint(strings.TrimSpace(p.must("stat", "-c", "%i", kgDir)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	watch := fmt.Sprintf(" ino:%x ", ino)
	fdinfo := fmt.Sprintf(`for f in /proc/%[1]d/fd/*; do
	[ "$(readlink "$f")" = anon_inode:inotify ] && cat "/proc/%[1]d/fdinfo/${f##*/}"
done; true`, pid)
	p.waitFor("the idle worker to watch "+kgDir, 15*time.Second, func() bool {
		return strings.Contains(p.must("sh", "-c", fdinfo), watch)
	})
	for id := 1; id <= 3; id++ {
		p.execSQL(fmt.Sprintf("INSERT INTO kg_processing_queue(content_id, status) VALUES (%d, 'pending')", id))
		wrote := time.Now()
		p.waitFor(fmt.Sprintf("item %d to be completed", id), 10*time.Second, func() bool {
			return p.queryInt(fmt.Sprintf("SELECT count(*) FROM kg_processing_queue WHERE content_id = %d AND status = 'completed'", id)) == 1
		})
		if took := time.Since(wrote); took > 2*time.Second {
			t.Errorf("item %d completed %s after sqlite3 wrote it; want within 2s, long before the 60s poll interval", id, took)
		}
		// The watch is held again once the worker idles.
		p.waitFor("the idle worker to watch "+kgDir+" again", 15*time.Second, func() bool {
			return strings.Contains(p.must("sh", "-c", fdinfo), watch)
		})
	}
	if pid2 := p.intProp(workerUnit(1), "MainPID"); pid2 != pid {
		t.Errorf("the worker was restarted: pid %d, was %d", pid2, pid)
	}
}
