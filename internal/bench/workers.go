package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/kato-manager/kato-manager/internal/kgservicefake"
	"github.com/kato-manager/kato-manager/kgworker"
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
	// seedItems is the number of items the baseline's throughput is
	// measured on: it does about one item per second per worker.
	seedItems int
	// samples is the number of enqueue→pickup latencies measured each way.
	samples int
	// notes are printed under the table.
	notes []string
}

// kgRun is one pool on one fresh queue.
type kgRun struct {
	dir    string
	path   string
	queue  *kgworker.Queue // the benchmark's own handle: setup and watching
	raw    *sql.DB
	fake   *kgservicefake.Server
	server *httptest.Server
	cancel context.CancelFunc
	exited chan error
	n      int
	closes []func() error
}

// newKGRun creates a queue holding documents 1..docs, none of them queued.
func newKGRun(ctx context.Context, docs int) (*kgRun, error) {
	dir, err := os.MkdirTemp("", "kato-bench-kg-")
	if err != nil {
		return nil, fmt.Errorf("create kg benchmark directory: %w", err)
	}
	r := &kgRun{dir: dir, path: filepath.Join(dir, "kg.db"), exited: make(chan error, 64)}
	if r.queue, err = kgworker.Open(ctx, r.path); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if r.raw, err = sql.Open("sqlite3", "file:"+r.path+"?_busy_timeout=10000"); err != nil {
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
	_, err := r.raw.ExecContext(ctx, `
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO crawled_content(id, url, title, markdown, metadata)
SELECT i, 'https://example.com/docs/' || i, 'Document ' || i, '# Document ' || i || char(10) || 'Body of document ' || i || '.',
	json_object('n', i) FROM n;
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count)
SELECT c.id, k.i, 'Chunk ' || k.i || ' of document ' || c.id, k.i * 100, k.i * 100 + 99, 5
FROM crawled_content c JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2) k ON k.i < c.id % 3 + 1;`, n)
	if err != nil {
		return fmt.Errorf("insert %d benchmark documents: %w", n, err)
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

// startOurs starts n of kato-manager's workers with their defaults.
func (r *kgRun) startOurs(ctx context.Context, n int) error {
	ctx, r.cancel = context.WithCancel(ctx)
	for i := 1; i <= n; i++ {
		q, err := kgworker.Open(ctx, r.path)
		if err != nil {
			return err
		}
		r.closes = append(r.closes, q.Close)
		client, err := r.client()
		if err != nil {
			return err
		}
		w, err := kgworker.New(kgworker.Opts{Queue: q, Client: client, Owner: fmt.Sprintf("bench-worker-%d", i)})
		if err != nil {
			return err
		}
		r.n++
		go func() { r.exited <- w.Run(ctx) }()
	}
	return nil
}

// startSeed starts n seedWorkers. Their first polls are spread evenly over
// one poll interval, the baseline's best case: started together they would
// select the same rows.
func (r *kgRun) startSeed(ctx context.Context, n int) error {
	ctx, r.cancel = context.WithCancel(ctx)
	for i := 0; i < n; i++ {
		db, err := sql.Open("sqlite3", "file:"+r.path+"?_busy_timeout=10000")
		if err != nil {
			return fmt.Errorf("open %s: %w", r.path, err)
		}
		r.closes = append(r.closes, db.Close)
		q, err := kgworker.Open(ctx, r.path)
		if err != nil {
			return err
		}
		r.closes = append(r.closes, q.Close)
		client, err := r.client()
		if err != nil {
			return err
		}
		w := &seedWorker{db: db, queue: q, client: client, batch: seedBatch, poll: seedPoll}
		delay := time.Duration(i) * seedPoll / time.Duration(n)
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

// throughput drains items with n workers and returns items per second and
// how long the drain took.
func (b *kgBench) throughput(n, items int, ours bool) (float64, time.Duration, *kgRun, error) {
	r, err := newKGRun(b.ctx, items)
	if err != nil {
		return 0, 0, nil, err
	}
	if err := r.enqueue(b.ctx, items); err != nil {
		return 0, 0, r, err
	}
	start := time.Now()
	if ours {
		err = r.startOurs(b.ctx, n)
	} else {
		err = r.startSeed(b.ctx, n)
	}
	if err != nil {
		return 0, 0, r, err
	}
	if err := r.waitCompleted(b.ctx, items, 10*time.Minute); err != nil {
		return 0, 0, r, err
	}
	elapsed := time.Since(start)
	return float64(items) / elapsed.Seconds(), elapsed, r, nil
}

// oursThroughput measures kato-manager's workers, growing the item count
// until a run lasts at least minRun.
func (b *kgBench) oursThroughput(n int) (rate float64, items int, err error) {
	items = 500 * n
	for try := 0; ; try++ {
		rate, elapsed, r, err := b.throughput(n, items, true)
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

// seedThroughput measures the baseline on seedItems items and notes any
// item it sent to the service more than once.
func (b *kgBench) seedThroughput(n int) (float64, error) {
	rate, _, r, err := b.throughput(n, b.seedItems, false)
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
	r, err := newKGRun(b.ctx, b.samples)
	if err != nil {
		return nil, err
	}
	lat, err := b.sampleLatency(r, ours, gap)
	return lat, errors.Join(err, r.close())
}

func (b *kgBench) sampleLatency(r *kgRun, ours bool, gap time.Duration) ([]time.Duration, error) {
	var err error
	if ours {
		err = r.startOurs(b.ctx, 1)
	} else {
		err = r.startSeed(b.ctx, 1)
	}
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := 1; i <= b.samples; i++ {
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
	const (
		oursName = "kgworker.Worker, defaults (batch 5, poll 5s)"
		seedName = "seed worker model (batch 5, sleeps 5s)"
	)
	var rows []row
	for _, n := range []int{1, 2, 4} {
		ours, items, err := b.oursThroughput(n)
		if err != nil {
			return nil, err
		}
		base, err := b.seedThroughput(n)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{
			what:     fmt.Sprintf("KG throughput, %d worker(s), items/s", n),
			oursName: oursName, base: seedName,
			ours:     fmt.Sprintf("%.1f/s (%d items)", ours, items),
			baseline: fmt.Sprintf("%.2f/s (%d items)", base, b.seedItems),
			ratio:    ours / base, ratioIs: "kato-manager/baseline",
		})
	}
	ours, err := b.latency(true, 500*time.Millisecond)
	if err != nil {
		return nil, err
	}
	base, err := b.latency(false, seedPoll)
	if err != nil {
		return nil, err
	}
	for _, p := range []float64{50, 99} {
		o, s := percentile(ours, p), percentile(base, p)
		rows = append(rows, row{
			what:     fmt.Sprintf("KG enqueue→pickup p%.0f, 1 idle worker (n=%d)", p, b.samples),
			oursName: oursName + ", wakes on commit", base: seedName,
			ours: round(o).String(), baseline: round(s).String(),
			ratio: float64(s) / float64(max(o, time.Millisecond)), ratioIs: "baseline/kato-manager",
		})
	}
	return rows, nil
}
