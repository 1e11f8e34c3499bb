package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
)

// kgBench measures the KG worker pool on the host, no systemd needed: N
// workers in this process, each with its own queue handle on one SQLite
// file, against the KG service test double with zero latency. Every
// measurement runs on a fresh file and a fresh test double.
type kgBench struct {
	ctx context.Context
	// minRun is the least time the throughput of kato-manager's workers is
	// measured over; the item count grows until a run lasts that long.
	minRun time.Duration
	// legacyItems is the number of items the baseline's throughput is
	// measured on: it does about one item per second per worker.
	legacyItems int
	// samples is the number of enqueue→pickup latencies measured each way.
	samples int
	// pickupSamples is the number of enqueue→pickup latencies measured on
	// SQLite with and without the file watch.
	pickupSamples int
	// pickupOnly limits the KG rows to pickupRows.
	pickupOnly bool
	// throughputOnly limits the KG rows to throughputRows.
	throughputOnly bool
	// cpuProfile, when set, is where throughputRows writes CPU profiles
	// of its first round: the path with ".worker-N" and ".loop-N" added,
	// one profile per kind and worker count N.
	cpuProfile string
	// rounds is how many rounds of the bare loop then the worker the
	// throughput rows run at each worker count.
	rounds int
	// throughputItems is how many items each run of the throughput rows
	// drains.
	throughputItems int
	// notes are printed under the table.
	notes []string
	// lastCPU is the CPU time (user and system, the whole process: the
	// double's too) the last throughput run used per item.
	lastCPU time.Duration
	// pg is the throwaway PostgreSQL cluster of the PostgreSQL rows, nil
	// until they run; each run takes a fresh database of it.
	pg *pgtest.Server
}

// kgRun is one pool on one fresh queue.
type kgRun struct {
	dir string
	// path is where the queue is: a SQLite file in dir, or a PostgreSQL
	// URL.
	path   string
	queue  *kgdb.DB // the benchmark's own handle: setup and watching
	raw    *sql.DB
	fake   *kgservicefake.Server
	server *httptest.Server
	cancel context.CancelFunc
	exited chan error
	n      int
	closes []func() error
}

// newKGRun creates a SQLite queue holding documents 1..docs, none of them
// queued.
func newKGRun(ctx context.Context, docs int) (*kgRun, error) {
	return newKGRunAt(ctx, docs, "")
}

// newKGRunAt is newKGRun on the PostgreSQL database at dbURL, or on a
// SQLite file when dbURL is "".
func newKGRunAt(ctx context.Context, docs int, dbURL string) (*kgRun, error) {
	dir, err := os.MkdirTemp("", "kato-bench-kg-")
	if err != nil {
		return nil, fmt.Errorf("create kg benchmark directory: %w", err)
	}
	r := &kgRun{dir: dir, path: filepath.Join(dir, "kg.db"), exited: make(chan error, 64)}
	if dbURL != "" {
		r.path = dbURL
	} else if err := os.WriteFile(r.path+queue.WriterLockSuffix, nil, 0o600); err != nil {
		// The database's owner makes the writers' lock file, not root:
		// made here, as a worker running as its owner would, the bench
		// takes turns on it when run as root too.
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create the writers' lock file: %w", err)
	}
	if r.queue, err = kgdb.Open(ctx, r.path); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if dbURL != "" {
		r.raw, err = queue.OpenPostgres(ctx, dbURL)
	} else {
		r.raw, err = sql.Open("sqlite3", "file:"+r.path+"?_busy_timeout=10000")
	}
	if err != nil {
		r.queue.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("open %s: %w", r.path, err)
	}
	r.fake = kgservicefake.New()
	r.server = httptest.NewServer(r.fake)
	if err := r.addDocuments(ctx, docs); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// addDocuments inserts documents 1..n with one to three chunks each.
func (r *kgRun) addDocuments(ctx context.Context, n int) error {
	if queue.IsURL(r.path) {
		return r.addDocumentsPostgres(ctx, n)
	}
	_, err := r.raw.ExecContext(ctx, `
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO crawled_content(id, url, title, markdown, metadata)
SELECT i, 'https://example.com/docs/' || i, 'Document ' || i,
	'# Document ' || i || char(10) || 'Body of document ' || i || ', long enough for the KG service''s limits.',
	json_object('n', i) FROM n;
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count)
SELECT c.id, k.i, 'Chunk ' || k.i || ' of document ' || c.id, k.i * 100, k.i * 100 + 99, 5
FROM crawled_content c JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2) k ON k.i < c.id % 3 + 1;`, n)
	if err != nil {
		return fmt.Errorf("insert %d benchmark documents: %w", n, err)
	}
	return nil
}

// addDocumentsPostgres is addDocuments in PostgreSQL's dialect.
func (r *kgRun) addDocumentsPostgres(ctx context.Context, n int) error {
	if _, err := r.raw.ExecContext(ctx, `INSERT INTO crawled_content(id, url, title, markdown, metadata)
SELECT i, 'https://example.com/docs/' || i, 'Document ' || i,
	'# Document ' || i || chr(10) || 'Body of document ' || i || ', long enough for the KG service''s limits.',
	json_build_object('n', i)::text FROM generate_series(1, ?) AS i`, n); err != nil {
		return fmt.Errorf("insert %d benchmark documents: %w", n, err)
	}
	if _, err := r.raw.ExecContext(ctx, `INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count)
SELECT c.id, k.i, 'Chunk ' || k.i || ' of document ' || c.id, k.i * 100, k.i * 100 + 99, 5
FROM crawled_content c JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2) k ON k.i < c.id % 3 + 1`); err != nil {
		return fmt.Errorf("insert the chunks of %d benchmark documents: %w", n, err)
	}
	return nil
}

// enqueue queues documents 1..n.
func (r *kgRun) enqueue(ctx context.Context, n int) error {
	for id := int64(1); id <= int64(n); id++ {
		if _, err := r.queue.Enqueue(ctx, id, 1); err != nil {
			return err
		}
	}
	return nil
}

func (r *kgRun) client() (*kgworker.Client, error) {
	return kgworker.NewClient(kgworker.ClientOpts{URL: r.server.URL, Enabled: true})
}

// oursSettings are the worker settings a throughput run uses.
type oursSettings struct {
	concurrency int
	latencyMS   int
	// postgres runs on a fresh PostgreSQL database instead of a file.
	postgres bool
	// poll makes idle workers on SQLite look at data_version every 50ms
	// instead of watching the file: the way before file watching.
	poll bool
}

// startOurs starts n of kato-manager's workers with their defaults and the
// given concurrency.
func (r *kgRun) startOurs(ctx context.Context, n int, set oursSettings) error {
	r.fake.SetControl(kgservicefake.Control{LatencyMS: set.latencyMS})
	ctx, r.cancel = context.WithCancel(ctx)
	var opts []kgdb.Option
	if set.poll {
		opts = append(opts, kgdb.WithoutFileWatch())
	}
	for i := 1; i <= n; i++ {
		q, err := kgdb.Open(ctx, r.path, opts...)
		if err != nil {
			return err
		}
		r.closes = append(r.closes, q.Close)
		client, err := kgworker.NewClient(kgworker.ClientOpts{URL: r.server.URL, Enabled: true, MaxConns: set.concurrency})
		if err != nil {
			return err
		}
		w, err := kgworker.New(kgworker.Opts{Queue: q, Client: client, Owner: fmt.Sprintf("bench-worker-%d", i),
			Concurrency: set.concurrency})
		if err != nil {
			return err
		}
		r.n++
		go func() { r.exited <- w.Run(ctx) }()
	}
	return nil
}

// startLegacy starts n legacyWorkers. Their first polls are spread evenly over
// one poll interval, the baseline's best case: started together they would
// select the same rows.
func (r *kgRun) startLegacy(ctx context.Context, n int) error {
	ctx, r.cancel = context.WithCancel(ctx)
	for i := 0; i < n; i++ {
		db, err := sql.Open("sqlite3", "file:"+r.path+"?_busy_timeout=10000")
		if err != nil {
			return fmt.Errorf("open %s: %w", r.path, err)
		}
		r.closes = append(r.closes, db.Close)
		q, err := kgdb.Open(ctx, r.path)
		if err != nil {
			return err
		}
		r.closes = append(r.closes, q.Close)
		client, err := r.client()
		if err != nil {
			return err
		}
		w := &legacyWorker{db: db, queue: q, client: client, batch: legacyBatch, poll: legacyPoll}
		delay := time.Duration(i) * legacyPoll / time.Duration(n)
		r.n++
		go func() {
			select {
			case <-time.After(delay):
				r.exited <- w.run(ctx)
			case <-ctx.Done():
				r.exited <- nil
			}
		}()
	}
	return nil
}

// waitCompleted waits until n items are completed.
func (r *kgRun) waitCompleted(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := r.queue.Stats(ctx)
		if err != nil {
			return err
		}
		if c.Completed >= n {
			return nil
		}
		if c.Failed > 0 || c.Skipped > 0 {
			return fmt.Errorf("kg benchmark: %d items failed and %d were skipped", c.Failed, c.Skipped)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kg benchmark: %d of %d items completed after %s", c.Completed, n, timeout)
		}
		select {
		case err := <-r.exited:
			return fmt.Errorf("kg benchmark: a worker stopped early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// close stops the workers and removes the queue.
func (r *kgRun) close() error {
	var errs []error
	if r.cancel != nil {
		r.cancel()
		for ; r.n > 0; r.n-- {
			if err := <-r.exited; err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, c := range r.closes {
		errs = append(errs, c())
	}
	r.server.Close()
	errs = append(errs, r.raw.Close(), r.queue.Close(), os.RemoveAll(r.dir))
	return errors.Join(errs...)
}

// startBare starts n loops that do a worker's work and nothing more, on a
// handle each (kgdb.Open: the same WAL, synchronous=NORMAL, busy timeout,
// statement cache and turns of write transactions as a worker's). Step by
// step, beside what kgworker.Worker with its defaults does:
//
//   - claim: ClaimBatch of 5 under a one-minute lease, one transaction
//     (the worker: the same, after a look for expired leases, one read);
//   - per item, load the document and its chunks (the same two reads);
//   - per item, POST /api/v1/ingest with Go's client over keep-alive and
//     decode the answer in one pass (the worker: the same request, the
//     answer decoded under its size limits and checked against the
//     request);
//   - per item, write the results and the completion in one transaction,
//     kgdb.Complete (the worker: CompleteMany of the results that are
//     ready, one at concurrency 1).
//
// It does not renew leases, reclaim, check the service's health, classify
// faults or keep counters. Its rate is the limit of this work on this
// machine: the database's, the double's and the HTTP client's.
func (r *kgRun) startBare(ctx context.Context, n, items int) error {
	r.fake.SetControl(kgservicefake.Control{})
	ctx, r.cancel = context.WithCancel(ctx)
	target := r.server.URL + "/api/v1/ingest"
	for i := 1; i <= n; i++ {
		q, err := kgdb.Open(ctx, r.path)
		if err != nil {
			return err
		}
		r.closes = append(r.closes, q.Close)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
		r.closes = append(r.closes, func() error { client.CloseIdleConnections(); return nil })
		owner := fmt.Sprintf("bare-%d", i)
		r.n++
		go func() {
			// An error once the run is being stopped is the stop itself.
			exit := func(err error) {
				if ctx.Err() != nil {
					err = nil
				}
				r.exited <- err
			}
			for ctx.Err() == nil {
				batch, err := q.ClaimBatch(ctx, owner, 5, time.Minute)
				if err != nil {
					exit(err)
					return
				}
				if len(batch) == 0 {
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				for _, it := range batch {
					c, err := q.Content(ctx, it.ContentID)
					if err != nil {
						exit(err)
						return
					}
					res, err := bareIngest(ctx, client, target, c)
					if err != nil {
						exit(err)
						return
					}
					if err := q.Complete(ctx, owner, it.ID, res); err != nil {
						exit(err)
						return
					}
				}
			}
			r.exited <- nil
		}()
	}
	return nil
}

// bareIngest is one request to the KG service as plainly as Go's client
// makes it: the document as JSON, the answer decoded in one pass.
func bareIngest(ctx context.Context, client *http.Client, target string, c *kgdb.Content) (*kgdb.IngestResult, error) {
	body, err := json.Marshal(fakeRequest(c))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("ingest %d: status %s", c.ID, resp.Status)
	}
	var res kgdb.IngestResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("ingest %d: %w", c.ID, err)
	}
	return &res, nil
}

// fakeRequest is the request the worker would send for c, in the double's
// types.
func fakeRequest(c *kgdb.Content) kgservicefake.IngestRequest {
	req := kgservicefake.IngestRequest{ContentID: c.ID, URL: c.URL, Title: c.Title, Markdown: c.Markdown, Metadata: c.Metadata}
	for _, ch := range c.Chunks {
		req.Chunks = append(req.Chunks, kgservicefake.Chunk{VectorRowID: ch.VectorRowID, ChunkIndex: ch.ChunkIndex,
			CharStart: ch.CharStart, CharEnd: ch.CharEnd, Text: ch.Text})
	}
	return req
}

// runKind is what a throughput run drives.
type runKind int

const (
	runOurs runKind = iota
	runLegacy
	runBare
)

// throughput drains items with n workers and returns items per second and
// how long the drain took.
func (b *kgBench) throughput(n, items int, kind runKind, set oursSettings) (float64, time.Duration, *kgRun, error) {
	r, err := b.newRun(items, set.postgres)
	if err != nil {
		return 0, 0, nil, err
	}
	if err := r.enqueue(b.ctx, items); err != nil {
		return 0, 0, r, err
	}
	var start time.Time
	cpuBefore := processCPU()
	switch kind {
	case runOurs:
		start = time.Now()
		err = r.startOurs(b.ctx, n, set)
	case runLegacy:
		start = time.Now()
		err = r.startLegacy(b.ctx, n)
	case runBare:
		start = time.Now()
		err = r.startBare(b.ctx, n, items)
	}
	if err != nil {
		return 0, 0, r, err
	}
	if err := r.waitCompleted(b.ctx, items, 10*time.Minute); err != nil {
		return 0, 0, r, err
	}
	elapsed := time.Since(start)
	b.lastCPU = (processCPU() - cpuBefore) / time.Duration(items)
	return float64(items) / elapsed.Seconds(), elapsed, r, nil
}

// newRun makes a run's queue: a SQLite file, or a fresh database of the
// benchmark's PostgreSQL cluster, started on first use.
func (b *kgBench) newRun(docs int, postgres bool) (*kgRun, error) {
	if !postgres {
		return newKGRun(b.ctx, docs)
	}
	if b.pg == nil {
		pg, err := pgtest.Launch()
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL for the benchmark: %w", err)
		}
		b.pg = pg
	}
	dbURL, err := b.pg.NewDatabase()
	if err != nil {
		return nil, err
	}
	return newKGRunAt(b.ctx, docs, dbURL)
}

// oursThroughput measures kato-manager's workers (or, with kind, the bare
// loop), growing the item count until a run lasts at least minRun.
func (b *kgBench) oursThroughput(n int, kind runKind, set oursSettings) (rate float64, items int, err error) {
	items = 500 * n
	for try := 0; ; try++ {
		rate, elapsed, r, err := b.throughput(n, items, kind, set)
		if r != nil {
			err = errors.Join(err, r.close())
		}
		if err != nil {
			return 0, 0, err
		}
		if elapsed >= b.minRun || try == 3 {
			return rate, items, nil
		}
		items = int(math.Ceil(float64(items) * 1.25 * b.minRun.Seconds() / elapsed.Seconds()))
	}
}

// legacyThroughput measures the baseline on legacyItems items and notes any
// item it sent to the service more than once.
func (b *kgBench) legacyThroughput(n int) (float64, error) {
	rate, _, r, err := b.throughput(n, b.legacyItems, runLegacy, oursSettings{})
	if r != nil {
		if err == nil {
			dup := 0
			for _, count := range r.fake.Ingested() {
				if count > 1 {
					dup++
				}
			}
			if dup > 0 {
				b.notes = append(b.notes, fmt.Sprintf("the baseline with %d workers sent %d items to the KG service more than once (no claim guard)", n, dup))
			}
		}
		err = errors.Join(err, r.close())
	}
	return rate, err
}

// latency enqueues single items at random moments into an idle pool of one
// worker and returns each item's wait from queued_at to
// processing_started_at. Enqueue moments are spread uniformly over gap
// after the previous item finished.
func (b *kgBench) latency(ours bool, gap time.Duration) ([]time.Duration, error) {
	return b.latencyOf(1, ours, false, gap)
}

// latencyOf is latency with n idle workers, on PostgreSQL or SQLite.
func (b *kgBench) latencyOf(n int, ours, postgres bool, gap time.Duration) ([]time.Duration, error) {
	r, err := b.newRun(b.samples, postgres)
	if err != nil {
		return nil, err
	}
	lat, err := b.sampleLatency(r, n, ours, oursSettings{concurrency: 1}, gap, b.samples)
	return lat, errors.Join(err, r.close())
}

// sampleLatency enqueues samples single items, each at a random moment
// within gap after the previous one finished, into r's idle pool of n
// workers (kato-manager's with set, or the baseline's).
func (b *kgBench) sampleLatency(r *kgRun, n int, ours bool, set oursSettings, gap time.Duration, samples int) ([]time.Duration, error) {
	var err error
	if ours {
		err = r.startOurs(b.ctx, n, set)
	} else {
		err = r.startLegacy(b.ctx, 1)
	}
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := 1; i <= samples; i++ {
		time.Sleep(rand.N(gap))
		id, err := r.queue.Enqueue(b.ctx, int64(i), 1)
		if err != nil {
			return nil, err
		}
		if err := r.waitCompleted(b.ctx, i, 2*time.Minute); err != nil {
			return nil, err
		}
		it, err := r.queue.Get(b.ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, it.ProcessingStartedAt.Sub(it.QueuedAt))
	}
	return out, nil
}

// percentile returns the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// rows runs the whole worker benchmark.
func (b *kgBench) rows() ([]row, error) {
	if b.pickupOnly {
		return b.pickupRows()
	}
	if b.throughputOnly {
		return b.throughputRows()
	}
	const (
		oursName   = "kgworker.Worker, defaults (batch 5, concurrency 1)"
		legacyName = "KG Manager model worker (batch 5, sleeps 5s)"
		bareName   = "bare loop: the same claims, HTTP requests and writes"
	)
	var rows []row
	// The limit: the bare loop with 1 and with 4 goroutines; the faster
	// one is what SQLite allows here.
	var limit float64
	var limitN, limitItems int
	for _, n := range []int{1, 4} {
		rate, items, err := b.oursThroughput(n, runBare, oursSettings{})
		if err != nil {
			return nil, err
		}
		if rate > limit {
			limit, limitN, limitItems = rate, n, items
		}
	}
	limitText := fmt.Sprintf("%.1f/s (%d loop(s), %d items)", limit, limitN, limitItems)
	rates := map[int]float64{}
	for _, n := range []int{1, 2, 4} {
		ours, items, err := b.oursThroughput(n, runOurs, oursSettings{concurrency: 1})
		if err != nil {
			return nil, err
		}
		rates[n] = ours
		base, err := b.legacyThroughput(n)
		if err != nil {
			return nil, err
		}
		oursText := fmt.Sprintf("%.1f/s (%d items)", ours, items)
		rows = append(rows, row{
			what:     fmt.Sprintf("KG throughput, %d worker(s), zero-latency double, items/s", n),
			oursName: oursName, base: legacyName,
			ours:     oursText,
			baseline: fmt.Sprintf("%.2f/s (%d items)", base, b.legacyItems),
			ratio:    ours / base, ratioIs: "kato-manager/baseline",
		}, row{
			what:     fmt.Sprintf("KG throughput, %d worker(s), zero-latency double, items/s", n),
			oursName: oursName, base: bareName,
			ours: oursText, baseline: limitText,
			ratio: ours / limit, ratioIs: "kato-manager/limit (goal at 4 workers: >= 0.70)",
		})
	}
	b.notes = append(b.notes, fmt.Sprintf("4 workers / 1 worker at zero latency: %.2f (goal >= 1)", rates[4]/rates[1]))
	// With documents in flight together, their results share commits.
	grouped, gItems, err := b.oursThroughput(4, runOurs, oursSettings{concurrency: 4})
	if err != nil {
		return nil, err
	}
	rows = append(rows, row{
		what:     "KG throughput, 4 workers x concurrency 4, zero-latency double, items/s",
		oursName: "kgworker.Worker, concurrency 4 (results share commits)", base: bareName,
		ours: fmt.Sprintf("%.1f/s (%d items)", grouped, gItems), baseline: limitText,
		ratio: grouped / limit, ratioIs: "kato-manager/limit",
	})
	// Latency-bound: 4 workers x concurrency 8 against 100 ms per document
	// can do at most 4 x 8 / 0.1 s = 320 items/s.
	const ceiling = 4 * 8 / 0.1
	slow, items, err := b.oursThroughput(4, runOurs, oursSettings{concurrency: 8, latencyMS: 100})
	if err != nil {
		return nil, err
	}
	rows = append(rows, row{
		what:     "KG throughput, 4 workers x concurrency 8, 100 ms double, items/s",
		oursName: "kgworker.Worker, concurrency 8", base: "ideal: 4 x 8 / 0.1 s",
		ours: fmt.Sprintf("%.1f/s (%d items)", slow, items), baseline: fmt.Sprintf("%.0f/s", ceiling),
		ratio: slow / ceiling, ratioIs: "kato-manager/ideal (goal >= 0.90)",
	})
	ours, err := b.latency(true, 500*time.Millisecond)
	if err != nil {
		return nil, err
	}
	base, err := b.latency(false, legacyPoll)
	if err != nil {
		return nil, err
	}
	for _, p := range []float64{50, 99} {
		o, s := percentile(ours, p), percentile(base, p)
		rows = append(rows, row{
			what:     fmt.Sprintf("KG enqueue→pickup p%.0f, 1 idle worker (n=%d)", p, b.samples),
			oursName: oursName + ", file watch", base: legacyName,
			ours: round(o).String(), baseline: round(s).String(),
			ratio: float64(s) / float64(max(o, time.Millisecond)), ratioIs: "baseline/kato-manager",
		})
	}
	pickRows, err := b.pickupRows()
	if err != nil {
		return nil, err
	}
	rows = append(rows, pickRows...)
	pgRows, err := b.postgresRows()
	if err != nil {
		return nil, err
	}
	return append(rows, pgRows...), nil
}

// postgresRows compares the queue on PostgreSQL with the queue on SQLite,
// on this one host, in the same run: 8 workers draining it, and 8 idle
// workers picking up single items. Without PostgreSQL installed the rows
// are left out with a note.
func (b *kgBench) postgresRows() ([]row, error) {
	const workers = 8
	probe, err := b.newRun(0, true)
	if err != nil {
		b.notes = append(b.notes, fmt.Sprintf("no PostgreSQL rows: %v", err))
		return nil, nil
	}
	if err := probe.close(); err != nil {
		return nil, err
	}
	defer func() { b.pg.Close(); b.pg = nil }()
	const (
		pgName   = "kgworker.Worker on PostgreSQL (local socket), defaults"
		liteName = "kgworker.Worker on SQLite, defaults"
	)
	var rows []row
	lite, liteItems, err := b.oursThroughput(workers, runOurs, oursSettings{concurrency: 1})
	if err != nil {
		return nil, err
	}
	pg, pgItems, err := b.oursThroughput(workers, runOurs, oursSettings{concurrency: 1, postgres: true})
	if err != nil {
		return nil, err
	}
	rows = append(rows, row{
		what:     fmt.Sprintf("KG throughput, %d workers, zero-latency double, items/s", workers),
		oursName: pgName, base: liteName,
		ours:     fmt.Sprintf("%.1f/s (%d items)", pg, pgItems),
		baseline: fmt.Sprintf("%.1f/s (%d items)", lite, liteItems),
		ratio:    pg / lite, ratioIs: "PostgreSQL/SQLite",
	})
	liteLat, err := b.latencyOf(workers, true, false, 500*time.Millisecond)
	if err != nil {
		return nil, err
	}
	pgLat, err := b.latencyOf(workers, true, true, 500*time.Millisecond)
	if err != nil {
		return nil, err
	}
	for _, p := range []float64{50, 99} {
		o, s := percentile(pgLat, p), percentile(liteLat, p)
		rows = append(rows, row{
			what:     fmt.Sprintf("KG enqueue→pickup p%.0f, %d idle workers (n=%d)", p, workers, b.samples),
			oursName: pgName + ", LISTEN/NOTIFY", base: liteName + ", file watch",
			ours: round(o).String(), baseline: round(s).String(),
			ratio: float64(s) / float64(max(o, time.Millisecond)), ratioIs: "SQLite/PostgreSQL",
		})
	}
	return rows, nil
}

// pickupGap is the span over which pickupRows enqueues each item after the
// previous one finished: wider than the polling it is compared with, so
// that its items fall at every phase of the poll.
const pickupGap = 200 * time.Millisecond

// idleSpan is how long idleCPU measures an idle worker.
const idleSpan = 5 * time.Second

// pickupRows compares, in the same run, an idle worker on SQLite that
// waits for the kernel to report a change to the file (confirmed by
// data_version) with one that looks at data_version every 50ms, the way
// before: enqueue→pickup latency, and the CPU an idle worker uses.
func (b *kgBench) pickupRows() ([]row, error) {
	const (
		watchName = "kgworker.Worker, file watch (inotify) + data_version"
		pollName  = "kgworker.Worker, data_version every 50ms (no file watch)"
	)
	watch, poll := oursSettings{concurrency: 1}, oursSettings{concurrency: 1, poll: true}
	lat := map[bool][]time.Duration{}
	for _, set := range []oursSettings{watch, poll} {
		r, err := b.newRun(b.pickupSamples, false)
		if err != nil {
			return nil, err
		}
		l, err := b.sampleLatency(r, 1, true, set, pickupGap, b.pickupSamples)
		if err := errors.Join(err, r.close()); err != nil {
			return nil, err
		}
		lat[set.poll] = l
	}
	var rows []row
	for _, p := range []float64{50, 99} {
		o, s := percentile(lat[false], p), percentile(lat[true], p)
		rows = append(rows, row{
			what:     fmt.Sprintf("KG enqueue→pickup p%.0f, 1 idle worker, SQLite (n=%d; goal p50 <= 5ms, p99 <= 15ms)", p, b.pickupSamples),
			oursName: watchName, base: pollName,
			ours: round(o).String(), baseline: round(s).String(),
			ratio: float64(s) / float64(max(o, time.Millisecond)), ratioIs: "poll/watch",
		})
	}
	cpu := map[bool]float64{}
	for _, set := range []oursSettings{watch, poll} {
		c, err := b.idleCPU(set)
		if err != nil {
			return nil, err
		}
		cpu[set.poll] = c
	}
	rows = append(rows, row{
		what:     fmt.Sprintf("KG idle worker CPU over %s, SQLite, %% of one CPU (goal <= 0.5%%)", idleSpan),
		oursName: watchName, base: pollName,
		ours: fmt.Sprintf("%.3f%%", cpu[false]), baseline: fmt.Sprintf("%.3f%%", cpu[true]),
		ratio: cpu[true] / max(cpu[false], 0.001), ratioIs: "poll/watch",
	})
	b.notes = append(b.notes, "idle worker CPU is the whole benchmark process's (user + system) while one worker idles in it and nothing else runs: an upper bound")
	return rows, nil
}

// idleCPU starts one worker with set on an empty SQLite queue, lets it
// settle, and returns the CPU the benchmark process uses over idleSpan, in
// percent of one CPU.
func (b *kgBench) idleCPU(set oursSettings) (float64, error) {
	r, err := b.newRun(1, false)
	if err != nil {
		return 0, err
	}
	if err := r.startOurs(b.ctx, 1, set); err != nil {
		return 0, errors.Join(err, r.close())
	}
	time.Sleep(time.Second)
	before, start := processCPU(), time.Now()
	time.Sleep(idleSpan)
	used, wall := processCPU()-before, time.Since(start)
	return 100 * used.Seconds() / wall.Seconds(), r.close()
}

// processCPU returns the user and system time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// throughputRows are kato-manager's workers at 1 and at 4 beside the bare
// loop with as many goroutines. Each worker count runs rounds of a loop run
// then a worker run, each on a fresh queue of throughputItems items, so that
// the machine's other load falls on both alike; a row gives the median of
// the per-round ratios, with the medians of the rates, of the CPU time and
// of the allocations per item beside it.
func (b *kgBench) throughputRows() ([]row, error) {
	var rows []row
	type kgRound struct {
		rate   float64
		cpu    time.Duration
		allocs float64
	}
	for _, n := range []int{1, 4} {
		var bare, ours []kgRound
		var ratios []float64
		for i := 0; i < b.rounds; i++ {
			for _, kind := range []runKind{runBare, runOurs} {
				prof, err := b.startProfile(n, kind, i)
				if err != nil {
					return nil, err
				}
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				rate, _, r, err := b.throughput(n, b.throughputItems, kind, oursSettings{concurrency: 1})
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				if prof != nil {
					pprof.StopCPUProfile()
					err = errors.Join(err, prof.Close())
				}
				if r != nil {
					err = errors.Join(err, r.close())
				}
				if err != nil {
					return nil, err
				}
				got := kgRound{rate: rate, cpu: b.lastCPU, allocs: float64(after.Mallocs-before.Mallocs) / float64(b.throughputItems)}
				if kind == runBare {
					bare = append(bare, got)
				} else {
					ours = append(ours, got)
					ratios = append(ratios, rate/bare[len(bare)-1].rate)
				}
			}
		}
		med := func(rs []kgRound, f func(kgRound) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			return medianFloat(v)
		}
		rate := func(r kgRound) float64 { return r.rate }
		cpu := func(r kgRound) float64 { return float64(r.cpu) }
		allocs := func(r kgRound) float64 { return r.allocs }
		oursName := "kgworker.Worker, defaults (batch 5, concurrency 1)"
		rendered := make([]string, len(ratios))
		for i, v := range ratios {
			rendered[i] = fmt.Sprintf("%.2f", v)
		}
		b.notes = append(b.notes, fmt.Sprintf("KG throughput, %d worker(s): worker/bare loop round by round (each round: the loop, then the worker, %d items each): %s",
			n, b.throughputItems, strings.Join(rendered, ", ")))
		rows = append(rows, row{
			what:     fmt.Sprintf("KG throughput, %d worker(s), zero-latency double, items/s (median of %d rounds)", n, b.rounds),
			oursName: oursName, base: fmt.Sprintf("bare loop x %d: the same claims, HTTP requests and writes", n),
			ours:     fmt.Sprintf("%.1f/s (%d items)", med(ours, rate), b.throughputItems),
			baseline: fmt.Sprintf("%.1f/s (%d items)", med(bare, rate), b.throughputItems),
			ratio:    medianFloat(ratios), ratioIs: "kato-manager/bare loop, median of the rounds' ratios (goal >= 0.90)",
		}, row{
			what:     fmt.Sprintf("KG CPU per item, %d worker(s), zero-latency double (the process: double included)", n),
			oursName: oursName, base: fmt.Sprintf("bare loop x %d", n),
			ours: round(time.Duration(med(ours, cpu))).String(), baseline: round(time.Duration(med(bare, cpu))).String(),
			ratio: med(bare, cpu) / max(med(ours, cpu), 1), ratioIs: "bare loop/kato-manager",
		}, row{
			what:     fmt.Sprintf("KG allocations per item, %d worker(s), zero-latency double (the process: double included)", n),
			oursName: oursName, base: fmt.Sprintf("bare loop x %d", n),
			ours: fmt.Sprintf("%.0f", med(ours, allocs)), baseline: fmt.Sprintf("%.0f", med(bare, allocs)),
			ratio: med(bare, allocs) / max(med(ours, allocs), 1), ratioIs: "bare loop/kato-manager",
		})
	}
	return rows, nil
}

// startProfile starts the CPU profile of the first round of kind with n
// workers, when profiles were asked for: cpuProfile with ".worker-N" or
// ".loop-N" appended. It returns nil otherwise.
func (b *kgBench) startProfile(n int, kind runKind, round int) (*os.File, error) {
	if b.cpuProfile == "" || round > 0 {
		return nil, nil
	}
	name := "worker"
	if kind == runBare {
		name = "loop"
	}
	f, err := os.Create(fmt.Sprintf("%s.%s-%d", b.cpuProfile, name, n))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// medianFloat is the median of v, which it sorts.
func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
