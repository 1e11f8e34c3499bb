package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/promtest"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/supervisor"
)

// countingQueue is a queue database that counts the reads serve's pages
// and scrapes make of it.
type countingQueue struct {
	Queue
	overviews, others atomic.Int32
}

func (c *countingQueue) Overview(ctx context.Context, status kgworker.Status, limit int) (QueueOverview, error) {
	c.overviews.Add(1)
	return ReadOverview(ctx, c.Queue, status, limit)
}

func (c *countingQueue) Stats(ctx context.Context) (kgworker.Counts, error) {
	c.others.Add(1)
	return c.Queue.Stats(ctx)
}

func (c *countingQueue) Reports(ctx context.Context) ([]kgworker.Report, error) {
	c.others.Add(1)
	return c.Queue.Reports(ctx)
}

func (c *countingQueue) Latencies(ctx context.Context) (queue.Latencies, error) {
	c.others.Add(1)
	return c.Queue.Latencies(ctx)
}

func (c *countingQueue) List(ctx context.Context, status kgworker.Status, limit int) ([]kgworker.Item, error) {
	c.others.Add(1)
	return c.Queue.List(ctx, status, limit)
}

// slowFleet is a fleet sample that counts its calls and holds each until
// released, keeping the context it was given.
type slowFleet struct {
	calls   atomic.Int32
	started chan struct{} // one value per call
	release chan struct{}
	mu      sync.Mutex
	ctxs    []context.Context
}

func newSlowFleet() *slowFleet {
	return &slowFleet{started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (f *slowFleet) sample(ctx context.Context) (*supervisor.Sample, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.ctxs = append(f.ctxs, ctx)
	f.mu.Unlock()
	f.started <- struct{}{}
	select {
	case <-f.release:
		return &supervisor.Sample{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// snapshotServer serves a dashboard with public reads whose fleet is f and
// whose queue is a real database, counted.
func snapshotServer(t *testing.T, f *slowFleet, maxAge time.Duration, now func() time.Time) (*httptest.Server, *countingQueue) {
	t.Helper()
	kq, err := kgworker.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kq.Close() })
	q := &countingQueue{Queue: kgdb.NewLocal(kq)}
	d, err := newDashboard(&supervisor.Manager{}, nil, q, q, dashboardOptions{publicReads: true, listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	d.snaps = newSnapshots(f.sample, q, maxAge, 5*time.Second)
	d.snaps.now = now
	mux := http.NewServeMux()
	d.routes(mux)
	srv := httptest.NewServer(d.guard(mux))
	t.Cleanup(srv.Close)
	return srv, q
}

func getStatus(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the status counts
	return resp.StatusCode, nil
}

// TestConcurrentReadersShareOneSnapshot: scrapes and page loads that come
// while a snapshot is being taken wait for that one; the next ones within
// the snapshot's age are served it from memory; the queue is read in one
// request. Only once the snapshot is older than its age is another taken.
func TestConcurrentReadersShareOneSnapshot(t *testing.T) {
	f := newSlowFleet()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	srv, q := snapshotServer(t, f, time.Second, now)

	const n = 40
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		path := "/metrics"
		if i%2 == 1 {
			path = "/"
		}
		wg.Go(func() {
			code, err := getStatus(context.Background(), srv.URL+path)
			if err != nil {
				t.Error(err)
			}
			codes <- code
		})
	}
	<-f.started
	time.Sleep(200 * time.Millisecond) // the others arrive meanwhile
	close(f.release)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("a reader got %d", code)
		}
	}
	for range 5 {
		if code, err := getStatus(context.Background(), srv.URL+"/metrics"); err != nil || code != http.StatusOK {
			t.Fatalf("GET /metrics after: %d, %v", code, err)
		}
	}
	if got := f.calls.Load(); got != 1 {
		t.Errorf("%d readers sampled the fleet %d times, want once", n+5, got)
	}
	if got, other := q.overviews.Load(), q.others.Load(); got != 1 || other != 0 {
		t.Errorf("%d readers read the queue in %d overviews and %d other calls, want one overview", n+5, got, other)
	}
	clock.Add(int64(time.Second))
	if code, err := getStatus(context.Background(), srv.URL+"/"); err != nil || code != http.StatusOK {
		t.Fatalf("GET / a second later: %d, %v", code, err)
	}
	if got := f.calls.Load(); got != 2 {
		t.Errorf("a snapshot as old as its age was served again (%d samples, want 2)", got)
	}
}

// TestCancelledReaderLeavesSnapshotsWorking: a reader that goes away while
// the snapshot is taken cancels nothing: the sample goes on with a live
// context, and the next reader gets that snapshot without another sample.
func TestCancelledReaderLeavesSnapshotsWorking(t *testing.T) {
	f := newSlowFleet()
	srv, _ := snapshotServer(t, f, time.Minute, time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := getStatus(ctx, srv.URL+"/metrics")
		gone <- err
	}()
	<-f.started
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled GET: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // the server sees the connection closed
	f.mu.Lock()
	sampleErr := f.ctxs[0].Err()
	f.mu.Unlock()
	if sampleErr != nil {
		t.Errorf("the reader's leaving ended the shared sample: %v", sampleErr)
	}
	close(f.release)
	for _, path := range []string{"/metrics", "/"} {
		if code, err := getStatus(context.Background(), srv.URL+path); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s after a cancelled one: %d, %v", path, code, err)
		}
	}
	if got := f.calls.Load(); got != 1 {
		t.Errorf("the fleet was sampled %d times, want once (the cancelled reader's snapshot serves the next)", got)
	}
}

// TestRequestsPastTheBoundAre503: with max requests being answered, one
// more is answered 503 with Retry-After at once, not queued; once a slot
// is free requests are answered again.
func TestRequestsPastTheBoundAre503(t *testing.T) {
	const max = 3
	inside, release := make(chan struct{}, max), make(chan struct{})
	srv := httptest.NewServer(limitRequests(max, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inside <- struct{}{}
		<-release
	})))
	defer srv.Close()
	var wg sync.WaitGroup
	for range max {
		wg.Go(func() {
			if code, err := getStatus(context.Background(), srv.URL); err != nil || code != http.StatusOK {
				t.Errorf("a request within the bound: %d, %v", code, err)
			}
		})
	}
	for range max {
		<-inside
	}
	client := &http.Client{Timeout: 2 * time.Second}
	start := time.Now()
	resp, err := client.Get(srv.URL)
	if err != nil {
		close(release)
		t.Fatalf("a request past the bound was not answered at once: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("past the bound: %s, Retry-After %q; want 503 with Retry-After 1", resp.Status, resp.Header.Get("Retry-After"))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the 503 took %s", took)
	}
	close(release)
	wg.Wait()
	go func() { <-inside }()
	if code, err := getStatus(context.Background(), srv.URL); err != nil || code != http.StatusOK {
		t.Errorf("after the others ended: %d, %v", code, err)
	}
}

// TestMetricsEncodedOncePerSnapshot: /metrics answers in the text format,
// gzipped for a scraper that accepts it and plain for one that does not,
// and both parse.
func TestMetricsEncodedOncePerSnapshot(t *testing.T) {
	f := newSlowFleet()
	close(f.release)
	srv, _ := snapshotServer(t, f, time.Minute, time.Now)
	for _, gz := range []bool{true, false} {
		client := &http.Client{Transport: &http.Transport{DisableCompression: !gz}}
		for range 2 {
			resp, err := client.Get(srv.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			fams, err := promtest.Parse(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("gzip %v: parse /metrics: %v", gz, err)
			}
			if !resp.Uncompressed == gz || resp.Header.Get("Content-Type") == "" {
				t.Errorf("gzip %v: uncompressed by the client %v, Content-Type %q", gz, resp.Uncompressed, resp.Header.Get("Content-Type"))
			}
			if _, ok := promtest.Value(fams, "kg_queue_items", "status", "pending"); !ok {
				t.Errorf("gzip %v: no kg_queue_items", gz)
			}
		}
	}
	if got := f.calls.Load(); got != 1 {
		t.Errorf("4 scrapes sampled the fleet %d times", got)
	}
}

// TestForgetTakesANewSnapshot: after an action (forget), the next reader
// gets a new snapshot however young the last one was, and one begun before
// the action is not kept.
func TestForgetTakesANewSnapshot(t *testing.T) {
	f := newSlowFleet()
	kq, err := kgworker.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer kq.Close()
	s := newSnapshots(f.sample, kgdb.NewLocal(kq), time.Minute, 5*time.Second)
	ctx := context.Background()
	before := make(chan *snapshot, 1)
	go func() {
		snap, _ := s.get(ctx, defaultPageStatus)
		before <- snap
	}()
	<-f.started // a snapshot is being taken
	s.forget()
	close(f.release)
	after, err := s.get(ctx, defaultPageStatus)
	if err != nil {
		t.Fatal(err)
	}
	if old := <-before; old == after {
		t.Error("a reader after forget got the snapshot begun before it")
	}
	if again, _ := s.get(ctx, defaultPageStatus); again != after {
		t.Error("the snapshot taken after forget is not kept")
	}
	if got := f.calls.Load(); got != 2 {
		t.Errorf("%d samples, want 2", got)
	}
}
