package kgworker_test

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
)

// rig is a queue database, a fake KG service and a client pointing at it.
type rig struct {
	path   string
	q      *kgdb.DB
	db     *sql.DB
	fake   *kgservicefake.Server
	srv    *httptest.Server
	client *kgworker.Client
}

func newRig(t *testing.T, be backend, opts ...kgdb.Option) *rig {
	t.Helper()
	q, path := openQueue(t, be, opts...)
	fake := kgservicefake.New()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	client, err := kgworker.NewClient(kgworker.ClientOpts{URL: srv.URL, Enabled: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{path: path, q: q, db: rawDB(t, path), fake: fake, srv: srv, client: client}
}

// fill adds n documents with two chunks each, from content id first on, and
// queues them.
func (r *rig) fill(t *testing.T, first int64, n int) []int64 {
	t.Helper()
	var queued []int64
	for c := first; c < first+int64(n); c++ {
		addContent(t, r.db, c, 2)
		queued = append(queued, enqueue(t, r.q, c, 1))
	}
	return queued
}

func (r *rig) counts(t *testing.T) queue.Counts {
	t.Helper()
	st, err := r.q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// running is a worker started by start.
type running struct {
	w      *kgworker.Worker
	cancel context.CancelFunc
	done   chan error
}

// start runs a worker on the rig with opts filled in, and stops it when the
// test ends.
func (r *rig) start(t *testing.T, opts kgworker.Opts) *running {
	t.Helper()
	opts.Queue = r.q
	if opts.Client == nil {
		opts.Client = r.client
	}
	if opts.Owner == "" {
		opts.Owner = "test-worker"
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	w, err := kgworker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- w.Run(ctx) }()
	t.Cleanup(func() { run.stop(t) })
	return run
}

// stop cancels the worker and waits for Run to return.
func (run *running) stop(t *testing.T) error {
	t.Helper()
	run.cancel()
	select {
	case err, ok := <-run.done:
		if ok {
			close(run.done)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not stop within 20s of cancellation")
		return nil
	}
}

func TestNewRejects(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be)
		for _, tc := range []struct {
			name string
			opts kgworker.Opts
			want string
		}{
			{"no queue", kgworker.Opts{Client: r.client, Owner: "w"}, "invalid worker options: no queue"},
			{"no client", kgworker.Opts{Queue: r.q, Owner: "w"}, "invalid worker options: no kg service client"},
			{"no owner", kgworker.Opts{Queue: r.q, Client: r.client}, `invalid lease owner "": must not be empty`},
			{"negative batch", kgworker.Opts{Queue: r.q, Client: r.client, Owner: "w", BatchSize: -1}, "invalid batch_size -1: must be positive"},
			{"negative poll", kgworker.Opts{Queue: r.q, Client: r.client, Owner: "w", PollInterval: -time.Second}, "invalid poll_interval -1s: must be positive"},
			{"negative lease", kgworker.Opts{Queue: r.q, Client: r.client, Owner: "w", Lease: -time.Second}, "invalid lease -1s: must be positive"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := kgworker.New(tc.opts); err == nil || err.Error() != tc.want {
					t.Errorf("New error = %v, want %q", err, tc.want)
				}
			})
		}
	})
}

func TestWorkerProcessesEveryItemOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be)
		queued := r.fill(t, 1, 12)
		run := r.start(t, kgworker.Opts{BatchSize: 5})

		waitFor(t, 10*time.Second, "all items completed", func() bool { return r.counts(t).Completed == len(queued) })

		ingested := r.fake.Ingested()
		for c := int64(1); c <= 12; c++ {
			if ingested[c] != 1 {
				t.Errorf("content %d ingested %d times, want 1", c, ingested[c])
			}
		}
		req, ok := r.fake.LastRequest(3)
		if !ok || len(req.Chunks) != 2 || req.Chunks[0].VectorRowID != 300 || req.Chunks[1].VectorRowID != 301 ||
			req.Title != "Page 3" || string(req.Metadata) != `{"lang":"en"}` {
			t.Errorf("request for content 3 = %+v, want its two chunks 300 and 301, title and metadata", req)
		}
		// The fake answers, for two chunks, the document entity appearing in both
		// and a topic entity per chunk (four entity rows), and a relationship per
		// chunk.
		if n := queryInt(t, r.db, "SELECT count(*) FROM chunk_entities"); n != 12*4 {
			t.Errorf("%d entity rows, want %d", n, 12*4)
		}
		if n := queryInt(t, r.db, "SELECT count(*) FROM crawled_content WHERE kg_processed = TRUE AND kg_entity_count = 3 AND kg_relationship_count = 2"); n != 12 {
			t.Errorf("%d documents marked processed with their counts, want 12", n)
		}
		if err := run.stop(t); err != nil {
			t.Fatal(err)
		}
		st := run.w.Stats()
		if st.TotalProcessed != 12 || st.TotalSuccess != 12 || st.TotalFailed != 0 || st.LastProcessedAt.IsZero() {
			t.Errorf("worker stats = %+v, want 12 processed, all successful", st)
		}
	})
}

func TestWorkerSkipsMissingContent(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be)
		id := enqueue(t, r.q, 99, 1)
		run := r.start(t, kgworker.Opts{})
		waitFor(t, 5*time.Second, "item skipped", func() bool { return r.counts(t).Skipped == 1 })
		it := get(t, r.q, id)
		if it.SkippedReason != "content_id 99 has no crawled_content row" {
			t.Errorf("skipped_reason = %q", it.SkippedReason)
		}
		if len(r.fake.Ingested()) != 0 {
			t.Errorf("skipped content was sent to the service: %v", r.fake.Ingested())
		}
		run.stop(t)
		if st := run.w.Stats(); st.TotalSkipped != 1 || st.TotalProcessed != 1 {
			t.Errorf("stats = %+v, want one skipped", st)
		}
	})
}

func TestWorkerRetriesItemErrorsThenFails(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be, kgdb.WithMaxRetries(2), kgdb.WithBackoff(20*time.Millisecond, 40*time.Millisecond))
		queued := r.fill(t, 1, 2)
		r.fake.SetControl(kgservicefake.Control{FailIDs: []int64{2}})
		run := r.start(t, kgworker.Opts{PollInterval: 30 * time.Millisecond})

		waitFor(t, 10*time.Second, "bad item failed", func() bool { return r.counts(t).Failed == 1 })
		good, bad := get(t, r.q, queued[0]), get(t, r.q, queued[1])
		if good.Status != queue.StatusCompleted || good.RetryCount != 0 {
			t.Errorf("good item: %q with %d retries, want completed with none", good.Status, good.RetryCount)
		}
		if bad.RetryCount != 3 || !strings.Contains(bad.ErrorMessage, "extraction failed for content_id 2") {
			t.Errorf("bad item: %d retries, error %q; want 3 and the service's message", bad.RetryCount, bad.ErrorMessage)
		}
		run.stop(t)
		if st := run.w.Stats(); st.TotalFailed != 3 || st.TotalSuccess != 1 {
			t.Errorf("stats = %+v, want 3 failed attempts and 1 success", st)
		}
	})
}

// TestWorkerOutageSpendsNoAttempts keeps the service away and checks that
// nothing is failed, nothing stays claimed, and all work is done once the
// service is back.
func TestWorkerOutageSpendsNoAttempts(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		for _, tc := range []struct {
			name    string
			down    func(t *testing.T, r *rig) (url string)
			restore func(t *testing.T, r *rig)
		}{
			{
				name: "service answers 503",
				down: func(t *testing.T, r *rig) string {
					r.fake.SetControl(kgservicefake.Control{Outage: true})
					return r.srv.URL
				},
				restore: func(t *testing.T, r *rig) { r.fake.SetControl(kgservicefake.Control{}) },
			},
			{
				name: "connection refused",
				down: func(t *testing.T, r *rig) string {
					ln, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					addr := ln.Addr().String()
					ln.Close()
					return "http://" + addr
				},
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := newRig(t, be)
				queued := r.fill(t, 1, 6)
				url := tc.down(t, r)
				client, err := kgworker.NewClient(kgworker.ClientOpts{URL: url, Enabled: true})
				if err != nil {
					t.Fatal(err)
				}
				run := r.start(t, kgworker.Opts{Client: client, BatchSize: 5, PollInterval: 200 * time.Millisecond})

				waitFor(t, 5*time.Second, "health checks failing", func() bool { return client.Status().ConsecutiveFailures >= 3 })
				for _, id := range queued {
					if it := get(t, r.q, id); it.Status != queue.StatusPending || it.RetryCount != 0 {
						t.Errorf("item %d during outage: %q with %d retries, want pending with none", id, it.Status, it.RetryCount)
					}
				}
				if st := client.Status(); st.IsHealthy || st.LastHealthCheck.IsZero() {
					t.Errorf("service status during outage = %+v, want unhealthy and checked", st)
				}

				if tc.restore != nil {
					tc.restore(t, r)
				} else {
					ln, err := net.Listen("tcp", strings.TrimPrefix(url, "http://"))
					if err != nil {
						t.Fatalf("listen again on %s: %v", url, err)
					}
					srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: r.fake}}
					srv.Start()
					t.Cleanup(srv.Close)
				}
				waitFor(t, 10*time.Second, "all items completed after the outage", func() bool { return r.counts(t).Completed == len(queued) })
				for _, id := range queued {
					if it := get(t, r.q, id); it.RetryCount != 0 {
						t.Errorf("item %d spent %d attempts in the outage", id, it.RetryCount)
					}
				}
				for c, n := range r.fake.Ingested() {
					if n != 1 {
						t.Errorf("content %d ingested %d times", c, n)
					}
				}
				run.stop(t)
				if st := run.w.Stats(); st.TotalFailed != 0 {
					t.Errorf("stats = %+v, want no failures", st)
				}
			})
		}
	})
}

// TestWorkerOutageMidBatch takes the service down while a batch is being
// worked: the rest of the batch goes back to the queue untouched.
func TestWorkerOutageMidBatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be)
		queued := r.fill(t, 1, 5)
		r.fake.SetControl(kgservicefake.Control{LatencyMS: 150})
		run := r.start(t, kgworker.Opts{BatchSize: 5, PollInterval: 100 * time.Millisecond})

		waitFor(t, 5*time.Second, "first item in flight", func() bool { return r.counts(t).Processing == 5 })
		r.fake.SetControl(kgservicefake.Control{LatencyMS: 150, Outage: true})
		waitFor(t, 5*time.Second, "batch handed back", func() bool {
			c := r.counts(t)
			return c.Processing == 0 && c.Pending+c.Completed == 5
		})
		c := r.counts(t)
		if c.Pending == 0 || c.Failed != 0 {
			t.Errorf("after the outage hit: %+v, want items pending again and none failed", c)
		}
		for _, id := range queued {
			if it := get(t, r.q, id); it.RetryCount != 0 || it.Status == queue.StatusFailed {
				t.Errorf("item %d: %q with %d retries, want no attempt spent", id, it.Status, it.RetryCount)
			}
		}

		r.fake.SetControl(kgservicefake.Control{})
		waitFor(t, 10*time.Second, "all completed after recovery", func() bool { return r.counts(t).Completed == 5 })
		for c, n := range r.fake.Ingested() {
			if n != 1 {
				t.Errorf("content %d ingested %d times, want 1", c, n)
			}
		}
		run.stop(t)
	})
}

// TestWorkerBacksOffWhenIngestRefused covers a service whose health check
// passes while every ingest answers 503: the worker must neither spend
// attempts nor claim and release in a tight loop.
func TestWorkerBacksOffWhenIngestRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be)
		queued := r.fill(t, 1, 2)
		var ingests atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/api/v1/ingest" {
				ingests.Add(1)
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			r.fake.ServeHTTP(w, req)
		}))
		t.Cleanup(srv.Close)
		client, err := kgworker.NewClient(kgworker.ClientOpts{URL: srv.URL, Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		run := r.start(t, kgworker.Opts{Client: client, PollInterval: 200 * time.Millisecond})
		time.Sleep(time.Second)
		run.stop(t)
		t.Logf("%d ingest requests in 1s", ingests.Load())
		if n := ingests.Load(); n == 0 || n > 10 {
			t.Errorf("%d ingest requests in 1s, want a few spaced by the backoff", n)
		}
		for _, id := range queued {
			if it := get(t, r.q, id); it.Status != queue.StatusPending || it.RetryCount != 0 {
				t.Errorf("item %d: %q with %d retries, want pending with none", id, it.Status, it.RetryCount)
			}
		}
	})
}

func TestWorkerShutdown(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		for _, tc := range []struct {
			name          string
			latencyMS     int
			grace         time.Duration
			wantCompleted int
		}{
			{"item in hand finishes within the grace", 300, 5 * time.Second, 1},
			{"item in hand outlasts the grace and goes back", 10000, 200 * time.Millisecond, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := newRig(t, be)
				queued := r.fill(t, 1, 4)
				r.fake.SetControl(kgservicefake.Control{LatencyMS: tc.latencyMS})
				run := r.start(t, kgworker.Opts{BatchSize: 4, ShutdownGrace: tc.grace})
				waitFor(t, 5*time.Second, "batch claimed", func() bool { return r.counts(t).Processing == 4 })
				time.Sleep(50 * time.Millisecond) // the first ingest is under way

				start := time.Now()
				if err := run.stop(t); err != nil {
					t.Fatalf("Run returned %v on shutdown, want nil", err)
				}
				if took := time.Since(start); took > tc.grace+3*time.Second {
					t.Errorf("shutdown took %s with a grace of %s", took, tc.grace)
				}
				c := r.counts(t)
				if c.Processing != 0 {
					t.Errorf("%d items left in processing after shutdown", c.Processing)
				}
				if c.Completed != tc.wantCompleted || c.Pending != 4-tc.wantCompleted {
					t.Errorf("after shutdown: %+v, want %d completed and the rest pending", c, tc.wantCompleted)
				}
				for _, id := range queued {
					if it := get(t, r.q, id); it.RetryCount != 0 || it.LeaseOwner != "" {
						t.Errorf("item %d: %d retries, owner %q; want untouched", id, it.RetryCount, it.LeaseOwner)
					}
				}
			})
		}
	})
}

// TestWorkerPickupLatency checks that an idle worker notices new work long
// before its poll interval.
func TestWorkerPickupLatency(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be)
		run := r.start(t, kgworker.Opts{PollInterval: 5 * time.Second})
		time.Sleep(500 * time.Millisecond) // the worker has found nothing and idles

		addContent(t, r.db, 1, 1)
		enqueued := time.Now()
		id := enqueue(t, r.q, 1, 1)
		waitFor(t, 4*time.Second, "item completed", func() bool { return get(t, r.q, id).Status == queue.StatusCompleted })
		if took := time.Since(enqueued); took > time.Second {
			t.Errorf("item completed %s after it was enqueued, want well under the 5s poll interval", took)
		}
		run.stop(t)
	})
}

func TestWorkerDisabledServiceClaimsNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be)
		queued := r.fill(t, 1, 3)
		client, err := kgworker.NewClient(kgworker.ClientOpts{URL: r.srv.URL, Enabled: false})
		if err != nil {
			t.Fatal(err)
		}
		run := r.start(t, kgworker.Opts{Client: client, PollInterval: 50 * time.Millisecond})
		time.Sleep(500 * time.Millisecond)
		if err := run.stop(t); err != nil {
			t.Fatal(err)
		}
		if c := r.counts(t); c.Pending != len(queued) {
			t.Errorf("queue with the service disabled: %+v, want all %d pending", c, len(queued))
		}
		if len(r.fake.Ingested()) != 0 {
			t.Errorf("disabled worker sent work: %v", r.fake.Ingested())
		}
	})
}

// TestWorkerRenewsLeaseDuringLongIngest makes an ingest last several
// leases: another worker reclaiming expired leases meanwhile must find
// nothing to reclaim.
func TestWorkerRenewsLeaseDuringLongIngest(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be)
		queued := r.fill(t, 1, 2)
		r.fake.SetControl(kgservicefake.Control{LatencyMS: 700})
		run := r.start(t, kgworker.Opts{BatchSize: 2, Lease: 300 * time.Millisecond})

		other := openQueueAt(t, r.path)
		deadline := time.Now().Add(10 * time.Second)
		for r.counts(t).Completed < 2 {
			if time.Now().After(deadline) {
				t.Fatal("items not completed within 10s")
			}
			if n, err := other.ReclaimExpired(context.Background()); err != nil || n != 0 {
				t.Fatalf("another worker reclaimed %d items (%v) while their holder was working", n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, id := range queued {
			if it := get(t, r.q, id); it.RetryCount != 0 {
				t.Errorf("item %d: %d retries, want 0", id, it.RetryCount)
			}
		}
		run.stop(t)
	})
}

// TestWorkerReclaimsCrashedWorkersItems leaves an item leased to a worker
// that is gone; a live worker puts it back and processes it.
func TestWorkerReclaimsCrashedWorkersItems(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be, kgdb.WithBackoff(10*time.Millisecond, 20*time.Millisecond))
		queued := r.fill(t, 1, 1)
		if got := claim(t, r.q, "crashed", 1, 100*time.Millisecond); len(got) != 1 {
			t.Fatal("setup claim failed")
		}
		run := r.start(t, kgworker.Opts{PollInterval: 50 * time.Millisecond})
		waitFor(t, 5*time.Second, "orphaned item completed", func() bool {
			return get(t, r.q, queued[0]).Status == queue.StatusCompleted
		})
		if it := get(t, r.q, queued[0]); it.RetryCount != 1 {
			t.Errorf("reclaimed item: %d retries, want the crash counted as 1", it.RetryCount)
		}
		run.stop(t)
	})
}

// TestWorkerProgressComesFromTheLoop checks that the hook is called while
// the worker idles, while it waits on a slow service, and that it carries
// the counters.
func TestWorkerProgressComesFromTheLoop(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		r := newRig(t, be)
		var calls atomic.Int64
		var mu sync.Mutex
		var last kgdb.WorkerStats
		hook := func(st kgdb.WorkerStats) {
			calls.Add(1)
			mu.Lock()
			last = st
			mu.Unlock()
		}
		r.fake.SetControl(kgservicefake.Control{LatencyMS: 1000})
		r.fill(t, 1, 1)
		r.start(t, kgworker.Opts{PollInterval: 10 * time.Second, ProgressInterval: 50 * time.Millisecond, OnProgress: hook})

		waitFor(t, 5*time.Second, "ingest under way", func() bool { return r.counts(t).Processing == 1 })
		before := calls.Load()
		time.Sleep(500 * time.Millisecond)
		if got := calls.Load() - before; got < 4 {
			t.Errorf("progress called %d times in 500ms of a slow ingest, want at least 4 at a 50ms interval", got)
		}
		waitFor(t, 5*time.Second, "item completed", func() bool { return r.counts(t).Completed == 1 })
		before = calls.Load()
		time.Sleep(500 * time.Millisecond)
		if got := calls.Load() - before; got < 4 {
			t.Errorf("progress called %d times in 500ms idle, want at least 4", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if last.TotalSuccess != 1 || last.TotalProcessed != 1 {
			t.Errorf("progress saw %+v, want the completed item counted", last)
		}
	})
}

// TestDrainingWorkerLooksForExpiredLeasesOncePerInterval drains a queue of
// full batches: the look for expired leases, a read of its own, is made at
// most once a second while claims come back full, not before every claim.
func TestDrainingWorkerLooksForExpiredLeasesOncePerInterval(t *testing.T) {
	r := newRig(t, serviceBackend)
	const items = 200
	r.fill(t, 1, items)
	start := time.Now()
	run := r.start(t, kgworker.Opts{PollInterval: time.Hour})
	waitFor(t, 60*time.Second, "every item completed", func() bool {
		return run.w.Stats().TotalSuccess == items
	})
	elapsed := time.Since(start)
	run.stop(t)
	// Claims of 5: 40 full ones. Once at the start, once a second while
	// they come back full, once after the last (not full) claim.
	if got, bound := kgworker.Reclaims(run.w), 3+int(elapsed/time.Second); got > bound {
		t.Errorf("looked for expired leases %d times over %d claims in %s, want at most %d", got, items/5, elapsed.Round(time.Millisecond), bound)
	}
}
