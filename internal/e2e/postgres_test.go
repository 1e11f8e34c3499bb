package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// TestWorkersOnPostgres: with kg.db_url naming a PostgreSQL database (a
// cluster inside the machine, on a unix socket), four kg-worker@ units
// started by the CLI create the tables, drain the queue through a kill -9
// of one of them, and complete every document exactly once, none left in
// processing; workers stats and health name this host for every worker.
func TestWorkersOnPostgres(t *testing.T) {
	const items = 600
	p := &kgPool{machine: bootMachine(t)}
	ctx := context.Background()
	pg, err := pgtest.StartInMachine(ctx, p.Machine, "")
	if err != nil {
		t.Fatal(err)
	}
	dbURL, err := pg.CreateDatabase(ctx, "kg")
	if err != nil {
		t.Fatal(err)
	}
	sql := func(statements string) string {
		t.Helper()
		out, err := pg.SQL(ctx, "kg", statements)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	count := func(query string) int {
		t.Helper()
		n, err := strconv.Atoi(sql(query))
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	p.mustKM("install-units")
	conf := testbed.Config + "\n[kg]\nlease_seconds = 3\ndb_url = \"" + dbURL + "\"\n"
	if err := p.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := p.mustKM("queue", "stats"); !strings.Contains(out, "total 0") {
		t.Fatalf("queue stats on a new PostgreSQL database: %s", out)
	}
	if p.exists(kgDB) {
		t.Errorf("a SQLite file was made at %s with kg.db_url set", kgDB)
	}
	sql(fmt.Sprintf(`INSERT INTO crawled_content(id, url, title, markdown, metadata)
SELECT i, 'https://example.com/docs/' || i, 'Document ' || i,
	'# Document ' || i || chr(10) || 'Body of document ' || i || ', long enough for the KG service''s limits.',
	json_build_object('source', 'e2e', 'n', i)::text FROM generate_series(1, %d) AS i;
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count)
SELECT c.id, k.i, 'Chunk ' || k.i || ' of document ' || c.id, k.i * 100, k.i * 100 + 99, 5
FROM crawled_content c JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2) k ON k.i < c.id %% 3 + 1;`, items))
	p.enqueue(1, items)
	// 50 ms a document: the drain lasts long enough to kill a worker
	// that holds items.
	p.startKGService(50)
	p.startWorkers(4)
	p.waitFor("worker 2 to hold items", time.Minute, func() bool {
		return count("SELECT count(*) FROM kg_processing_queue WHERE status = 'processing' AND lease_owner LIKE 'kg-worker@2/%'") > 0
	})
	p.must("systemctl", "kill", "--signal=SIGKILL", workerUnit(2))
	p.waitFor("the workers to drain the queue", 3*time.Minute, func() bool {
		return count("SELECT count(*) FROM kg_processing_queue WHERE status IN ('pending', 'processing')") == 0
	})
	if n := count("SELECT count(*) FROM kg_processing_queue WHERE status = 'completed'"); n != items {
		t.Errorf("%d items completed, want %d", n, items)
	}
	if n := count("SELECT count(*) FROM kg_processing_queue"); n != items {
		t.Errorf("%d queue items, want one per document (%d)", n, items)
	}
	if n := count("SELECT count(*) FROM crawled_content WHERE NOT kg_processed OR kg_entity_count = 0"); n != 0 {
		t.Errorf("%d documents not marked processed", n)
	}
	// One set of results per document: two entity rows and one
	// relationship per chunk, never a second set.
	if n := count(`SELECT count(*) FROM crawled_content c WHERE
	(SELECT count(*) FROM chunk_entities e WHERE e.content_id = c.id) != 2 * (SELECT count(*) FROM content_chunks k WHERE k.content_id = c.id)
	OR (SELECT count(*) FROM chunk_relationships r WHERE r.content_id = c.id) != (SELECT count(*) FROM content_chunks k WHERE k.content_id = c.id)`); n != 0 {
		t.Errorf("%d documents have other than one set of results", n)
	}
	p.waitFor("systemd to restart the killed worker", 30*time.Second, func() bool {
		return p.activeState(workerUnit(2)) == "active" && p.intProp(workerUnit(2), "NRestarts") == 1
	})

	host := strings.TrimSpace(p.must("hostname"))
	var s statsJSON
	p.waitFor("the workers' reports to name their host", 20*time.Second, func() bool {
		s = p.stats()
		return len(s.WorkerDetails) == 4 && s.WorkerDetails[3].Host == host
	})
	for _, w := range s.WorkerDetails {
		if w.Host != host || !w.Local || !w.Running {
			t.Errorf("workers stats worker %d: host %q local %v running %v, want this host %q", w.WorkerID, w.Host, w.Local, w.Running, host)
		}
	}
	if out := p.mustKM("workers", "health"); strings.Count(out, host+" (this host)") != 4 {
		t.Errorf("workers health does not mark the 4 workers as this host's:\n%s", out)
	}
	if n := count("SELECT count(*) FROM kg_worker_reports WHERE host = '" + host + "'"); n != 4 {
		t.Errorf("%d worker reports from this host, want 4", n)
	}

	// Without the database, this host's health is still told.
	p.must("systemctl", "stop", "pgtest.service")
	if r := p.km("workers", "health"); r.code != 0 || strings.Count(r.stdout, host+" (this host)") != 4 || !strings.Contains(r.stderr, "other hosts' workers not shown") {
		t.Errorf("workers health without the database: %s", r)
	}
}

// TestRootQueueOnPeerAuthPostgres is the finding that with the README's
// set-up on the database host (a socket URL, role kato, peer
// authentication) the workers worked while root's `queue …` and `workers
// stats` failed: root connected as itself. Root's commands, and serve
// under kato-manager.service, reach the database as kato, with the URL the
// workers use, through kato-queue.socket.
func TestRootQueueOnPeerAuthPostgres(t *testing.T) {
	p := &kgPool{machine: bootMachine(t)}
	ctx := context.Background()
	pg, err := pgtest.StartInMachine(ctx, p.Machine, "")
	if err != nil {
		t.Fatal(err)
	}
	p.mustKM("install-units")
	for _, s := range []string{"CREATE ROLE kato LOGIN", "CREATE DATABASE kato_kg OWNER kato"} {
		if _, err := pg.SQL(ctx, "postgres", s); err != nil {
			t.Fatal(err)
		}
	}
	// Peer authentication for everyone but the test's own postgres.
	p.must("sh", "-c", "printf 'local all postgres trust\\nlocal all all peer\\n' > /var/lib/pgtest/data/pg_hba.conf")
	if _, err := pg.SQL(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	dbURL := "postgres:///kato_kg?host=" + pg.SocketDir + "&port=5432"
	conf := testbed.Config + "\n[kg]\ndb_url = \"" + dbURL + "\"\n"
	if err := p.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// The server takes the reload at once; a moment's grace all the same.
	r := p.km("queue", "stats")
	for deadline := time.Now().Add(10 * time.Second); r.code != 0 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		r = p.km("queue", "stats")
	}
	if r.code != 0 || !strings.Contains(r.stdout, "total 0") {
		t.Fatalf("queue stats on a new database: %s", r)
	}
	if _, err := pg.SQL(ctx, "kato_kg", `INSERT INTO crawled_content(id, url, title, markdown, metadata)
SELECT i, 'https://example.com/docs/' || i, 'Document ' || i,
	'# Document ' || i || chr(10) || 'Body of document ' || i || ', long enough for the KG service''s limits.',
	json_build_object('source', 'e2e', 'n', i)::text FROM generate_series(1, 3) AS i;
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count)
SELECT i, 0, 'Chunk 0 of document ' || i, 0, 99, 5 FROM generate_series(1, 3) AS i`); err != nil {
		t.Fatal(err)
	}
	p.enqueue(1, 3)
	p.startKGService(0)
	p.startWorkers(1)
	var done string
	for deadline := time.Now().Add(time.Minute); done != "3" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		done, _ = pg.SQL(ctx, "kato_kg", "SELECT count(*) FROM kg_processing_queue WHERE status = 'completed'")
	}
	if done != "3" {
		items, _ := pg.SQL(ctx, "kato_kg", "SELECT id, status, error_message FROM kg_processing_queue")
		t.Fatalf("the worker, as kato, did not complete the 3 items:\n%s\n%s", items, p.exec("journalctl", "-u", workerUnit(1), "--no-pager", "-n", "30").stdout)
	}
	if s := p.stats(); s.QueueSize.Completed != 3 || len(s.WorkerDetails) != 1 {
		t.Errorf("workers stats: queue %+v, %d workers; want 3 completed by 1 worker", s.QueueSize, len(s.WorkerDetails))
	}
	if out := p.mustKM("queue", "list", "--status", "completed"); strings.Count(out, "completed") != 3 {
		t.Errorf("queue list:\n%s", out)
	}
	// Each went through kato-queue.socket: root itself never became kato.
	if n := strings.TrimSpace(p.must("systemctl", "show", "-P", "NAccepted", "kato-queue.socket")); n == "0" || n == "" {
		t.Errorf("kato-queue.socket accepted %q connections", n)
	}
	// serve under kato-manager.service, which cannot become kato, shows
	// the queue through the socket too.
	if err := p.WriteFile("/etc/kato/serve.token", []byte(dashboardToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.must("systemctl", "start", "kato-manager.service")
	var metrics string
	p.waitFor("kato-manager.service to show the queue", 15*time.Second, func() bool {
		metrics, _ = p.getWithToken("http://127.0.0.1:9090/metrics")
		return strings.Contains(metrics, `kg_queue_items{status="completed"} 3`)
	})
	p.must("systemctl", "stop", "kato-manager.service")
	// And each helper ended with its command.
	p.waitFor("the queue helpers to end", 10*time.Second, func() bool {
		return strings.TrimSpace(p.exec("pgrep", "-f", "--", "__queue-db").stdout) == ""
	})
}
