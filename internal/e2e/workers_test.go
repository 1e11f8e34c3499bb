package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
	"github.com/kato-manager/kato-manager/kgworker"
)

// The queue database is at its default place: /var/lib/kato/kg, a
// directory of kato's that is not sticky, so root's kato-manager can open
// the files the workers create there even where fs.protected_regular is 2.
const (
	kgDir = "/var/lib/kato/kg"
	kgDB  = kgDir + "/kg.db"
	// kgService is the KG service test double's address, the default
	// kg.service_url's port.
	kgService = "http://127.0.0.1:8088"
)

// kgPool is a machine prepared for the KG worker pool: the units installed,
// the KG service test double running as kgservice.service and an empty
// queue database owned by kato.
type kgPool struct {
	*machine
}

// bootKGPool boots a machine whose kato.toml has a [kg] section with
// db_path set to kgDB plus the given settings (TOML lines), and starts the
// KG service test double with the given latency.
func bootKGPool(t *testing.T, kgSettings string, latencyMS int) *kgPool {
	t.Helper()
	p := &kgPool{machine: bootMachine(t)}
	p.mustKM("install-units")
	conf := testbed.Config + "\n[kg]\n" + kgSettings
	if err := p.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// The CLI creates the database and gives it to kato, as the workers
	// run.
	if out := p.mustKM("queue", "stats"); !strings.Contains(out, "total 0") {
		t.Fatalf("queue stats on a new database: %s", out)
	}
	p.startKGService(latencyMS)
	return p
}

// startKGService runs the KG service test double as kgservice.service.
func (p *kgPool) startKGService(latencyMS int) {
	p.t.Helper()
	p.must("systemd-run", "--unit=kgservice", "--", kgServiceFake, "--listen", "127.0.0.1:8088", "--latency-ms", strconv.Itoa(latencyMS))
	p.waitFor("the KG service test double", 10*time.Second, func() bool {
		_, err := p.get(kgService + "/health")
		return err == nil
	})
}

// query runs SQL on the queue database inside the machine and returns the
// rows. The sqlite3 shell is used rather than opening the file from the
// host: SQLite resolves the /proc/PID/root link to a path that only exists
// inside the machine's mount namespace.
func (p *kgPool) query(sql string) []map[string]any {
	p.t.Helper()
	out := p.must("sqlite3", "-json", "-cmd", ".timeout 10000", kgDB, sql)
	if strings.TrimSpace(out) == "" {
		return nil
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		p.t.Fatalf("sqlite3 %q: %v\n%s", sql, err, out)
	}
	return rows
}

// queryInt runs SQL that selects one number.
func (p *kgPool) queryInt(sql string) int {
	p.t.Helper()
	out := strings.TrimSpace(p.must("sqlite3", "-cmd", ".timeout 10000", kgDB, sql))
	n, err := strconv.Atoi(out)
	if err != nil {
		p.t.Fatalf("sqlite3 %q: %q is not a number", sql, out)
	}
	return n
}

// execSQL runs SQL statements that return nothing.
func (p *kgPool) execSQL(sql string) {
	p.t.Helper()
	p.must("sqlite3", "-cmd", ".timeout 10000", kgDB, sql)
}

// chunksOf is how many chunks addContent gives document id.
func chunksOf(id int) int { return id%3 + 1 }

// addContent inserts crawled documents from..to with chunksOf(id) chunks
// each, as the crawler leaves them for KG processing.
func (p *kgPool) addContent(from, to int) {
	p.t.Helper()
	p.execSQL(fmt.Sprintf(`
WITH RECURSIVE n(i) AS (SELECT %[1]d UNION ALL SELECT i + 1 FROM n WHERE i < %[2]d)
INSERT INTO crawled_content(id, url, title, markdown, metadata)
SELECT i, 'https://example.com/docs/' || i, 'Document ' || i,
	'# Document ' || i || char(10) || 'Body of document ' || i || ', long enough for the KG service''s limits.',
	json_object('source', 'e2e', 'n', i) FROM n;
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count)
SELECT c.id, k.i, 'Chunk ' || k.i || ' of document ' || c.id, k.i * 100, k.i * 100 + 99, 5
FROM crawled_content c JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2) k ON k.i < c.id %% 3 + 1
WHERE c.id BETWEEN %[1]d AND %[2]d;`, from, to))
}

// enqueue queues documents from..to with `kato-manager queue enqueue`.
func (p *kgPool) enqueue(from, to int) {
	p.t.Helper()
	args := []string{"queue", "enqueue"}
	for i := from; i <= to; i++ {
		args = append(args, strconv.Itoa(i))
	}
	out := p.mustKM(args...)
	if n := strings.Count(out, "queued content "); n != to-from+1 {
		p.t.Fatalf("queue enqueue %d..%d reported %d items:\n%s", from, to, n, out)
	}
}

// counts reads the number of items per status straight from the database.
func (p *kgPool) counts() kgworker.Counts {
	p.t.Helper()
	var c kgworker.Counts
	for _, r := range p.query("SELECT status, count(*) AS n FROM kg_processing_queue GROUP BY status") {
		n := int(r["n"].(float64))
		c.Total += n
		switch kgworker.Status(r["status"].(string)) {
		case kgworker.StatusPending:
			c.Pending = n
		case kgworker.StatusProcessing:
			c.Processing = n
		case kgworker.StatusCompleted:
			c.Completed = n
		case kgworker.StatusFailed:
			c.Failed = n
		case kgworker.StatusSkipped:
			c.Skipped = n
		}
	}
	return c
}

// waitDrained waits until no item is pending or processing and returns the
// final counts.
func (p *kgPool) waitDrained(timeout time.Duration) kgworker.Counts {
	p.t.Helper()
	var c kgworker.Counts
	p.waitFor("the workers to drain the queue", timeout, func() bool {
		c = p.counts()
		return c.Pending == 0 && c.Processing == 0
	})
	return c
}

// checkResults asserts that every document from..to was completed exactly
// once in the database: one queue item, completed, and one set of result
// rows (the test double extracts a document entity appearing in every
// chunk, a topic entity per chunk and a relationship per chunk: two entity
// rows per chunk), with the document and its chunks marked processed.
func (p *kgPool) checkResults(from, to int) {
	p.t.Helper()
	rows := p.query(fmt.Sprintf(`SELECT c.id AS id, c.kg_processed AS processed, c.kg_entity_count AS entity_count,
	c.kg_relationship_count AS relationship_count, c.kg_document_id AS document_id,
	(SELECT count(*) FROM content_chunks k WHERE k.content_id = c.id) AS chunks,
	(SELECT count(*) FROM content_chunks k WHERE k.content_id = c.id AND k.kg_processed = 1) AS chunks_processed,
	(SELECT count(*) FROM chunk_entities e WHERE e.content_id = c.id) AS entities,
	(SELECT count(*) FROM chunk_relationships r WHERE r.content_id = c.id) AS relationships,
	(SELECT count(*) FROM kg_processing_queue q WHERE q.content_id = c.id) AS items,
	(SELECT count(*) FROM kg_processing_queue q WHERE q.content_id = c.id AND q.status = 'completed') AS completed,
	(SELECT count(*) FROM chunk_entities e WHERE e.content_id = c.id AND e.offset_end > e.offset_start
		AND e.chunk_rowid IN (SELECT rowid FROM content_chunks k WHERE k.content_id = c.id)) AS entities_in_chunks,
	(SELECT count(*) FROM chunk_relationships r WHERE r.content_id = c.id AND r.subject_entity = 'Document ' || c.id
		AND r.object_entity LIKE 'Topic ' || c.id || '.%%' AND r.chunk_rowids LIKE '[%%]') AS named_relationships,
	(SELECT count(*) FROM kg_processing_queue q WHERE q.content_id = c.id AND q.processed_at IS NOT NULL
		AND json_extract(q.result_summary, '$.neo4j_document_id') = 'doc-' || c.id
		AND json_extract(q.result_summary, '$.summary.chunks_with_entities') = (SELECT count(*) FROM content_chunks k WHERE k.content_id = c.id)) AS summaries
FROM crawled_content c WHERE c.id BETWEEN %d AND %d ORDER BY c.id`, from, to))
	if len(rows) != to-from+1 {
		p.t.Fatalf("%d documents in %d..%d, want %d", len(rows), from, to, to-from+1)
	}
	bad := 0
	for _, r := range rows {
		id := int(r["id"].(float64))
		want := map[string]any{
			"processed": 1.0, "entity_count": float64(chunksOf(id) + 1), "relationship_count": float64(chunksOf(id)),
			"document_id": fmt.Sprintf("doc-%d", id), "chunks": float64(chunksOf(id)), "chunks_processed": float64(chunksOf(id)),
			"entities": float64(2 * chunksOf(id)), "relationships": float64(chunksOf(id)), "items": 1.0, "completed": 1.0,
			// Entity rows sit in the document's chunks with their offsets,
			// relationships name their subject and object, and the queue
			// row keeps the counts and the summary.
			"entities_in_chunks": float64(2 * chunksOf(id)), "named_relationships": float64(chunksOf(id)), "summaries": 1.0,
		}
		for k, v := range want {
			if r[k] != v {
				if bad++; bad <= 10 {
					p.t.Errorf("document %d: %s = %v, want %v (row %v)", id, k, r[k], v, r)
				}
				break
			}
		}
	}
	if bad > 0 {
		p.t.Fatalf("%d of %d documents were not completed exactly once", bad, len(rows))
	}
}

// ingested returns how many times the KG service test double ingested each
// document successfully.
func (p *kgPool) ingested() map[int]int {
	p.t.Helper()
	body, err := p.get(kgService + "/ingested")
	if err != nil {
		p.t.Fatal(err)
	}
	var byID map[string]int
	if err := json.Unmarshal([]byte(body), &byID); err != nil {
		p.t.Fatalf("GET /ingested: %v\n%s", err, body)
	}
	out := make(map[int]int, len(byID))
	for k, n := range byID {
		id, err := strconv.Atoi(k)
		if err != nil {
			p.t.Fatalf("GET /ingested: key %q", k)
		}
		out[id] = n
	}
	return out
}

// control changes the KG service test double's behaviour.
func (p *kgPool) control(body string) {
	p.t.Helper()
	p.post(kgService+"/control", body)
}

func (p *kgPool) prop(unit, name string) string {
	p.t.Helper()
	return strings.TrimSpace(p.must("systemctl", "show", "-P", name, unit))
}

func (p *kgPool) intProp(unit, name string) int {
	p.t.Helper()
	v := p.prop(unit, name)
	n, err := strconv.Atoi(v)
	if err != nil {
		p.t.Fatalf("%s of %s is %q", name, unit, v)
	}
	return n
}

func workerUnit(n int) string { return fmt.Sprintf("kg-worker@%d.service", n) }

// workerWanted reports whether kg-workers.target pulls worker n in at boot.
func (p *kgPool) workerWanted(n int) bool {
	return p.exists("/etc/systemd/system/kg-workers.target.wants/" + workerUnit(n))
}

// healthJSON is `workers health --json` in the KG Manager's field names.
type healthJSON struct {
	ManagerRunning   bool   `json:"manager_running"`
	TotalWorkers     int    `json:"total_workers"`
	HealthyWorkers   int    `json:"healthy_workers"`
	UnhealthyWorkers int    `json:"unhealthy_workers"`
	WorkersRestarted int    `json:"workers_restarted"`
	Status           string `json:"status"`
	KGServiceStatus  struct {
		Enabled   bool   `json:"enabled"`
		URL       string `json:"url"`
		IsHealthy bool   `json:"is_healthy"`
		Problem   string `json:"problem"`
	} `json:"kg_service_status"`
	WorkerDetails []struct {
		WorkerID     int             `json:"worker_id"`
		Instance     int             `json:"instance"`
		Stats        *kgworker.Stats `json:"stats"`
		Unit         string          `json:"unit"`
		Running      bool            `json:"running"`
		ActiveState  string          `json:"active_state"`
		PID          int             `json:"pid"`
		ProcessState string          `json:"process_state"`
		Restarts     int             `json:"restarts"`
		Problem      string          `json:"problem"`
	} `json:"worker_details"`
}

// statsJSON is `workers stats --json` in the KG Manager's field names.
type statsJSON struct {
	TotalWorkers     int       `json:"total_workers"`
	ManagerRunning   bool      `json:"manager_running"`
	ManagerStartedAt time.Time `json:"manager_started_at"`
	WorkersRestarted int       `json:"workers_restarted"`
	LastHealthCheck  time.Time `json:"last_health_check"`
	TotalProcessed   int       `json:"total_processed"`
	TotalSuccess     int       `json:"total_success"`
	TotalFailed      int       `json:"total_failed"`
	TotalSkipped     int       `json:"total_skipped"`
	KGServiceEnabled bool      `json:"kg_service_enabled"`
	KGServiceStatus  struct {
		Enabled             bool   `json:"enabled"`
		URL                 string `json:"url"`
		IsHealthy           bool   `json:"is_healthy"`
		ConsecutiveFailures int    `json:"consecutive_failures"`
	} `json:"kg_service_status"`
	QueueSize     kgworker.Counts `json:"queue_size"`
	WorkerDetails []struct {
		Host     string         `json:"host"`
		Local    bool           `json:"local"`
		WorkerID int            `json:"worker_id"`
		Instance int            `json:"instance"`
		Unit     string         `json:"unit"`
		Running  bool           `json:"running"`
		PID      int            `json:"pid"`
		Stats    kgworker.Stats `json:"stats"`
	} `json:"worker_details"`
}

// decodeKGManagerJSON decodes out into v after checking that it has every one
// of the top-level keys.
func decodeKGManagerJSON(t *testing.T, what, out string, v any, keys ...string) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &fields); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	for _, k := range keys {
		if _, ok := fields[k]; !ok {
			t.Errorf("%s lacks the field %q:\n%s", what, k, out)
		}
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
}

var (
	healthKeys = []string{"manager_running", "total_workers", "healthy_workers", "unhealthy_workers", "workers_restarted", "worker_details"}
	statsKeys  = []string{"total_workers", "manager_running", "manager_started_at", "workers_restarted", "last_health_check",
		"total_processed", "total_success", "total_failed", "kg_service_enabled", "kg_service_status", "queue_size", "worker_details"}
)

// health runs `workers health --json` and returns its exit code and report.
func (p *kgPool) health() (int, healthJSON) {
	p.t.Helper()
	r := p.km("workers", "health", "--json")
	var h healthJSON
	decodeKGManagerJSON(p.t, "workers health --json", r.stdout, &h, healthKeys...)
	return r.code, h
}

func (p *kgPool) stats() statsJSON {
	p.t.Helper()
	var s statsJSON
	decodeKGManagerJSON(p.t, "workers stats --json", p.mustKM("workers", "stats", "--json"), &s, statsKeys...)
	return s
}

// startWorkers runs `kato-manager workers start -n N` and checks what it
// printed and that systemd runs and enables each worker.
func (p *kgPool) startWorkers(n int) {
	p.t.Helper()
	out := p.mustKM("workers", "start", "-n", strconv.Itoa(n))
	for i := 1; i <= n; i++ {
		if !strings.Contains(out, "started "+workerUnit(i)+"\n") {
			p.t.Errorf("workers start -n %d does not report %s:\n%s", n, workerUnit(i), out)
		}
		if s := p.activeState(workerUnit(i)); s != "active" {
			p.t.Errorf("%s is %s after workers start", workerUnit(i), s)
		}
		if !p.workerWanted(i) {
			p.t.Errorf("%s is not enabled", workerUnit(i))
		}
	}
	if !strings.Contains(out, fmt.Sprintf("%d KG worker(s) running", n)) {
		p.t.Errorf("workers start -n %d:\n%s", n, out)
	}
	if p.t.Failed() {
		p.t.FailNow()
	}
}

// TestWorkersDrain: four workers started with the CLI drain 2,000 items,
// each completed exactly once, and health and stats say so in the KG Manager's
// terms.
func TestWorkersDrain(t *testing.T) {
	const items = 2000
	p := bootKGPool(t, "", 0)
	p.addContent(1, items)
	p.enqueue(1, items)
	if c := p.counts(); c.Pending != items || c.Total != items {
		t.Fatalf("after enqueue: %+v", c)
	}
	start := time.Now()
	p.startWorkers(4)
	c := p.waitDrained(2 * time.Minute)
	elapsed := time.Since(start)
	t.Logf("4 workers drained %d items in %s (%.0f items/s)", items, elapsed.Round(time.Millisecond), items/elapsed.Seconds())
	if c.Completed != items || c.Total != items {
		t.Fatalf("after draining: %+v", c)
	}
	if n := p.queryInt("SELECT count(*) FROM kg_processing_queue WHERE retry_count != 0 OR error_message IS NOT NULL OR lease_owner IS NOT NULL"); n != 0 {
		t.Errorf("%d items were retried or keep a lease or an error", n)
	}
	p.checkResults(1, items)
	ing := p.ingested()
	for id := 1; id <= items; id++ {
		if ing[id] != 1 {
			t.Errorf("document %d ingested %d times by the KG service", id, ing[id])
		}
	}
	if len(ing) != items {
		t.Errorf("the KG service ingested %d documents, want %d", len(ing), items)
	}

	code, h := p.health()
	if code != 0 || !h.ManagerRunning || h.TotalWorkers != 4 || h.HealthyWorkers != 4 || h.UnhealthyWorkers != 0 || h.WorkersRestarted != 0 || len(h.WorkerDetails) != 4 {
		t.Fatalf("workers health (exit %d): %+v", code, h)
	}
	for i, w := range h.WorkerDetails {
		unit := workerUnit(i + 1)
		if w.WorkerID != i || w.Instance != i+1 || w.Unit != unit || !w.Running || w.ActiveState != "active" || w.PID != p.intProp(unit, "MainPID") || w.Problem != "" {
			t.Errorf("worker_details[%d] = %+v", i, w)
		}
	}

	// The workers publish their counters about once a second while they
	// work and at least every poll interval while idle.
	var s statsJSON
	p.waitFor("the workers' reports to add up to the queue", 20*time.Second, func() bool {
		s = p.stats()
		return s.TotalProcessed == items
	})
	if !s.ManagerRunning || s.TotalWorkers != 4 || s.TotalSuccess != items || s.TotalFailed != 0 || s.WorkersRestarted != 0 ||
		!s.KGServiceEnabled || !s.KGServiceStatus.Enabled || s.KGServiceStatus.URL != "http://localhost:8088" || !s.KGServiceStatus.IsHealthy ||
		s.QueueSize.Completed != items || s.QueueSize.Total != items || s.QueueSize.Pending != 0 || s.QueueSize.Processing != 0 ||
		s.ManagerStartedAt.Before(start.Add(-time.Minute)) || len(s.WorkerDetails) != 4 {
		t.Fatalf("workers stats: %+v", s)
	}
	sum := 0
	for _, w := range s.WorkerDetails {
		// Every worker took part: 2,000 items are 400 batches.
		if w.Stats.TotalProcessed == 0 || !w.Running || w.Stats.TotalSuccess != w.Stats.TotalProcessed {
			t.Errorf("worker %d: %+v", w.WorkerID, w)
		}
		sum += w.Stats.TotalProcessed
	}
	if sum != items {
		t.Errorf("worker_details add up to %d processed, want %d", sum, items)
	}
	text := p.mustKM("workers", "stats")
	if !strings.Contains(text, fmt.Sprintf("processed: %d (success %d, failed 0, skipped 0)", items, items)) {
		t.Errorf("workers stats:\n%s", text)
	}
}

// TestWorkersKill9: a worker killed with SIGKILL in the middle of a batch is
// restarted by systemd; its items are reclaimed when their lease expires and
// every item is completed exactly once in the database. The KG service may
// see the item that was in flight twice (delivery to it is at least once),
// never any other.
func TestWorkersKill9(t *testing.T) {
	const items = 240
	p := bootKGPool(t, "lease_seconds = 5.0\npoll_interval = 1.0\n", 100)
	p.addContent(1, items)
	p.enqueue(1, items)
	p.startWorkers(4)

	victim := workerUnit(2)
	p.waitFor("worker 2 to hold a batch", 30*time.Second, func() bool {
		return p.queryInt("SELECT count(*) FROM kg_processing_queue WHERE status = 'processing' AND lease_owner LIKE 'kg-worker@2/%'") > 0 &&
			p.counts().Completed >= 20
	})
	pid := p.intProp(victim, "MainPID")
	p.must("kill", "-KILL", strconv.Itoa(pid))
	// What the dead process held: nobody else may touch it before the
	// lease expires.
	held := map[int]bool{}
	for _, r := range p.query(fmt.Sprintf("SELECT content_id FROM kg_processing_queue WHERE status = 'processing' AND lease_owner LIKE 'kg-worker@2/%d@%%'", pid)) {
		held[int(r["content_id"].(float64))] = true
	}
	if len(held) == 0 {
		t.Fatal("worker 2 held no item when it was killed")
	}
	t.Logf("killed worker 2 (pid %d) holding documents %v", pid, sortedKeys(held))

	p.waitFor("systemd to restart worker 2", 30*time.Second, func() bool {
		return p.intProp(victim, "NRestarts") >= 1 && p.activeState(victim) == "active" && p.intProp(victim, "MainPID") != pid
	})
	c := p.waitDrained(2 * time.Minute)
	if c.Completed != items || c.Total != items {
		t.Fatalf("after draining: %+v", c)
	}
	p.checkResults(1, items)
	// Each held item spent exactly one attempt on the expired lease; no
	// other item spent any.
	for _, r := range p.query("SELECT content_id, retry_count FROM kg_processing_queue") {
		id, retries := int(r["content_id"].(float64)), int(r["retry_count"].(float64))
		want := 0
		if held[id] {
			want = 1
		}
		if retries != want {
			t.Errorf("document %d: retry_count %d, want %d", id, retries, want)
		}
	}
	ing := p.ingested()
	twice := 0
	for id := 1; id <= items; id++ {
		switch n := ing[id]; {
		case n == 1:
		case n == 2 && held[id]:
			twice++
		default:
			t.Errorf("document %d (held by the killed worker: %v) ingested %d times by the KG service", id, held[id], n)
		}
	}
	// A worker sends one item at a time: only the one in flight can have
	// reached the service before the kill.
	if twice > 1 {
		t.Errorf("%d documents ingested twice; at most the one in flight may be", twice)
	}
	if !strings.Contains(p.exec("journalctl", "-u", "kg-worker@*", "--no-pager").stdout, "whose lease expired") {
		t.Error("no worker logged reclaiming the expired lease")
	}
	_, h := p.health()
	if h.WorkersRestarted < 1 || h.HealthyWorkers != 4 {
		t.Errorf("workers health after the kill: %+v", h)
	}
}

// TestWorkersOutage: during a 10 s outage of the KG service the workers
// hand their items back without spending attempts and stay up; afterwards
// they finish the queue and no item failed.
func TestWorkersOutage(t *testing.T) {
	const items = 300
	p := bootKGPool(t, "poll_interval = 1.0\n", 100)
	p.addContent(1, items)
	p.enqueue(1, items)
	p.startWorkers(4)
	p.waitFor("the first 40 items", 30*time.Second, func() bool { return p.counts().Completed >= 40 })

	p.control(`{"outage": true}`)
	outageStart := time.Now()
	// Requests already past the service's door finish; then nothing moves.
	p.waitFor("the workers to hand back what they hold", 5*time.Second, func() bool { return p.counts().Processing == 0 })
	time.Sleep(500 * time.Millisecond)
	during := p.counts()
	if during.Pending == 0 || during.Failed != 0 || during.Processing != 0 {
		t.Fatalf("early in the outage: %+v", during)
	}
	var s statsJSON
	p.waitFor("the workers to report the service down", 8*time.Second, func() bool {
		s = p.stats()
		return !s.KGServiceStatus.IsHealthy && s.KGServiceStatus.ConsecutiveFailures > 0
	})
	time.Sleep(10*time.Second - time.Since(outageStart))
	if c := p.counts(); c != during {
		t.Errorf("the queue moved during the outage: %+v, then %+v", during, c)
	}
	for i := 1; i <= 4; i++ {
		if p.activeState(workerUnit(i)) != "active" || p.intProp(workerUnit(i), "NRestarts") != 0 {
			t.Errorf("%s is %s with %s restarts during the outage", workerUnit(i), p.activeState(workerUnit(i)), p.prop(workerUnit(i), "NRestarts"))
		}
	}
	p.control(`{"outage": false}`)
	t.Logf("outage of %s; %d items waited through it", time.Since(outageStart).Round(time.Millisecond), during.Pending)

	c := p.waitDrained(time.Minute)
	if c.Completed != items || c.Failed != 0 || c.Total != items {
		t.Fatalf("after the outage: %+v", c)
	}
	if n := p.queryInt("SELECT count(*) FROM kg_processing_queue WHERE retry_count != 0 OR error_message IS NOT NULL OR next_attempt_at IS NOT NULL"); n != 0 {
		t.Errorf("%d items spent an attempt on the outage", n)
	}
	p.checkResults(1, items)
	ing := p.ingested()
	for id := 1; id <= items; id++ {
		if ing[id] != 1 {
			t.Errorf("document %d ingested %d times by the KG service", id, ing[id])
		}
	}
	if !strings.Contains(p.exec("journalctl", "-u", "kg-worker@*", "--no-pager").stdout, "kg service down") {
		t.Error("no worker logged the outage")
	}
	p.waitFor("the workers to report the service up", 10*time.Second, func() bool {
		s = p.stats()
		return s.KGServiceStatus.IsHealthy
	})
}

// TestWorkersWatchdog: a worker that stops pinging the watchdog is killed
// and restarted by systemd; an idle worker that pings is left alone.
func TestWorkersWatchdog(t *testing.T) {
	p := bootKGPool(t, "", 0)
	if err := p.WriteFile("/etc/systemd/system/kg-worker@.service.d/test.conf", []byte("[Service]\nWatchdogSec=3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("systemctl", "daemon-reload")
	start := time.Now()
	p.startWorkers(2)
	if w := p.prop(workerUnit(1), "WatchdogUSec"); w != "3s" {
		t.Fatalf("WatchdogUSec = %q", w)
	}
	frozen, idle := p.intProp(workerUnit(1), "MainPID"), p.intProp(workerUnit(2), "MainPID")
	p.must("kill", "-STOP", strconv.Itoa(frozen))
	p.waitFor("systemd to restart the frozen worker", 30*time.Second, func() bool {
		return p.intProp(workerUnit(1), "NRestarts") >= 1 && p.activeState(workerUnit(1)) == "active" && p.intProp(workerUnit(1), "MainPID") != frozen
	})
	if !strings.Contains(p.exec("journalctl", "-u", workerUnit(1), "--no-pager").stdout, "Watchdog timeout") {
		t.Error("systemd did not log a watchdog timeout for worker 1")
	}
	if r := p.exec("kill", "-0", strconv.Itoa(frozen)); r.code == 0 {
		t.Errorf("the frozen process %d still exists", frozen)
	}
	// Stay long enough for several watchdog periods to pass for the idle
	// worker, then check it was never touched.
	if wait := 3*3*time.Second - time.Since(start); wait > 0 {
		time.Sleep(wait)
	}
	if n, pid := p.intProp(workerUnit(2), "NRestarts"), p.intProp(workerUnit(2), "MainPID"); n != 0 || pid != idle {
		t.Errorf("idle worker 2: %d restarts, pid %d (was %d)", n, pid, idle)
	}
	// The restarted worker works.
	p.addContent(1, 10)
	p.enqueue(1, 10)
	if c := p.waitDrained(30 * time.Second); c.Completed != 10 {
		t.Fatalf("after the restart: %+v", c)
	}
	p.checkResults(1, 10)
	_, h := p.health()
	if h.HealthyWorkers != 2 || h.WorkersRestarted != 1 {
		t.Errorf("workers health: %+v", h)
	}
}

// TestWorkersStopAndScale: `workers stop` in the middle of the work leaves
// nothing in processing; `workers scale` takes the pool from 4 to 1 to 3
// workers while they work, without disturbing the workers that stay.
func TestWorkersStopAndScale(t *testing.T) {
	const items = 300
	p := bootKGPool(t, "poll_interval = 1.0\n", 100)
	p.addContent(1, items)
	p.enqueue(1, items)
	p.startWorkers(4)
	p.waitFor("the workers to be busy", 30*time.Second, func() bool {
		c := p.counts()
		return c.Completed >= 30 && c.Processing > 0
	})

	out := p.mustKM("workers", "stop")
	stopped := p.counts()
	for i := 1; i <= 4; i++ {
		if !strings.Contains(out, "stopped "+workerUnit(i)) {
			t.Errorf("workers stop does not report worker %d:\n%s", i, out)
		}
		if s := p.activeState(workerUnit(i)); s != "inactive" {
			t.Errorf("%s is %s after workers stop", workerUnit(i), s)
		}
		if p.workerWanted(i) {
			t.Errorf("%s is still enabled after workers stop", workerUnit(i))
		}
	}
	if stopped.Processing != 0 || stopped.Failed != 0 || stopped.Pending == 0 || stopped.Completed+stopped.Pending != items {
		t.Fatalf("after workers stop: %+v", stopped)
	}
	if n := p.queryInt("SELECT count(*) FROM kg_processing_queue WHERE retry_count != 0 OR lease_owner IS NOT NULL"); n != 0 {
		t.Errorf("%d items spent an attempt or keep a lease after workers stop", n)
	}
	// What was completed went to the service once; what was handed back
	// never reached it.
	ing := p.ingested()
	for _, r := range p.query("SELECT content_id, status FROM kg_processing_queue") {
		id, status := int(r["content_id"].(float64)), r["status"].(string)
		if want := map[string]int{"completed": 1, "pending": 0}[status]; ing[id] != want {
			t.Errorf("%s document %d ingested %d times", status, id, ing[id])
		}
	}
	if out := p.mustKM("workers", "stop"); !strings.Contains(out, "no workers were running") {
		t.Errorf("second workers stop: %s", out)
	}
	time.Sleep(1500 * time.Millisecond)
	if c := p.counts(); c != stopped {
		t.Errorf("the queue moved with no workers: %+v, then %+v", stopped, c)
	}

	// Scale 4 → 1 → 3 live.
	p.startWorkers(4)
	first := p.intProp(workerUnit(1), "MainPID")
	p.waitFor("four busy workers", 30*time.Second, func() bool {
		return p.queryInt("SELECT count(DISTINCT substr(lease_owner, 1, 11)) FROM kg_processing_queue WHERE status = 'processing'") >= 2
	})
	if out := p.mustKM("workers", "scale", "1"); !strings.Contains(out, "1 worker(s) running; stopped 3") {
		t.Errorf("workers scale 1: %s", out)
	}
	for i := 2; i <= 4; i++ {
		if s := p.activeState(workerUnit(i)); s != "inactive" || p.workerWanted(i) {
			t.Errorf("after scale 1, %s is %s (enabled %v)", workerUnit(i), s, p.workerWanted(i))
		}
	}
	if n := p.queryInt("SELECT count(*) FROM kg_processing_queue WHERE status = 'processing' AND lease_owner NOT LIKE 'kg-worker@1/%'"); n != 0 {
		t.Errorf("after scale 1, %d items are held by stopped workers", n)
	}
	one := p.counts()
	p.waitFor("worker 1 to go on alone", 20*time.Second, func() bool { return p.counts().Completed >= one.Completed+10 })
	if out := p.mustKM("workers", "scale", "3"); !strings.Contains(out, "3 worker(s) running; stopped 0") {
		t.Errorf("workers scale 3: %s", out)
	}
	for i := 1; i <= 4; i++ {
		want := "active"
		if i == 4 {
			want = "inactive"
		}
		if s := p.activeState(workerUnit(i)); s != want || p.workerWanted(i) != (i <= 3) {
			t.Errorf("after scale 3, %s is %s (enabled %v)", workerUnit(i), s, p.workerWanted(i))
		}
	}
	if pid := p.intProp(workerUnit(1), "MainPID"); pid != first {
		t.Errorf("scaling restarted worker 1: pid %d, was %d", pid, first)
	}
	c := p.waitDrained(time.Minute)
	if c.Completed != items || c.Total != items {
		t.Fatalf("after scaling: %+v", c)
	}
	p.checkResults(1, items)
	ing = p.ingested()
	for id := 1; id <= items; id++ {
		if ing[id] != 1 {
			t.Errorf("document %d ingested %d times by the KG service", id, ing[id])
		}
	}
	var s statsJSON
	p.waitFor("workers 2 and 3 to report work", 20*time.Second, func() bool {
		s = p.stats()
		return len(s.WorkerDetails) == 3 && s.WorkerDetails[1].Stats.TotalProcessed > 0 && s.WorkerDetails[2].Stats.TotalProcessed > 0
	})
	if code, h := p.health(); code != 0 || h.TotalWorkers != 3 || h.HealthyWorkers != 3 || h.WorkersRestarted != 0 {
		t.Errorf("workers health after scale 3 (exit %d): %+v", code, h)
	}
}

// TestWorkersCLI drives the queue commands, failures and retry-failed,
// `workers health --restart-unhealthy` on a stopped process and `serve`.
func TestWorkersCLI(t *testing.T) {
	p := bootKGPool(t, "max_retries = 0\npoll_interval = 1.0\n", 0)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"queue", "enqueue"}, "queue enqueue takes one or more crawled_content ids"},
		{[]string{"queue", "enqueue", "0"}, "invalid CONTENT_ID 0"},
		{[]string{"queue", "enqueue", "x7"}, "invalid CONTENT_ID x7"},
		{[]string{"queue", "enqueue", "99"}, "invalid CONTENT_ID 99: has no crawled_content row"},
		{[]string{"queue", "list", "--status", "done"}, `invalid status "done"`},
		{[]string{"queue", "list", "--limit", "0"}, "invalid --limit 0: must be 1 or more"},
		{[]string{"queue", "retry-failed", "-3"}, "unknown shorthand flag"},
		{[]string{"workers", "start", "-n", "0"}, "invalid --workers 0: must be between 1 and 64"},
		{[]string{"workers", "scale", "many"}, "invalid N many"},
	} {
		if r := p.km(tc.args...); r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: want exit 2 and %q, got %s", tc.args, tc.want, r)
		}
	}
	if c := p.counts(); c.Total != 0 {
		t.Fatalf("rejected commands queued items: %+v", c)
	}

	p.addContent(1, 12)
	p.control(`{"fail_ids": [3, 7]}`)
	p.enqueue(1, 10)
	if out := p.mustKM("queue", "enqueue", "11", "12", "--priority", "5"); !strings.Contains(out, "queued content 12 as item 12") {
		t.Errorf("queue enqueue --priority: %s", out)
	}
	var listed []kgworker.Item
	if err := json.Unmarshal([]byte(p.mustKM("queue", "list", "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 12 || listed[0].ID != 12 || listed[0].Priority != 5 || listed[11].ID != 1 || listed[11].Priority != 1 || listed[5].Status != kgworker.StatusPending {
		t.Fatalf("queue list --json: %+v", listed)
	}
	var counts kgworker.Counts
	if err := json.Unmarshal([]byte(p.mustKM("queue", "stats", "--json")), &counts); err != nil || counts != (kgworker.Counts{Pending: 12, Total: 12}) {
		t.Fatalf("queue stats --json: %+v %v", counts, err)
	}

	p.startWorkers(4)
	c := p.waitDrained(30 * time.Second)
	if c.Completed != 10 || c.Failed != 2 || c.Total != 12 {
		t.Fatalf("after the first pass: %+v", c)
	}
	// Higher priority is claimed first.
	if n := p.queryInt(`SELECT count(*) FROM kg_processing_queue WHERE priority = 1 AND processing_started_at <
		(SELECT max(processing_started_at) FROM kg_processing_queue WHERE priority = 5)`); n != 0 {
		t.Errorf("%d items of priority 1 were claimed before one of priority 5", n)
	}
	var failed []kgworker.Item
	if err := json.Unmarshal([]byte(p.mustKM("queue", "list", "--status", "failed", "--json")), &failed); err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || failed[0].ContentID != 7 || failed[1].ContentID != 3 {
		t.Fatalf("queue list --status failed: %+v", failed)
	}
	for _, it := range failed {
		if it.RetryCount != 1 || !strings.Contains(it.ErrorMessage, fmt.Sprintf("extraction failed for content_id %d", it.ContentID)) || it.ProcessedAt.IsZero() {
			t.Errorf("failed item %+v", it)
		}
	}
	if table := p.mustKM("queue", "list", "--status", "failed"); !strings.Contains(table, "ID") || !strings.Contains(table, "extraction failed for content_id 7") {
		t.Errorf("queue list table:\n%s", table)
	}
	if out := p.mustKM("queue", "retry-failed", "999"); !strings.Contains(out, "0 failed item(s) queued again") {
		t.Errorf("queue retry-failed 999: %s", out)
	}
	p.control(`{"fail_ids": []}`)
	if out := p.mustKM("queue", "retry-failed"); !strings.Contains(out, "2 failed item(s) queued again") {
		t.Errorf("queue retry-failed: %s", out)
	}
	if c := p.waitDrained(30 * time.Second); c.Completed != 12 || c.Failed != 0 {
		t.Fatalf("after retry-failed: %+v", c)
	}
	p.checkResults(1, 12)
	if out := p.mustKM("queue", "stats"); !strings.Contains(out, "total 12: pending 0, processing 0, completed 12, failed 0, skipped 0") {
		t.Errorf("queue stats: %s", out)
	}
	var s statsJSON
	p.waitFor("the reports to count the failures", 20*time.Second, func() bool {
		s = p.stats()
		return s.TotalProcessed == 14
	})
	if s.TotalSuccess != 12 || s.TotalFailed != 2 || s.QueueSize.Completed != 12 {
		t.Errorf("workers stats: %+v", s)
	}

	// serve answers for the pool as the CLI does.
	p.must("systemd-run", "--unit=kato-manager-serve", "--", katoManager, "serve", "--listen", "127.0.0.1:9090", "--public-reads")
	p.waitFor("kato-manager serve", 10*time.Second, func() bool {
		_, err := p.get("http://127.0.0.1:9090/health")
		return err == nil
	})
	body, err := p.get("http://127.0.0.1:9090/stats")
	if err != nil {
		t.Fatal(err)
	}
	var served statsJSON
	decodeKGManagerJSON(t, "GET /stats", body, &served, statsKeys...)
	if served.TotalWorkers != 4 || served.TotalProcessed != 14 || served.QueueSize.Completed != 12 || !served.KGServiceStatus.IsHealthy {
		t.Errorf("GET /stats: %+v", served)
	}

	// A stopped process is unhealthy although systemd calls it running.
	stoppedPID := p.intProp(workerUnit(3), "MainPID")
	p.must("kill", "-STOP", strconv.Itoa(stoppedPID))
	code, h := p.health()
	if code != 1 || h.HealthyWorkers != 3 || h.UnhealthyWorkers != 1 || !h.ManagerRunning || len(h.WorkerDetails) != 4 {
		t.Fatalf("workers health with a stopped worker (exit %d): %+v", code, h)
	}
	if w := h.WorkerDetails[2]; w.WorkerID != 2 || w.Instance != 3 || w.Running || w.PID != stoppedPID || w.ProcessState != "stop" || !strings.Contains(w.Problem, "stop") {
		t.Errorf("the stopped worker's details: %+v", w)
	}
	r := p.exec("curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", "http://127.0.0.1:9090/health")
	out := strings.TrimSpace(r.stdout)
	cut := strings.LastIndexByte(out, '\n')
	var unhealthy healthJSON
	if cut < 0 || out[cut+1:] != "503" {
		t.Errorf("GET /health with a stopped worker: %s", r)
	} else if decodeKGManagerJSON(t, "GET /health", out[:cut], &unhealthy, healthKeys...); unhealthy.UnhealthyWorkers != 1 {
		t.Errorf("GET /health with a stopped worker: %+v", unhealthy)
	}
	r = p.km("workers", "health", "--restart-unhealthy")
	if r.code != 0 || !strings.Contains(r.stderr, "restarted "+workerUnit(3)) {
		t.Fatalf("workers health --restart-unhealthy: %s", r)
	}
	if pid := p.intProp(workerUnit(3), "MainPID"); pid == stoppedPID || pid == 0 || p.activeState(workerUnit(3)) != "active" {
		t.Errorf("worker 3 after --restart-unhealthy: pid %d (was %d), %s", pid, stoppedPID, p.activeState(workerUnit(3)))
	}
	if code, h := p.health(); code != 0 || h.HealthyWorkers != 4 || h.UnhealthyWorkers != 0 {
		t.Errorf("workers health after the restart (exit %d): %+v", code, h)
	}
	if text := p.mustKM("workers", "health"); !strings.Contains(text, "4 total, 4 healthy, 0 unhealthy") {
		t.Errorf("workers health:\n%s", text)
	}
	body, err = p.get("http://127.0.0.1:9090/health")
	var served2 healthJSON
	if err != nil {
		t.Fatalf("GET /health after the restart: %v", err)
	}
	decodeKGManagerJSON(t, "GET /health", body, &served2, healthKeys...)
	if served2.HealthyWorkers != 4 || !served2.ManagerRunning {
		t.Errorf("GET /health after the restart: %+v", served2)
	}
}

// TestQueueOnDefaultPath: on a fresh machine, with the default db_path,
// kato-manager, run by root, works the queue that the workers, run as
// kato, created.
func TestQueueOnDefaultPath(t *testing.T) {
	p := &kgPool{machine: bootMachine(t)}
	// No install-units: workers start installs the units on first use.
	p.startKGService(0)
	p.startWorkers(1)
	p.waitFor("the worker to create the queue", 10*time.Second, func() bool { return p.exists(kgDB) })
	if owner := strings.TrimSpace(p.must("stat", "-c", "%U", kgDB)); owner != "kato" {
		t.Fatalf("the queue belongs to %s", owner)
	}
	// A document the KG service would refuse (no chunks, markdown too
	// short): the worker skips it.
	p.execSQL("INSERT INTO crawled_content(id, url, markdown) VALUES (1, 'https://example.com/short', 'too short')")
	if r := p.km("queue", "enqueue", "1"); r.code != 0 {
		regular := strings.TrimSpace(p.readFile("/proc/sys/fs/protected_regular"))
		t.Fatalf("root cannot write kato's queue in %s (mode %s, fs.protected_regular=%s): %s",
			kgDir, strings.TrimSpace(p.must("stat", "-c", "%A %U:%G", kgDir)), regular, r)
	}
	p.waitFor("the worker to take the item", 20*time.Second, func() bool {
		var c kgworker.Counts
		r := p.km("queue", "stats", "--json")
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &c) == nil && c.Skipped == 1
	})
	var s statsJSON
	decodeKGManagerJSON(t, "workers stats --json", p.mustKM("workers", "stats", "--json"), &s, statsKeys...)
	if s.QueueSize.Skipped != 1 || s.TotalWorkers != 1 {
		t.Errorf("workers stats: %+v", s)
	}
	// The worker's report counts the skipped item soon after the queue
	// shows it (within a quarter second), and the text says so.
	p.waitFor("workers stats to count the skipped item", 2*time.Second, func() bool {
		return strings.Contains(p.mustKM("workers", "stats"), "processed: 1 (success 0, failed 0, skipped 1)")
	})
}

func sortedKeys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// TestWorkersPoisonDocument: one document the KG service reads and then
// drops (a crash on that document), queued with a higher priority than
// 100 good ones. Every good one completes, nothing waits behind the poison
// one, and it ends failed after max_retries attempts, in bounded time.
func TestWorkersPoisonDocument(t *testing.T) {
	p := bootKGPool(t, "poll_interval = 1.0\nmax_retries = 3\nconcurrency = 4\n", 20)
	p.addContent(1, 101)
	p.mustKM("queue", "enqueue", "101", "--priority", "10")
	p.control(`{"faults": {"101": "drop"}}`)
	p.enqueue(1, 100)
	start := time.Now()
	p.startWorkers(2)
	p.waitFor("the 100 good documents", 60*time.Second, func() bool { return p.counts().Completed == 100 })
	t.Logf("100 good documents completed %s after the start", time.Since(start).Round(time.Millisecond))
	// Backoff 10s, 20s, 40s at most before the three retries.
	p.waitFor("the poison document to fail", 150*time.Second, func() bool { return p.counts().Failed == 1 })
	rows := p.query("SELECT status, retry_count, error_message FROM kg_processing_queue WHERE content_id = 101")
	if len(rows) != 1 || rows[0]["status"] != "failed" || rows[0]["retry_count"] != 4.0 ||
		!strings.Contains(rows[0]["error_message"].(string), "sent, then") {
		t.Errorf("poison item = %v, want failed after 4 attempts with the dropped connection", rows)
	}
	p.checkResults(1, 100)
	ing := p.ingested()
	for id := 1; id <= 100; id++ {
		if ing[id] != 1 {
			t.Errorf("document %d ingested %d times", id, ing[id])
		}
	}
	if out := p.exec("journalctl", "-u", "kg-worker@*", "--no-pager").stdout; !strings.Contains(out, "concurrency 4") {
		t.Error("the workers did not log concurrency 4 from kato.toml")
	}
}

// TestWorkersDatabaseErrors: a worker whose database keeps failing says so
// in its status, gives up, and systemd restarts it and counts it; `workers
// health` reports it unhealthy meanwhile.
func TestWorkersDatabaseErrors(t *testing.T) {
	p := bootKGPool(t, "poll_interval = 0.5\n", 0)
	p.startWorkers(1)
	p.execSQL("ALTER TABLE kg_processing_queue RENAME TO damaged")
	unit := workerUnit(1)
	unhealthy := false
	p.waitFor("the worker to give up and be restarted", 90*time.Second, func() bool {
		if code, h := p.health(); code != 0 && h.UnhealthyWorkers == 1 {
			unhealthy = true
		}
		return p.intProp(unit, "NRestarts") >= 1
	})
	journal := p.exec("journalctl", "-u", unit, "--no-pager").stdout
	if !strings.Contains(journal, "queue database keeps failing: 10 errors in a row") {
		t.Errorf("the journal does not say why the worker stopped:\n%s", journal)
	}
	p.waitFor("workers health to report the worker unhealthy", 60*time.Second, func() bool {
		if code, h := p.health(); code != 0 && h.UnhealthyWorkers == 1 {
			unhealthy = true
		}
		return unhealthy
	})
	// Repaired, the restarted worker works again.
	p.execSQL("ALTER TABLE damaged RENAME TO kg_processing_queue")
	p.must("systemctl", "reset-failed", unit)
	p.must("systemctl", "restart", unit)
	p.addContent(1, 5)
	p.enqueue(1, 5)
	if c := p.waitDrained(30 * time.Second); c.Completed != 5 {
		t.Errorf("after the repair: %+v", c)
	}
}

// TestWorkersStartPollIntervalKeepsEnvFile: `workers start --poll-interval`
// changes only its line of kg-worker.env, keeps the operator's other lines
// and the file's mode, and refuses a bad value without touching anything.
func TestWorkersStartPollIntervalKeepsEnvFile(t *testing.T) {
	p := bootKGPool(t, "", 0)
	const env = "/etc/kato/kg-worker.env"
	operator := "# the operator's settings\nDB_PATH=" + kgDB + "\nKG_SERVICE_URL=" + kgService + "\nKG_POLL_INTERVAL=7\n"
	if err := p.WriteFile(env, []byte(operator), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"0", "NaN", "+Inf", "1e300", "-1"} {
		r := p.km("workers", "start", "-n", "1", "--poll-interval="+bad)
		if r.code != 2 || !strings.Contains(r.stderr, "invalid --poll-interval") || !strings.Contains(r.stderr, "from 0.01 to 3600") {
			t.Errorf("--poll-interval %s: %s", bad, r)
		}
	}
	if got := p.readFile(env); got != operator {
		t.Errorf("a refused --poll-interval changed kg-worker.env:\n%s", got)
	}
	if s := p.activeState(workerUnit(1)); s == "active" {
		t.Errorf("a refused --poll-interval started %s", workerUnit(1))
	}
	p.mustKM("workers", "start", "-n", "1", "--poll-interval", "0.5")
	want := "# the operator's settings\nDB_PATH=" + kgDB + "\nKG_SERVICE_URL=" + kgService + "\nKG_POLL_INTERVAL=0.5\n"
	if got := p.readFile(env); got != want {
		t.Errorf("kg-worker.env after --poll-interval 0.5:\n%s\nwant\n%s", got, want)
	}
	if mode := strings.TrimSpace(p.must("stat", "-c", "%a", env)); mode != "640" {
		t.Errorf("kg-worker.env mode %s, want 640 kept", mode)
	}
	pid := p.intProp(workerUnit(1), "MainPID")
	environ := p.readFile(fmt.Sprintf("/proc/%d/environ", pid))
	if !strings.Contains(environ, "KG_POLL_INTERVAL=0.5\x00") || !strings.Contains(environ, "DB_PATH="+kgDB+"\x00") {
		t.Errorf("the worker's environment lacks the settings: %q", environ)
	}
}

// TestWorkersAnswerAtTheMemoryBound runs a worker under the default
// MemoryMax= of 256M on a real systemd. It reads the limit from its cgroup
// and bounds KG answers by it: an answer at that bound, of the shape that
// costs the most memory (many small entities), is written back without the
// worker being killed for memory, and an answer over it is a failed attempt
// whose stored error says so, not a crash.
func TestWorkersAnswerAtTheMemoryBound(t *testing.T) {
	p := bootKGPool(t, "poll_interval = 0.5\n", 0)
	p.addContent(1, 2)
	unit := workerUnit(1)
	p.startWorkers(1)
	const memoryMax = 256 << 20
	if got := p.prop(unit, "MemoryMax"); got != strconv.Itoa(memoryMax) {
		t.Fatalf("%s has MemoryMax %s, want the default 256M", unit, got)
	}
	plan, err := kgworker.PlanMemory(memoryMax, 1)
	if err != nil {
		t.Fatal(err)
	}
	bound := kgworker.FormatBytes(plan.MaxAnswerBytes)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of %s:\n%s", unit, p.exec("journalctl", "-u", unit, "--no-pager").stdout)
		}
	})
	p.waitFor("the worker to report its memory plan", 30*time.Second, func() bool {
		return strings.Contains(p.exec("journalctl", "-u", unit, "--no-pager").stdout, "memory limit 256 MiB (Go soft limit 192 MiB), KG answers up to "+bound)
	})

	p.control(fmt.Sprintf(`{"answer_bytes": %d, "pad_chars": 100}`, plan.MaxAnswerBytes-64<<10))
	start := time.Now()
	p.enqueue(1, 1)
	p.waitFor("the answer at the bound to be written back", 180*time.Second, func() bool { return p.counts().Completed == 1 })
	t.Logf("an answer of %s written back in %s", bound, time.Since(start).Round(time.Millisecond))

	p.control(fmt.Sprintf(`{"answer_bytes": %d, "pad_chars": 800}`, plan.MaxAnswerBytes+1<<20))
	p.enqueue(2, 2)
	var row map[string]any
	p.waitFor("the answer over the bound to fail an attempt", 60*time.Second, func() bool {
		rows := p.query("SELECT status, retry_count, error_message FROM kg_processing_queue WHERE content_id = 2")
		if len(rows) == 1 && rows[0]["retry_count"] == 1.0 {
			row = rows[0]
			return true
		}
		return false
	})
	if msg, _ := row["error_message"].(string); row["status"] != "pending" || !strings.Contains(msg, fmt.Sprintf("larger than the limit of %d bytes", plan.MaxAnswerBytes)) {
		t.Errorf("the item over the bound is %v", row)
	}
	if n := p.intProp(unit, "NRestarts"); n != 0 || p.activeState(unit) != "active" {
		t.Errorf("%s restarted %d times, is %s", unit, n, p.activeState(unit))
	}
	// Where the cgroup has a memory controller, systemd enforces the
	// limit and counts the peak; either way the worker's own peak resident
	// memory must leave the page cache, which is charged to the same
	// cgroup, room under the limit.
	status := p.readFile(fmt.Sprintf("/proc/%s/status", p.prop(unit, "MainPID")))
	var hwm int64
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			hwm = kb << 10
		}
	}
	t.Logf("peak resident memory of %s: %s", unit, kgworker.FormatBytes(hwm))
	if hwm == 0 || hwm > memoryMax*85/100 {
		t.Errorf("peak resident memory of %s is %d bytes, want some and at most 85%% of %d", unit, hwm, memoryMax)
	}
	if peak := p.prop(unit, "MemoryPeak"); peak != "" && peak != "[not set]" && peak != "infinity" {
		n, err := strconv.ParseInt(peak, 10, 64)
		if err != nil || n >= memoryMax {
			t.Errorf("MemoryPeak of %s is %s, want under %d", unit, peak, memoryMax)
		}
		t.Logf("MemoryPeak of %s: %s", unit, kgworker.FormatBytes(n))
	}
}

// TestWorkersStatsAndHealthAsTheKGManager: right after the queue shows a
// burst of documents completed, workers stats counts them all (it said
// processed: 1 after 12 completed); workers health gives each worker's
// stats, worker_id from 0 beside kg-worker@N's N, and the KG service's
// state: with the service refusing every connection the pool is degraded
// and the exit status 3, though both workers run.
func TestWorkersStatsAndHealthAsTheKGManager(t *testing.T) {
	p := bootKGPool(t, "poll_interval = 5.0\n", 0)
	p.addContent(1, 12)
	p.startWorkers(2)
	// Their first reports are written; the burst comes within a second.
	p.waitFor("both workers' first reports", 10*time.Second, func() bool { return len(p.stats().WorkerDetails) == 2 })
	p.enqueue(1, 12)
	p.waitFor("the queue to show 12 completed", 30*time.Second, func() bool {
		c := p.counts()
		return c.Completed == 12
	})
	done := time.Now()
	var s statsJSON
	p.waitFor("workers stats to agree with the queue", 3*time.Second, func() bool {
		s = p.stats()
		return s.TotalProcessed == 12
	})
	if lag := time.Since(done); lag > 2*time.Second {
		t.Errorf("workers stats agreed with the queue %s after it showed the items done", lag)
	}
	if s.TotalSuccess != 12 || s.TotalSkipped != 0 || s.QueueSize.Completed != 12 {
		t.Errorf("workers stats: %+v", s)
	}

	code, h := p.health()
	if code != 0 || h.Status != "healthy" || !h.KGServiceStatus.Enabled || !h.KGServiceStatus.IsHealthy || h.KGServiceStatus.URL != "http://localhost:8088" {
		t.Fatalf("workers health with the KG service up (exit %d): %+v", code, h)
	}
	sum := 0
	for i, w := range h.WorkerDetails {
		if w.WorkerID != i || w.Instance != i+1 || w.Unit != workerUnit(i+1) || w.Stats == nil {
			t.Fatalf("worker_details[%d] = %+v, want worker_id %d of %s with its stats", i, w, i, workerUnit(i+1))
		}
		sum += w.Stats.TotalProcessed
	}
	if sum != 12 {
		t.Errorf("the workers' stats in workers health add up to %d, want 12", sum)
	}

	p.must("systemctl", "stop", "kgservice.service")
	code, h = p.health()
	if code != 3 || h.Status != "degraded" || h.HealthyWorkers != 2 || h.KGServiceStatus.IsHealthy || !strings.Contains(h.KGServiceStatus.Problem, "connection refused") {
		t.Errorf("workers health with the KG service down (exit %d): %+v", code, h)
	}
	r := p.km("workers", "health")
	if r.code != 3 || !strings.Contains(r.stdout, "pool: degraded") || !strings.Contains(r.stdout, "kg service: DOWN at http://localhost:8088") {
		t.Errorf("workers health text with the KG service down: %s", r)
	}
}
