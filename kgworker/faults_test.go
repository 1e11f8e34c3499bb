package kgworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
)

// fastRetries makes failed items come back within milliseconds.
var fastRetries = kgdb.WithBackoff(20*time.Millisecond, 100*time.Millisecond)

func itemByContent(t *testing.T, q *kgdb.DB, contentID int64) queue.Item {
	t.Helper()
	items, err := q.List(context.Background(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.ContentID == contentID {
			return it
		}
	}
	t.Fatalf("no item for content %d", contentID)
	return queue.Item{}
}

// TestPoisonDocumentDoesNotHoldBackOthers: a document whose request the
// service reads and then drops (a crash on that document), queued with a
// higher priority than 100 good ones. Every good one completes, and the
// poison one ends failed after max_retries, in bounded time.
func TestPoisonDocumentDoesNotHoldBackOthers(t *testing.T) {
	r := newRig(t, serviceBackend, kgdb.WithMaxRetries(3), fastRetries)
	r.fill(t, 1, 100)
	addContent(t, r.db, 500, 2)
	enqueue(t, r.q, 500, 10)
	r.fake.SetControl(kgservicefake.Control{Faults: map[int64]string{500: kgservicefake.FaultDrop}})
	r.start(t, kgworker.Opts{Concurrency: 4})

	start := time.Now()
	waitFor(t, 30*time.Second, "the pool to drain", func() bool {
		c := r.counts(t)
		return c.Completed == 100 && c.Failed == 1
	})
	t.Logf("drained in %s", time.Since(start))
	poison := itemByContent(t, r.q, 500)
	if poison.Status != queue.StatusFailed || poison.RetryCount != 4 || !strings.Contains(poison.ErrorMessage, "sent, then") ||
		!strings.Contains(poison.ErrorMessage, "gave up after 4 attempts") {
		t.Errorf("poison item = %+v, want failed after 4 attempts with the dropped connection", poison)
	}
	if got := r.fake.Received()[500]; got != 4 {
		t.Errorf("the poison document was sent %d times, want 4 (1 + max_retries 3)", got)
	}
	for c := int64(1); c <= 100; c++ {
		if r.fake.Ingested()[c] != 1 {
			t.Errorf("content %d ingested %d times, want 1", c, r.fake.Ingested()[c])
		}
	}
}

// TestEachFaultSpendsAnAttemptAndKeepsEarlierResults processes a document
// once, then again against each fault after a request was sent: every
// retry is spent, the item ends failed with a clear error, and the first
// run's results stay as they were.
func TestEachFaultSpendsAnAttemptAndKeepsEarlierResults(t *testing.T) {
	for _, tc := range []struct {
		fault, want string
	}{
		{kgservicefake.FaultError, "ExtractionError"},
		{kgservicefake.FaultDrop, "sent, then"},
		{kgservicefake.FaultHang, "no answer within"},
		{kgservicefake.FaultWrongContentID, "answer is for content_id 8"},
		{kgservicefake.FaultCountMismatch, "entities_extracted 4 but 3 entities"},
		{kgservicefake.FaultMissingFields, "answer lacks neo4j_document_id, summary"},
		{kgservicefake.FaultSuccessOnly, "answer lacks content_id, neo4j_document_id, entities_extracted"},
		{kgservicefake.FaultWrongTypes, `JSON string into Go int64 within "/content_id"`},
		{kgservicefake.FaultUnknownChunk, "vector_rowid -1 is not a chunk of the request"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			r := newRig(t, serviceBackend, kgdb.WithMaxRetries(1), fastRetries)
			addContent(t, r.db, 7, 2)
			enqueue(t, r.q, 7, 1)
			client, err := kgworker.NewClient(kgworker.ClientOpts{URL: r.srv.URL, Enabled: true, Timeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			run := r.start(t, kgworker.Opts{Client: client})
			waitFor(t, 10*time.Second, "the first run", func() bool { return r.counts(t).Completed == 1 })
			before := snapshot(t, r.db, 7)

			r.fake.SetControl(kgservicefake.Control{Faults: map[int64]string{7: tc.fault}})
			again := enqueue(t, r.q, 7, 1)
			waitFor(t, 20*time.Second, "the second run to fail", func() bool { return get(t, r.q, again).Status == queue.StatusFailed })
			it := get(t, r.q, again)
			if it.RetryCount != 2 || !strings.Contains(it.ErrorMessage, tc.want) {
				t.Errorf("item = retries %d, error %q; want 2 attempts and an error with %q", it.RetryCount, it.ErrorMessage, tc.want)
			}
			if after := snapshot(t, r.db, 7); after != before {
				t.Errorf("a contract-breaking answer changed the results:\nbefore %s\nafter  %s", before, after)
			}
			run.stop(t)
		})
	}
}

// snapshot renders the KG results of a document for comparison.
func snapshot(t *testing.T, db *sql.DB, contentID int64) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		"SELECT kg_processed, kg_entity_count, kg_relationship_count, kg_document_id, kg_processed_at FROM crawled_content WHERE id = ?",
		"SELECT group_concat(entity_text || '@' || chunk_rowid, ',') FROM (SELECT * FROM chunk_entities WHERE content_id = ? ORDER BY id)",
		"SELECT group_concat(subject_entity || '>' || object_entity, ',') FROM (SELECT * FROM chunk_relationships WHERE content_id = ? ORDER BY id)",
		"SELECT group_concat(kg_processed, ',') FROM content_chunks WHERE content_id = ?",
	} {
		rows, err := db.Query(q, contentID)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			rows.Scan(ptrs...)
			fmt.Fprintf(&b, "%v;", vals)
		}
		rows.Close()
	}
	return b.String()
}

// TestRetryAfterIsHonoured: a 429 with Retry-After hands the item back
// without an attempt and nothing is sent again before the delay passes.
func TestRetryAfterIsHonoured(t *testing.T) {
	for _, fault := range []string{kgservicefake.FaultThrottle, kgservicefake.FaultUnavailable} {
		t.Run(fault, func(t *testing.T) {
			r := newRig(t, serviceBackend)
			addContent(t, r.db, 7, 1)
			id := enqueue(t, r.q, 7, 1)
			r.fake.SetControl(kgservicefake.Control{Faults: map[int64]string{7: fault}, RetryAfterS: 2})
			start := time.Now()
			r.start(t, kgworker.Opts{})
			waitFor(t, 5*time.Second, "the first request", func() bool { return r.fake.Received()[7] == 1 })
			time.Sleep(time.Second)
			it := get(t, r.q, id)
			if it.Status != queue.StatusPending || it.RetryCount != 0 || it.NextAttemptAt.Sub(start) < 1900*time.Millisecond {
				t.Errorf("after %s the item is %+v; want pending, no attempt spent, due 2s on", fault, it)
			}
			if n := r.fake.Received()[7]; n != 1 {
				t.Errorf("sent %d times within a second of Retry-After: 2", n)
			}
			r.fake.SetControl(kgservicefake.Control{})
			waitFor(t, 10*time.Second, "completion", func() bool { return get(t, r.q, id).Status == queue.StatusCompleted })
			if took := time.Since(start); took < 2*time.Second {
				t.Errorf("completed %s after the first request, before the Retry-After", took)
			}
		})
	}
}

// TestSlowFailureCounts: a failure more than 30 seconds after the request
// was sent (the old database deadline) still spends its attempt.
func TestSlowFailureCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 31 seconds")
	}
	r := newRig(t, serviceBackend, kgdb.WithMaxRetries(3))
	addContent(t, r.db, 7, 1)
	id := enqueue(t, r.q, 7, 1)
	r.fake.SetControl(kgservicefake.Control{LatencyMS: 31_000, Faults: map[int64]string{7: kgservicefake.FaultError}})
	client, err := kgworker.NewClient(kgworker.ClientOpts{URL: r.srv.URL, Enabled: true, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r.start(t, kgworker.Opts{Client: client, Lease: 10 * time.Second})
	waitFor(t, 45*time.Second, "the slow failure to be recorded", func() bool { return get(t, r.q, id).RetryCount == 1 })
	if it := get(t, r.q, id); it.Status != queue.StatusPending || !strings.Contains(it.ErrorMessage, "ExtractionError") {
		t.Errorf("item after a 31s failure = %+v", it)
	}
}

// TestWriteLockHeldDuringCompletion holds SQLite's write lock for 10
// seconds, longer than the busy timeout, while the service answers: the
// result is written once the lock is free, and nothing is sent twice.
func TestWriteLockHeldDuringCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("holds the lock 10 seconds")
	}
	r := newRig(t, serviceBackend)
	addContent(t, r.db, 7, 2)
	id := enqueue(t, r.q, 7, 1)
	var once sync.Once
	released := make(chan struct{})
	var lockErr error
	r.fake.BeforeAnswer = func(int64) {
		once.Do(func() {
			conn, err := r.db.Conn(context.Background())
			if err != nil {
				lockErr = err
				close(released)
				return
			}
			if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
				lockErr = err
				conn.Close()
				close(released)
				return
			}
			go func() {
				time.Sleep(10 * time.Second)
				conn.ExecContext(context.Background(), "ROLLBACK")
				conn.Close()
				close(released)
			}()
		})
	}
	r.start(t, kgworker.Opts{Lease: 6 * time.Second})
	select {
	case <-released:
	case <-time.After(30 * time.Second):
		t.Fatal("the lock was never taken")
	}
	if lockErr != nil {
		t.Fatal(lockErr)
	}
	waitFor(t, 20*time.Second, "completion after the lock", func() bool { return get(t, r.q, id).Status == queue.StatusCompleted })
	if got := r.fake.Received()[7]; got != 1 {
		t.Errorf("the document was sent %d times, want once", got)
	}
	if n := queryInt(t, r.db, "SELECT count(*) FROM chunk_entities WHERE content_id = 7"); n != 4 {
		t.Errorf("%d entity rows after the locked completion, want 4", n)
	}
}

// TestConcurrencyKeepsThatManyInFlight: with concurrency 8 the service has
// eight of the worker's documents at once, never more.
func TestConcurrencyKeepsThatManyInFlight(t *testing.T) {
	r := newRig(t, serviceBackend)
	r.fill(t, 1, 24)
	var now, peak atomic.Int64
	r.fake.BeforeAnswer = func(int64) {
		n := now.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(150 * time.Millisecond)
		now.Add(-1)
	}
	client, err := kgworker.NewClient(kgworker.ClientOpts{URL: r.srv.URL, Enabled: true, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.start(t, kgworker.Opts{Client: client, Concurrency: 8, BatchSize: 5})
	waitFor(t, 10*time.Second, "all completed", func() bool { return r.counts(t).Completed == 24 })
	took := time.Since(start)
	if peak.Load() != 8 {
		t.Errorf("%d documents at the service at once, want 8", peak.Load())
	}
	// Three rounds of 150ms, not 24.
	if took > 2*time.Second {
		t.Errorf("24 documents of 150ms took %s with concurrency 8", took)
	}
}

// TestDatabaseErrorsStopTheWorker: once the queue table is gone (a
// damaged database), the worker gives up after MaxDBErrors errors in a row
// instead of reporting healthy for ever.
func TestDatabaseErrorsStopTheWorker(t *testing.T) {
	r := newRig(t, serviceBackend)
	run := r.start(t, kgworker.Opts{MaxDBErrors: 3, DBRetryPause: 10 * time.Millisecond})
	mustExec(t, r.db, "ALTER TABLE kg_processing_queue RENAME TO broken")
	select {
	case err := <-run.done:
		close(run.done)
		if !errors.Is(err, kgworker.ErrDatabase) || !strings.Contains(err.Error(), "3 errors in a row") {
			t.Errorf("Run = %v, want ErrDatabase after 3 errors", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker kept running on a broken database")
	}
}

// TestReadOnlyOpenTakesNoWriteLock reads the queue while another
// connection holds the write lock.
func TestReadOnlyOpenTakesNoWriteLock(t *testing.T) {
	q, path := openQueue(t, backends[0])
	enqueue(t, q, 1, 1)
	db := rawDB(t, path)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")

	start := time.Now()
	ro, err := kgdb.OpenReadOnly(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	c, err := ro.Stats(context.Background())
	if err != nil || c.Pending != 1 {
		t.Fatalf("Stats = %+v, %v", c, err)
	}
	if _, err := ro.List(context.Background(), "", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Reports(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second || !ro.ReadOnly() {
		t.Errorf("read-only open and reads took %s under a held write lock (read-only %v)", took, ro.ReadOnly())
	}
	if err := ro.Complete(context.Background(), "w", 1, &kgdb.IngestResult{}); !errors.Is(err, kgdb.ErrReadOnly) {
		t.Errorf("Complete on a read-only queue = %v", err)
	}
	if _, err := ro.Enqueue(context.Background(), 2, 1); err == nil {
		t.Error("Enqueue on a read-only queue succeeded")
	}
}

// TestReadOnlyOpenOfANewDatabaseCreatesIt: with no file yet, a read-only
// command opens it as Open would, so that it shows an empty queue.
func TestReadOnlyOpenOfANewDatabaseCreatesIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kg.db")
	q, err := kgdb.OpenReadOnly(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if c, err := q.Stats(context.Background()); err != nil || c.Total != 0 || q.ReadOnly() {
		t.Errorf("Stats = %+v, %v, read-only %v", c, err, q.ReadOnly())
	}
}

// TestServiceErrorTextIsBounded: a service that puts a whole page into its
// error (200 KiB here, with a multi-byte character across every possible
// cut, escape sequences and a byte that is not UTF-8) leaves at most
// queue.MaxMessageBytes of valid UTF-8 in error_message, marked as cut, in
// the retried item and in the item that failed for good, and no longer
// log lines.
func TestServiceErrorTextIsBounded(t *testing.T) {
	r := newRig(t, serviceBackend, kgdb.WithMaxRetries(1), fastRetries)
	r.fill(t, 1, 1)
	page := "<html>\x1b]0;owned\x07" + strings.Repeat("é\x1b[2J\xff", 200<<10/7) + "</html>"
	r.fake.SetControl(kgservicefake.Control{Faults: map[int64]string{1: kgservicefake.FaultError}, ErrorText: page})
	var mu sync.Mutex
	var longest int
	r.start(t, kgworker.Opts{Logf: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		longest = max(longest, len(fmt.Sprintf(format, args...)))
	}})

	check := func(it queue.Item) {
		t.Helper()
		msg := it.ErrorMessage
		switch {
		case len(msg) > queue.MaxMessageBytes:
			t.Errorf("error_message of %d bytes, want at most %d", len(msg), queue.MaxMessageBytes)
		case !utf8.ValidString(msg):
			t.Errorf("error_message is not valid UTF-8: %q", msg[len(msg)-100:])
		case !strings.HasPrefix(msg, "kg ingest failed: content_id 1") || !strings.Contains(msg, "ExtractionError: <html>"):
			t.Errorf("error_message does not start with what happened: %.200q", msg)
		case !strings.Contains(msg, "bytes in all]"):
			t.Errorf("error_message is not marked as cut: %q", msg[max(0, len(msg)-100):])
		}
	}
	waitFor(t, 10*time.Second, "the first failed attempt", func() bool { return itemByContent(t, r.q, 1).RetryCount >= 1 })
	first := itemByContent(t, r.q, 1)
	check(first)
	waitFor(t, 10*time.Second, "the item to fail for good", func() bool { return itemByContent(t, r.q, 1).Status == queue.StatusFailed })
	last := itemByContent(t, r.q, 1)
	check(last)
	if !strings.HasSuffix(last.ErrorMessage, "(gave up after 2 attempts)") {
		t.Errorf("error_message of the failed item ends %q", last.ErrorMessage[max(0, len(last.ErrorMessage)-80):])
	}
	mu.Lock()
	defer mu.Unlock()
	if longest > queue.MaxMessageBytes+100 {
		t.Errorf("a log line of %d bytes", longest)
	}
}
