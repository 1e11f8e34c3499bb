package kgworker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Stats counts what one worker has done since it started. Processed is the
// sum of the other three; items handed back to the queue are not counted.
type Stats struct {
	TotalProcessed  int       `json:"total_processed"`
	TotalSuccess    int       `json:"total_success"`
	TotalFailed     int       `json:"total_failed"`
	TotalSkipped    int       `json:"total_skipped"`
	LastProcessedAt time.Time `json:"last_processed_at,omitzero"`
}

// Opts configures a Worker. Zero values take the defaults given per field.
type Opts struct {
	// Queue is where the worker claims items. Required.
	Queue *Queue
	// Client sends items to the KG service. Required.
	Client *Client
	// Owner names this worker in leases; it must be unique among the
	// processes sharing the queue. Required.
	Owner string
	// BatchSize is how many items one claim takes. Default 5.
	BatchSize int
	// PollInterval is the longest an idle worker waits before looking at
	// the queue again; new work wakes it sooner. It also caps the delay
	// between health checks while the service is down. Default 5s.
	PollInterval time.Duration
	// Lease is how long a claim holds an item without renewal. The worker
	// renews it while it works. Default 2m.
	Lease time.Duration
	// ShutdownGrace is how long, after ctx ends, the item in hand may take
	// to finish before it is handed back. Default 10s.
	ShutdownGrace time.Duration
	// ProgressInterval is the longest the loop goes without calling
	// OnProgress. Default 10s.
	ProgressInterval time.Duration
	// OnProgress, if set, is called from the loop itself at least every
	// ProgressInterval and after every item. A loop that hangs stops
	// calling it, which makes it the place to feed a watchdog.
	OnProgress func(Stats)
	// Logf, if set, receives one line per notable event.
	Logf func(format string, args ...any)
}

// Worker moves items from the queue through the KG service, one batch at a
// time, until its context ends.
type Worker struct {
	queue    *Queue
	client   *Client
	owner    string
	batch    int
	poll     time.Duration
	lease    time.Duration
	grace    time.Duration
	beat     time.Duration
	progress func(Stats)
	logf     func(format string, args ...any)

	// down is whether the service was last seen unavailable; it only
	// keeps the log to one line per change. lastCheck is when the loop
	// last asked the service. Both belong to the loop goroutine.
	down      bool
	lastCheck time.Time

	mu    sync.Mutex
	stats Stats
}

const (
	// healthRecheck is how long a healthy verdict is trusted before the
	// worker asks the service again ahead of a claim.
	healthRecheck = 30 * time.Second
	// firstHealthRetry is the first delay before asking a service that is
	// down again; the delay doubles up to PollInterval.
	firstHealthRetry = 250 * time.Millisecond
	// errorPause is how long the loop rests after a database error.
	errorPause = time.Second
	// dbTimeout bounds one queue write made on the worker's behalf; these
	// writes run even after the worker's context ends, so that nothing is
	// left half done.
	dbTimeout = 30 * time.Second
)

// New returns a worker configured by opts.
func New(opts Opts) (*Worker, error) {
	switch {
	case opts.Queue == nil:
		return nil, errors.New("invalid worker options: no queue")
	case opts.Client == nil:
		return nil, errors.New("invalid worker options: no kg service client")
	case opts.Owner == "":
		return nil, errors.New("invalid lease owner \"\": must not be empty")
	}
	w := &Worker{
		queue:    opts.Queue,
		client:   opts.Client,
		owner:    opts.Owner,
		batch:    orDefault(opts.BatchSize, 5),
		poll:     orDefault(opts.PollInterval, 5*time.Second),
		lease:    orDefault(opts.Lease, 2*time.Minute),
		grace:    orDefault(opts.ShutdownGrace, 10*time.Second),
		beat:     orDefault(opts.ProgressInterval, 10*time.Second),
		progress: opts.OnProgress,
		logf:     opts.Logf,
	}
	switch {
	case w.batch < 0:
		return nil, fmt.Errorf("invalid batch_size %d: must be positive", w.batch)
	case w.poll < 0:
		return nil, fmt.Errorf("invalid poll_interval %s: must be positive", w.poll)
	case w.lease < 0:
		return nil, fmt.Errorf("invalid lease %s: must be positive", w.lease)
	case w.grace < 0:
		return nil, fmt.Errorf("invalid shutdown grace %s: must be zero or more", w.grace)
	case w.beat < 0:
		return nil, fmt.Errorf("invalid progress interval %s: must be positive", w.beat)
	}
	if w.logf == nil {
		w.logf = func(string, ...any) {}
	}
	return w, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

func (w *Worker) count(outcome Status) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.TotalProcessed++
	w.stats.LastProcessedAt = time.Now().UTC()
	switch outcome {
	case StatusCompleted:
		w.stats.TotalSuccess++
	case StatusSkipped:
		w.stats.TotalSkipped++
	default:
		w.stats.TotalFailed++
	}
}

func (w *Worker) tick() {
	if w.progress != nil {
		w.progress(w.Stats())
	}
}

// dbContext returns a context for a queue write that must complete even
// when ctx has ended.
func dbContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
}

// Run works the queue until ctx ends. Each round reclaims expired leases,
// makes sure the service is up, claims a batch and processes it; it goes
// straight on to the next round while batches come back full and otherwise
// waits for new work. When ctx ends it claims nothing more, lets the item in
// hand finish within the shutdown grace, hands every other item it holds
// back to the queue and returns nil. It returns an error only when it could
// not hand items back.
func (w *Worker) Run(ctx context.Context) error {
	healthDelay := firstHealthRetry
	for {
		if ctx.Err() != nil {
			return nil
		}
		w.tick()
		if err := w.reclaim(ctx); err != nil {
			w.logf("%v", err)
			w.pause(ctx, errorPause)
			continue
		}
		if ok, disabled := w.ready(ctx); !ok {
			if disabled {
				w.pause(ctx, w.poll)
				continue
			}
			w.pause(ctx, healthDelay)
			healthDelay = min(2*healthDelay, max(w.poll, firstHealthRetry))
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		items, err := w.claim(ctx)
		if err != nil {
			w.logf("%v", err)
			w.pause(ctx, errorPause)
			continue
		}
		serviceDown, err := w.process(ctx, items)
		if err != nil {
			return err
		}
		if serviceDown {
			// The health check may pass while ingests are refused; the
			// delay keeps the worker from claiming and releasing in a
			// tight loop.
			w.pause(ctx, healthDelay)
			healthDelay = min(2*healthDelay, max(w.poll, firstHealthRetry))
			continue
		}
		healthDelay = firstHealthRetry
		if len(items) == w.batch {
			continue
		}
		w.idle(ctx)
	}
}

func (w *Worker) reclaim(ctx context.Context) error {
	dctx, cancel := dbContext(ctx)
	defer cancel()
	n, err := w.queue.ReclaimExpired(dctx)
	if n > 0 {
		w.logf("reclaimed %s whose lease expired", countItems(n))
	}
	return err
}

func (w *Worker) claim(ctx context.Context) ([]Item, error) {
	dctx, cancel := dbContext(ctx)
	defer cancel()
	return w.queue.ClaimBatch(dctx, w.owner, w.batch, w.lease)
}

// ready reports whether the service can take work, asking it when the last
// verdict is stale or was negative. disabled reports that processing is
// switched off altogether.
func (w *Worker) ready(ctx context.Context) (ok, disabled bool) {
	st := w.client.Status()
	if !st.Enabled {
		if !w.down {
			w.logf("kg service disabled; not claiming work")
			w.down = true
		}
		return false, true
	}
	if st.IsHealthy && time.Since(w.lastCheck) < healthRecheck {
		return true, false
	}
	err := w.client.Health(ctx)
	w.lastCheck = time.Now()
	switch {
	case err == nil:
		if w.down {
			w.logf("kg service at %s available", st.URL)
			w.down = false
		}
		return true, false
	case ctx.Err() != nil:
		return false, false
	default:
		if !w.down {
			w.logf("kg service down, not claiming work: %v", err)
			w.down = true
		}
		return false, false
	}
}

// pause waits for d or until ctx ends, feeding the progress hook meanwhile.
func (w *Worker) pause(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		t := time.NewTimer(min(left, w.beat))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		w.tick()
	}
}

// idle waits up to the poll interval for new work, feeding the progress
// hook meanwhile.
func (w *Worker) idle(ctx context.Context) {
	deadline := time.Now().Add(w.poll)
	for {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return
		}
		ok, err := w.queue.WaitForWork(ctx, min(left, w.beat))
		if err != nil {
			w.logf("%v", err)
			w.pause(ctx, errorPause)
			return
		}
		if ok {
			return
		}
		w.tick()
	}
}

// outcome is how processing one item ended for the batch.
type outcome int

const (
	// handled: the item reached completed, pending with backoff, failed
	// or skipped, or its lease was lost.
	handled outcome = iota
	// giveBack: the item must go back to the queue untouched.
	giveBack
	// serviceDown: the service is unavailable; this item and the rest of
	// the batch go back to the queue untouched.
	serviceDown
	// interrupted: the worker is shutting down; this item and the rest of
	// the batch go back to the queue untouched.
	interrupted
)

// process works through a claimed batch in order. It reports whether the
// service went down, in which case it has handed the rest of the batch back.
func (w *Worker) process(ctx context.Context, items []Item) (bool, error) {
	if len(items) == 0 {
		return false, nil
	}
	// The item in hand runs under its own context, which outlives ctx by
	// the shutdown grace.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	go func() {
		select {
		case <-work.Done():
		case <-ctx.Done():
			grace := time.NewTimer(w.grace)
			defer grace.Stop()
			select {
			case <-work.Done():
			case <-grace.C:
				cancelWork()
			}
		}
	}()

	renew := time.NewTicker(max(min(w.beat, w.lease/3), time.Millisecond))
	defer renew.Stop()
	for i, it := range items {
		if ctx.Err() != nil {
			return false, w.giveBack(ctx, items[i:], "shutting down")
		}
		switch w.processItem(ctx, work, it, items[i:], renew.C) {
		case handled:
		case giveBack:
			// Should this fail too, the lease expires and the item is
			// reclaimed.
			if err := w.giveBack(ctx, items[i:i+1], "database error"); err != nil {
				w.logf("%v", err)
			}
		case serviceDown:
			if err := w.giveBack(ctx, items[i:], "kg service down"); err != nil {
				w.logf("%v", err)
			}
			return true, nil
		case interrupted:
			return false, w.giveBack(ctx, items[i:], "shutting down")
		}
		w.tick()
	}
	return false, nil
}

// giveBack releases items to the queue without spending attempts.
func (w *Worker) giveBack(ctx context.Context, items []Item, why string) error {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	dctx, cancel := dbContext(ctx)
	defer cancel()
	n, err := w.queue.Release(dctx, w.owner, ids...)
	if err != nil {
		return fmt.Errorf("hand back %s (%s): %w", countItems(len(ids)), why, err)
	}
	if n > 0 {
		w.logf("handed back %s: %s", countItems(n), why)
	}
	return nil
}

// processItem sends one item to the service and records the outcome. held
// is the item and the rest of the batch, whose leases it renews on every
// tick of renew while the service works.
func (w *Worker) processItem(ctx, work context.Context, it Item, held []Item, renew <-chan time.Time) outcome {
	dctx, cancel := dbContext(ctx)
	defer cancel()
	content, err := w.queue.Content(dctx, it.ContentID)
	switch {
	case errors.Is(err, ErrContentNotFound):
		return w.skip(dctx, it, fmt.Sprintf("content_id %d has no crawled_content row", it.ContentID))
	case errors.Is(err, ErrInvalidContent):
		return w.skip(dctx, it, err.Error())
	case err != nil:
		w.logf("item %d: %v", it.ID, err)
		return giveBack
	}
	if ctx.Err() != nil {
		return interrupted
	}
	res, err := w.ingest(work, NewIngestRequest(content), held, renew)
	switch {
	case err == nil:
	case errors.Is(err, ErrServiceUnavailable), errors.Is(err, ErrServiceDisabled):
		w.logf("item %d: %v", it.ID, err)
		return serviceDown
	case work.Err() != nil:
		w.logf("item %d: not finished within the shutdown grace of %s", it.ID, w.grace)
		return interrupted
	default:
		return w.fail(dctx, it, err)
	}
	dctx, cancel = dbContext(ctx)
	defer cancel()
	err = w.queue.Complete(dctx, w.owner, it.ID, res)
	switch {
	case err == nil:
		w.count(StatusCompleted)
		return handled
	case errors.Is(err, ErrLeaseLost):
		w.logf("item %d: result discarded: %v", it.ID, err)
		return handled
	default:
		w.logf("item %d: %v", it.ID, err)
		return giveBack
	}
}

// ingest runs the request while keeping the loop alive: it renews the
// leases on held and feeds the progress hook on every tick of renew.
func (w *Worker) ingest(work context.Context, req *IngestRequest, held []Item, renew <-chan time.Time) (*IngestResult, error) {
	type answer struct {
		res *IngestResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := w.client.Ingest(work, req)
		done <- answer{res, err}
	}()
	ids := make([]int64, len(held))
	for i, it := range held {
		ids[i] = it.ID
	}
	for {
		select {
		case a := <-done:
			return a.res, a.err
		case <-renew:
			w.tick()
			w.extend(work, ids)
		}
	}
}

func (w *Worker) extend(ctx context.Context, ids []int64) {
	dctx, cancel := dbContext(ctx)
	defer cancel()
	n, err := w.queue.ExtendLease(dctx, w.owner, w.lease, ids...)
	switch {
	case err != nil:
		w.logf("%v", err)
	case n < len(ids):
		w.logf("lost the lease on %d of %s", len(ids)-n, countItems(len(ids)))
	}
}

func (w *Worker) skip(ctx context.Context, it Item, reason string) outcome {
	if err := w.queue.Skip(ctx, w.owner, it.ID, reason); err != nil {
		w.logf("item %d: %v", it.ID, err)
		if errors.Is(err, ErrLeaseLost) {
			return handled
		}
		return giveBack
	}
	w.logf("item %d skipped: %s", it.ID, reason)
	w.count(StatusSkipped)
	return handled
}

func (w *Worker) fail(ctx context.Context, it Item, cause error) outcome {
	status, err := w.queue.Fail(ctx, w.owner, it.ID, cause.Error())
	if err != nil {
		w.logf("item %d: %v", it.ID, err)
		if errors.Is(err, ErrLeaseLost) {
			return handled
		}
		return giveBack
	}
	if status == StatusFailed {
		w.logf("item %d failed for good: %v", it.ID, cause)
	} else {
		w.logf("item %d will be retried: %v", it.ID, cause)
	}
	w.count(StatusFailed)
	return handled
}

// countItems renders n with the noun "item" for log lines.
func countItems(n int) string {
	if n == 1 {
		return "1 item"
	}
	return fmt.Sprintf("%d items", n)
}
