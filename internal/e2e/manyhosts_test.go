package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// fleet is three hosts on one network: kato1 with the queue in PostgreSQL
// (a password for the network, testbed.SharedQueue) and the KG service test
// double, kato2 and kato3 with KG workers against both.
type fleet struct {
	t          *testing.T
	db, w2, w3 *machine
	url        string // the queue database, as the workers reach it
	serviceURL string
}

// bootFleet boots the three hosts and prepares them: PostgreSQL and the
// KG service double (with latencyMS per document) on kato1, and on kato2
// and kato3 a kato.toml whose [kg] has db_url, service_url and kgSettings.
func bootFleet(t *testing.T, kgSettings string, latencyMS int) *fleet {
	t.Helper()
	lan := sdharness.NetworkForTest(t, testSubnet)
	f := &fleet{t: t, db: bootMachine(t), w2: bootMachine(t), w3: bootMachine(t)}
	joinNetwork(t, lan, f.db, "10.77.0.2", "kato1")
	joinNetwork(t, lan, f.w2, "10.77.0.3", "kato2")
	joinNetwork(t, lan, f.w3, "10.77.0.4", "kato3")
	url, err := testbed.SharedQueue(t.Context(), f.db.Machine, netip.MustParseAddr("10.77.0.2"), netip.MustParsePrefix(testSubnet), "kato1")
	if err != nil {
		t.Fatal(err)
	}
	f.url = url
	// The network gets in with the password only.
	wrong := strings.Replace(f.url, ":"+testbed.QueueSecret+"@", ":wrong@", 1)
	if r := f.w2.exec("psql", "-X", "-At", "-d", wrong, "-c", "SELECT 1"); r.code == 0 || !strings.Contains(r.stderr, "password authentication failed") {
		t.Fatalf("kato2 logged in to the queue database with a wrong password: %s", r)
	}
	f.serviceURL = "http://kato1:8088"
	f.db.must("systemd-run", "--unit=kgservice", "--", kgServiceFake, "--listen", "10.77.0.2:8088", "--latency-ms", strconv.Itoa(latencyMS))
	conf := testbed.Config + fmt.Sprintf("\n[kg]\ndb_url = %q\nservice_url = %q\n", f.url, f.serviceURL) + kgSettings
	for _, m := range []*machine{f.w2, f.w3} {
		if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		m.mustKM("install-units")
	}
	f.w2.waitFor("the KG service double on kato1", 20*time.Second, func() bool {
		_, err := f.w2.get(f.serviceURL + "/health")
		return err == nil
	})
	// The first command that opens the queue makes its tables.
	if out := f.w2.mustKM("queue", "stats"); !strings.Contains(out, "total 0") {
		t.Fatalf("queue stats on a new database: %s", out)
	}
	return f
}

// sql runs SQL on the shared queue database, from kato1 over the network
// with the workers' URL, and returns its unaligned, tuples-only output.
func (f *fleet) sql(query string) string {
	f.t.Helper()
	return strings.TrimSpace(f.db.must("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", f.url, "-c", query))
}

// sqlInt runs SQL that selects one number.
func (f *fleet) sqlInt(query string) int {
	f.t.Helper()
	out := f.sql(query)
	n, err := strconv.Atoi(out)
	if err != nil {
		f.t.Fatalf("%q: %q is not a number", query, out)
	}
	return n
}

// addContent inserts documents from..to with chunksOf(id) chunks each, as
// addContent of the SQLite pool does.
func (f *fleet) addContent(from, to int) {
	f.t.Helper()
	f.sql(fmt.Sprintf(`
INSERT INTO crawled_content(id, url, title, markdown, metadata)
SELECT i, 'https://example.com/docs/' || i, 'Document ' || i,
	'# Document ' || i || chr(10) || 'Body of document ' || i || ', long enough for the KG service''s limits.',
	json_build_object('source', 'e2e', 'n', i)::text FROM generate_series(%[1]d, %[2]d) AS n(i);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count)
SELECT c.id, k.i, 'Chunk ' || k.i || ' of document ' || c.id, k.i * 100, k.i * 100 + 99, 5
FROM crawled_content c JOIN generate_series(0, 2) AS k(i) ON k.i < c.id %% 3 + 1
WHERE c.id BETWEEN %[1]d AND %[2]d;`, from, to))
}

// statusCounts returns the queue's items by status.
func (f *fleet) statusCounts() map[string]int {
	f.t.Helper()
	out := map[string]int{}
	for _, line := range strings.Split(f.sql("SELECT status, count(*) FROM kg_processing_queue GROUP BY status"), "\n") {
		status, n, ok := strings.Cut(line, "|")
		if !ok {
			continue
		}
		out[status], _ = strconv.Atoi(n)
	}
	return out
}

// ingested returns how many times the KG service double ingested each
// document.
func (f *fleet) ingested() map[string]int {
	f.t.Helper()
	body, err := f.w2.get(f.serviceURL + "/ingested")
	if err != nil {
		f.t.Fatal(err)
	}
	var byID map[string]int
	if err := json.Unmarshal([]byte(body), &byID); err != nil {
		f.t.Fatalf("GET /ingested: %v\n%s", err, body)
	}
	return byID
}

// TestManyHostsDrain: workers on two hosts drain 2,000 documents from one
// PostgreSQL queue on a third while a worker is killed with SIGKILL and a
// whole worker host loses its PID 1; every document is completed exactly
// once in the database, and workers stats on kato2 shows both hosts'
// workers and which are its own.
func TestManyHostsDrain(t *testing.T) {
	const items = 2000
	f := bootFleet(t, "lease_seconds = 5.0\npoll_interval = 1.0\n", 20)
	f.addContent(1, items)
	args := []string{"queue", "enqueue"}
	for i := 1; i <= items; i++ {
		args = append(args, strconv.Itoa(i))
	}
	f.w2.mustKM(args...)
	if c := f.statusCounts(); c["pending"] != items {
		t.Fatalf("after enqueue: %v", c)
	}

	start := time.Now()
	f.w2.mustKM("workers", "start", "-n", "3")
	f.w3.mustKM("workers", "start", "-n", "3")
	// kato3's workers, as their leases name them, read before the run so
	// that nothing stands between the moment and the crash.
	var owners []string
	for i := 1; i <= 3; i++ {
		pid := strings.TrimSpace(f.w3.must("systemctl", "show", "-P", "MainPID", workerUnit(i)))
		owners = append(owners, fmt.Sprintf("'kg-worker@%d/%s@kato3'", i, pid))
	}

	completed := func() int { return f.sqlInt("SELECT count(*) FROM kg_processing_queue WHERE status = 'completed'") }
	f.w2.waitFor("a tenth of the documents", 2*time.Minute, func() bool { return completed() >= items/10 })
	// kill -9 of one worker on kato2; systemd restarts it.
	pid := strings.TrimSpace(f.w2.must("systemctl", "show", "-P", "MainPID", workerUnit(2)))
	f.w2.must("kill", "-KILL", pid)
	f.w2.waitFor("a third of the documents", 2*time.Minute, func() bool { return completed() >= items/3 })
	// kato3 loses its PID 1 with everything on it, in the middle of its
	// batches; kato2 goes on alone until kato3 is back.
	// What the dead processes held stays theirs until the lease expires;
	// it is read as soon as kato3 is down, before kato2 may reclaim it.
	var orphans []string
	err := f.w3.CrashWith(t.Context(), 90*time.Second, func() {
		orphans = strings.Fields(f.sql(fmt.Sprintf("SELECT content_id FROM kg_processing_queue WHERE status = 'processing' AND lease_owner IN (%s)",
			strings.Join(owners, ", "))))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kato3 crashed holding documents %v", orphans)
	if len(orphans) == 0 {
		t.Fatal("kato3's workers held nothing when it crashed")
	}

	f.w2.waitFor("systemd to restart the killed worker", 30*time.Second, func() bool {
		restarted := strings.TrimSpace(f.w2.must("systemctl", "show", "-P", "MainPID", workerUnit(2)))
		return restarted != pid && restarted != "0" && f.w2.activeState(workerUnit(2)) == "active"
	})
	var c map[string]int
	f.w2.waitFor("the queue to drain", 3*time.Minute, func() bool {
		c = f.statusCounts()
		return c["pending"] == 0 && c["processing"] == 0
	})
	t.Logf("drained %d documents over two hosts in %s", items, time.Since(start).Round(time.Millisecond))
	if c["completed"] != items || len(c) != 1 {
		t.Fatalf("after draining: %v", c)
	}
	// Exactly once in the database: one item per document, completed, with
	// one set of results (two entity rows and one relationship per chunk).
	bad := f.sqlInt(`SELECT count(*) FROM crawled_content c WHERE
	(SELECT count(*) FROM kg_processing_queue q WHERE q.content_id = c.id AND q.status = 'completed') != 1 OR
	(SELECT count(*) FROM kg_processing_queue q WHERE q.content_id = c.id) != 1 OR
	(SELECT count(*) FROM chunk_entities e WHERE e.content_id = c.id) != 2 * (c.id % 3 + 1) OR
	(SELECT count(*) FROM chunk_relationships r WHERE r.content_id = c.id) != c.id % 3 + 1 OR
	c.kg_processed IS NOT TRUE OR c.kg_document_id != 'doc-' || c.id`)
	if bad != 0 {
		t.Errorf("%d documents were not completed exactly once", bad)
	}
	// The crashed host's items came back once their lease expired: one
	// attempt spent on it.
	if n := f.sqlInt(fmt.Sprintf("SELECT count(*) FROM kg_processing_queue WHERE content_id IN (%s) AND retry_count = 1 AND status = 'completed'",
		strings.Join(orphans, ", "))); n != len(orphans) {
		t.Errorf("%d of the %d documents kato3 held were completed after one expired lease", n, len(orphans))
	}
	ing := f.ingested()
	for id := 1; id <= items; id++ {
		if ing[strconv.Itoa(id)] < 1 {
			t.Errorf("document %d never reached the KG service", id)
		}
	}

	// workers stats on kato2 shows its own workers from systemd and kato3's,
	// back after the crash, from their reports.
	var stats struct {
		TotalWorkers  int `json:"total_workers"`
		WorkerDetails []struct {
			Host     string `json:"host"`
			Local    bool   `json:"local"`
			WorkerID int    `json:"worker_id"`
			Running  bool   `json:"running"`
		} `json:"worker_details"`
	}
	f.w2.waitFor("workers stats on kato2 to show both hosts' workers", 30*time.Second, func() bool {
		if err := json.Unmarshal([]byte(f.w2.mustKM("workers", "stats", "--json")), &stats); err != nil {
			t.Fatal(err)
		}
		own, theirs := 0, 0
		for _, w := range stats.WorkerDetails {
			switch {
			case w.Host == "kato2" && w.Local && w.Running:
				own++
			case w.Host == "kato3" && !w.Local && w.Running:
				theirs++
			}
		}
		return own == 3 && theirs == 3 && len(stats.WorkerDetails) == 6 && stats.TotalWorkers == 6
	})
	text := f.w2.mustKM("workers", "stats")
	for _, want := range []string{"worker 0 (kg-worker@1.service) on this host: running true", "worker 2 (kg-worker@3.service) on host kato3: running true"} {
		if !strings.Contains(text, want) {
			t.Errorf("workers stats on kato2 lacks %q:\n%s", want, text)
		}
	}
}
