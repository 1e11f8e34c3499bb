package kgworker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/queue"
)

// Opts configures a Worker. Zero values take the defaults given per field.
type Opts struct {
	// Queue is where the worker claims items. Required.
	Queue *kgdb.DB
	// Client sends items to the KG service. Required.
	Client *Client
	// Owner names this worker in leases; it must be unique among the
	// processes sharing the queue. Required.
	Owner string
	// BatchSize is how many items one claim takes at least. Default 5.
	BatchSize int
	// Concurrency is how many documents the worker has at the service at
	// once. Default 1.
	Concurrency int
	// PollInterval is the longest an idle worker waits before looking at
	// the queue again; new work wakes it sooner. It also caps the delay
	// between health checks while the service is down. Default 5s.
	PollInterval time.Duration
	// Lease is how long a claim holds an item without renewal. The worker
	// renews it while it works. Default 2m.
	Lease time.Duration
	// ShutdownGrace is how long, after ctx ends, the items in hand may take
	// to finish before they are handed back. Default 10s.
	ShutdownGrace time.Duration
	// ProgressInterval is the longest the loop goes without calling
	// OnProgress. Default 10s.
	ProgressInterval time.Duration
	// MaxDBErrors is how many database errors in a row make the worker
	// give up: Run then returns an error. Default 10.
	MaxDBErrors int
	// DBRetryPause is how long the worker waits before it writes again
	// after a database error. Default 1s.
	DBRetryPause time.Duration
	// OnProgress, if set, is called from the loop itself at least every
	// ProgressInterval and after every item. A loop that hangs stops
	// calling it, which makes it the place to feed a watchdog.
	OnProgress func(kgdb.WorkerStats)
	// Logf, if set, receives one line per notable event.
	Logf func(format string, args ...any)
}

// ErrDatabase is the error Run returns when the database failed
// MaxDBErrors times in a row.
var ErrDatabase = errors.New("queue database keeps failing")

// Worker moves items from the queue through the KG service, up to
// Concurrency at a time, until its context ends.
type Worker struct {
	queue       *kgdb.DB
	client      *Client
	owner       string
	batch       int
	concurrency int
	poll        time.Duration
	lease       time.Duration
	grace       time.Duration
	beat        time.Duration
	maxDBErrors int
	dbPause     time.Duration
	progress    func(kgdb.WorkerStats)
	logf        func(format string, args ...any)

	// down is whether the service was last seen unavailable; it only
	// keeps the log to one line per change. lastCheck is when the loop
	// last asked the service. Both belong to the loop goroutine.
	down      bool
	lastCheck time.Time
	// noWatch is whether the last wait for work could not watch the
	// database's files; it keeps the log to one line per change.
	noWatch bool
	// lastReclaim is when the loop last looked for expired leases, and
	// reclaims how many times it has looked. Both belong to the loop
	// goroutine.
	lastReclaim time.Time
	reclaims    int

	mu    sync.Mutex
	stats kgdb.WorkerStats
	// held are the items this worker holds a lease on, waiting or in
	// flight; the renewer extends their leases.
	held map[int64]bool
	// notSent is set by an item whose request did not reach the service;
	// the loop then checks the service's health before claiming again.
	notSent bool
	// throttledUntil is when the service's last Retry-After ends.
	throttledUntil time.Time
	// dbErrors counts database errors in a row; fatal is set once they
	// reach maxDBErrors.
	dbErrors int
	fatal    error
	dead     chan struct{}

	// commits are the finished ingests waiting to be written; committing
	// is whether a goroutine is writing them. Both are guarded by mu.
	commits    []*pendingCommit
	committing bool
}

// pendingCommit is one result waiting to be written.
type pendingCommit struct {
	it   queue.Item
	res  *kgdb.IngestResult
	done chan error
}

// maxGroupCommit bounds how many results one transaction writes.
const maxGroupCommit = 32

const (
	// reclaimEvery is the longest a worker whose claims keep coming back
	// full goes without looking for expired leases; a quarter of the lease
	// when that is shorter.
	reclaimEvery = time.Second
	// healthRecheck is how long a healthy verdict is trusted before the
	// worker asks the service again ahead of a claim.
	healthRecheck = 30 * time.Second
	// firstHealthRetry is the first delay before asking a service that is
	// down again; the delay doubles up to PollInterval.
	firstHealthRetry = 250 * time.Millisecond
	// dbTimeout bounds one queue write made on the worker's behalf. Every
	// write gets a fresh one when it starts, never one made before a
	// request to the service, and it runs even after the worker's context
	// ends, so that nothing is left half done.
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
		queue:       opts.Queue,
		client:      opts.Client,
		owner:       opts.Owner,
		batch:       orDefault(opts.BatchSize, 5),
		concurrency: orDefault(opts.Concurrency, 1),
		poll:        orDefault(opts.PollInterval, 5*time.Second),
		lease:       orDefault(opts.Lease, 2*time.Minute),
		grace:       orDefault(opts.ShutdownGrace, 10*time.Second),
		beat:        orDefault(opts.ProgressInterval, 10*time.Second),
		maxDBErrors: orDefault(opts.MaxDBErrors, 10),
		dbPause:     orDefault(opts.DBRetryPause, time.Second),
		progress:    opts.OnProgress,
		logf:        opts.Logf,
		held:        map[int64]bool{},
		dead:        make(chan struct{}),
	}
	switch {
	case w.batch < 0:
		return nil, fmt.Errorf("invalid batch_size %d: must be positive", w.batch)
	case w.concurrency < 0:
		return nil, fmt.Errorf("invalid concurrency %d: must be positive", w.concurrency)
	case w.poll < 0:
		return nil, fmt.Errorf("invalid poll_interval %s: must be positive", w.poll)
	case w.lease < 0:
		return nil, fmt.Errorf("invalid lease %s: must be positive", w.lease)
	case w.grace < 0:
		return nil, fmt.Errorf("invalid shutdown grace %s: must be zero or more", w.grace)
	case w.beat < 0:
		return nil, fmt.Errorf("invalid progress interval %s: must be positive", w.beat)
	case w.maxDBErrors < 0:
		return nil, fmt.Errorf("invalid database error limit %d: must be positive", w.maxDBErrors)
	case w.dbPause < 0:
		return nil, fmt.Errorf("invalid database retry pause %s: must be positive", w.dbPause)
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
func (w *Worker) Stats() kgdb.WorkerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

func (w *Worker) count(outcome queue.Status) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.TotalProcessed++
	w.stats.LastProcessedAt = time.Now().UTC()
	switch outcome {
	case queue.StatusCompleted:
		w.stats.TotalSuccess++
	case queue.StatusSkipped:
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

// dbContext returns a fresh context for one queue write that must complete
// even when ctx has ended.
func dbContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
}

// dbResult counts a database outcome: a success clears the run of errors,
// the MaxDBErrors-th error in a row kills the worker. It returns err.
func (w *Worker) dbResult(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil || errors.Is(err, queue.ErrLeaseLost) {
		w.dbErrors = 0
		return err
	}
	w.dbErrors++
	if w.dbErrors >= w.maxDBErrors && w.fatal == nil {
		w.fatal = fmt.Errorf("%w: %d errors in a row, the last: %v", ErrDatabase, w.dbErrors, err)
		close(w.dead)
	}
	return err
}

func (w *Worker) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fatal
}

// settle runs one queue write after a request until it succeeds, the lease
// is lost or the worker gives up on the database. Every try has its own
// fresh deadline; the renewer keeps the item's lease meanwhile, so that a
// result the service gave is never thrown away because the write lock was
// busy for a while.
func (w *Worker) settle(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	for {
		dctx, cancel := dbContext(ctx)
		err := w.dbResult(fn(dctx))
		cancel()
		if err == nil || errors.Is(err, queue.ErrLeaseLost) {
			return err
		}
		if w.failed() != nil {
			return err
		}
		w.logf("%s: %v; trying again", what, err)
		select {
		case <-time.After(w.dbPause):
		case <-w.dead:
			return err
		}
	}
}

// healthBackOff is the wait before asking a service that is down again:
// firstHealthRetry, doubling up to the poll interval, without jitter; it
// starts over (Reset) once the service answers.
func healthBackOff(poll time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: firstHealthRetry, Multiplier: 2, MaxInterval: max(poll, firstHealthRetry)}
	b.Reset()
	return b
}

// Run works the queue until ctx ends. Each round makes sure the service is
// up; when a slot is free and no claimed item waits, it reclaims expired
// leases and claims a batch; it hands the items to the slots. It goes
// straight on while claims come back full and otherwise waits for new work
// or a free slot. When ctx ends it claims nothing more, lets the items in
// flight finish within the shutdown grace, hands every other item it holds
// back to the queue and returns nil.
// It returns an error wrapping ErrDatabase when the database failed
// MaxDBErrors times in a row.
func (w *Worker) Run(ctx context.Context) error {
	// work is the context of the requests in flight: it outlives ctx by
	// the shutdown grace.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopRenew := w.startRenewer()
	defer stopRenew()

	var (
		wg       sync.WaitGroup
		waiting  []queue.Item
		inFlight int
		done     = make(chan struct{}, w.concurrency)
	)
	health := healthBackOff(w.poll)
	claimSize := max(w.batch, w.concurrency)
	// draining is whether the last claim took as many items as it asked
	// for.
	draining := false

	finish := func() error {
		w.giveBack(ctx, waiting, "shutting down")
		waiting = nil
		go func() {
			grace := time.NewTimer(w.grace)
			defer grace.Stop()
			select {
			case <-grace.C:
				cancelWork()
			case <-work.Done():
			}
		}()
		all := make(chan struct{})
		go func() { wg.Wait(); close(all) }()
		for {
			select {
			case <-all:
				cancelWork()
				return w.failed()
			case <-time.After(w.beat):
				w.tick()
			}
		}
	}

	for {
		// Take in the slots that came free.
		for drained := false; !drained; {
			select {
			case <-done:
				inFlight--
			default:
				drained = true
			}
		}
		if ctx.Err() != nil || w.failed() != nil {
			return finish()
		}
		w.tick()
		if w.takeNotSent() {
			w.lastCheck = time.Time{}
		}
		if ok, disabled := w.ready(ctx); !ok {
			if len(waiting) > 0 {
				w.giveBack(ctx, waiting, "kg service down")
				waiting = nil
			}
			if disabled {
				w.pauseFor(ctx, w.poll, done, &inFlight)
				continue
			}
			w.pauseFor(ctx, health.NextBackOff(), done, &inFlight)
			continue
		}
		health.Reset()
		if until := w.throttle(); time.Now().Before(until) {
			w.pauseFor(ctx, time.Until(until), done, &inFlight)
			continue
		}
		claimedFull := false
		if len(waiting) == 0 && inFlight < w.concurrency {
			// Expired leases matter only to a claim, which may take
			// their items: look for them just before claiming, not
			// on every round. While claims keep coming back full,
			// look at most every reclaimEvery: an expired lease has
			// already waited a whole lease, and the look would
			// otherwise be a read for every batch.
			if !draining || time.Since(w.lastReclaim) >= min(reclaimEvery, w.lease/4) {
				if err := w.reclaim(ctx); err != nil {
					w.logf("%v", err)
					w.pauseFor(ctx, w.dbPause, done, &inFlight)
					continue
				}
			}
			items, err := w.claim(ctx, claimSize)
			if err != nil {
				w.logf("%v", err)
				w.pauseFor(ctx, w.dbPause, done, &inFlight)
				continue
			}
			waiting = items
			claimedFull = len(items) == claimSize
			draining = claimedFull
		}
		for len(waiting) > 0 && inFlight < w.concurrency {
			it := waiting[0]
			waiting = waiting[1:]
			inFlight++
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.handle(ctx, work, it)
				done <- struct{}{}
			}()
		}
		switch {
		case inFlight >= w.concurrency:
			// Every slot is busy: wait for one.
			w.waitSlot(ctx, done, &inFlight)
		case len(waiting) > 0 || claimedFull:
			// More to do at once.
		default:
			w.idle(ctx, done, &inFlight)
		}
	}
}

func (w *Worker) takeNotSent() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.notSent
	w.notSent = false
	return v
}

func (w *Worker) throttle() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.throttledUntil
}

// startRenewer extends the leases on every held item, several times per
// lease, until the returned function is called.
func (w *Worker) startRenewer() func() {
	stop := make(chan struct{})
	stopped := make(chan struct{})
	every := max(w.lease/3, time.Millisecond)
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			w.mu.Lock()
			ids := make([]int64, 0, len(w.held))
			for id := range w.held {
				ids = append(ids, id)
			}
			w.mu.Unlock()
			if len(ids) == 0 {
				continue
			}
			dctx, cancel := dbContext(context.Background())
			n, err := w.queue.ExtendLease(dctx, w.owner, w.lease, ids...)
			cancel()
			switch {
			case w.dbResult(err) != nil:
				w.logf("%v", err)
			case n < len(ids):
				w.logf("lost the lease on %d of %s", len(ids)-n, countItems(len(ids)))
			}
		}
	}()
	return func() { close(stop); <-stopped }
}

func (w *Worker) hold(items []queue.Item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, it := range items {
		w.held[it.ID] = true
	}
}

func (w *Worker) unhold(ids ...int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		delete(w.held, id)
	}
}

func (w *Worker) reclaim(ctx context.Context) error {
	w.lastReclaim = time.Now()
	w.reclaims++
	dctx, cancel := dbContext(ctx)
	defer cancel()
	n, err := w.queue.ReclaimExpired(dctx)
	if n > 0 {
		w.logf("reclaimed %s whose lease expired", countItems(n))
	}
	return w.dbResult(err)
}

func (w *Worker) claim(ctx context.Context, n int) ([]queue.Item, error) {
	dctx, cancel := dbContext(ctx)
	defer cancel()
	items, err := w.queue.ClaimBatch(dctx, w.owner, n, w.lease)
	if w.dbResult(err) != nil {
		return nil, err
	}
	w.hold(items)
	return items, nil
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

// pauseFor waits for d or until ctx ends, counting the slots that come free
// and feeding the progress hook meanwhile.
func (w *Worker) pauseFor(ctx context.Context, d time.Duration, done <-chan struct{}, inFlight *int) {
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
		case <-w.dead:
			t.Stop()
			return
		case <-done:
			*inFlight--
			t.Stop()
			continue
		case <-t.C:
		}
		w.tick()
	}
}

// waitSlot waits until an item in flight finishes.
func (w *Worker) waitSlot(ctx context.Context, done <-chan struct{}, inFlight *int) {
	for {
		t := time.NewTimer(w.beat)
		select {
		case <-done:
			t.Stop()
			*inFlight--
			return
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.dead:
			t.Stop()
			return
		case <-t.C:
			w.tick()
		}
	}
}

// idle waits up to the poll interval for new work or for an item in flight
// to finish, feeding the progress hook meanwhile.
func (w *Worker) idle(ctx context.Context, done <-chan struct{}, inFlight *int) {
	deadline := time.Now().Add(w.poll)
	for {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil || w.failed() != nil {
			return
		}
		wctx, cancel := context.WithCancel(ctx)
		freed := make(chan bool, 1)
		go func() {
			select {
			case <-done:
				freed <- true
				cancel()
			case <-w.dead:
				freed <- false
				cancel()
			case <-wctx.Done():
				freed <- false
			}
		}()
		ok, err := w.queue.WaitForWork(wctx, min(left, w.beat))
		cancel()
		if <-freed {
			*inFlight--
			return
		}
		if err != nil {
			w.dbResult(err)
			w.logf("%v", err)
			w.pauseFor(ctx, w.dbPause, done, inFlight)
			return
		}
		w.dbResult(nil)
		w.noteFileWatch()
		if ok {
			return
		}
		w.tick()
	}
}

// noteFileWatch logs when the wait for work stops or starts again having
// the kernel watch the database's files.
func (w *Worker) noteFileWatch() {
	err := w.queue.FileWatchErr()
	if (err != nil) == w.noWatch {
		return
	}
	w.noWatch = err != nil
	if err != nil {
		w.logf("cannot watch the kg database's files, polling it for new items instead: %v", err)
	} else {
		w.logf("watching the kg database's files again")
	}
}

// giveBack releases items to the queue without spending attempts.
func (w *Worker) giveBack(ctx context.Context, items []queue.Item, why string) {
	w.giveBackUntil(ctx, items, why, time.Time{})
}

// giveBackUntil releases items to the queue without spending attempts, not
// due again before notBefore (zero: at once).
func (w *Worker) giveBackUntil(ctx context.Context, items []queue.Item, why string, notBefore time.Time) {
	if len(items) == 0 {
		return
	}
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	var n int
	err := w.settle(ctx, fmt.Sprintf("hand back %s (%s)", countItems(len(ids)), why), func(ctx context.Context) error {
		var err error
		n, err = w.queue.ReleaseUntil(ctx, w.owner, notBefore, ids...)
		return err
	})
	w.unhold(ids...)
	if err != nil {
		// The leases expire and the items are reclaimed.
		w.logf("hand back %s (%s): %v", countItems(len(ids)), why, err)
		return
	}
	if n > 0 {
		w.logf("handed back %s: %s", countItems(n), why)
	}
}

// handle takes one item through the service and records the outcome.
func (w *Worker) handle(ctx, work context.Context, it queue.Item) {
	dctx, cancel := dbContext(ctx)
	content, err := w.queue.Content(dctx, it.ContentID)
	cancel()
	switch {
	case errors.Is(err, kgdb.ErrContentNotFound):
		w.skip(ctx, it, fmt.Sprintf("content_id %d has no crawled_content row", it.ContentID))
		return
	case errors.Is(err, kgdb.ErrInvalidContent):
		w.skip(ctx, it, err.Error())
		return
	case err != nil:
		w.dbResult(err)
		w.logf("item %d: %v", it.ID, err)
		w.giveBack(ctx, []queue.Item{it}, "database error")
		return
	}
	if ctx.Err() != nil {
		w.giveBack(ctx, []queue.Item{it}, "shutting down")
		return
	}
	res, err := w.client.Ingest(work, kgdb.NewIngestRequest(content))
	fault, notBefore := ClassifyFault(err)
	switch {
	case err == nil:
		w.complete(ctx, it, res)
	case work.Err() != nil:
		w.logf("item %d: not finished within the shutdown grace of %s", it.ID, w.grace)
		w.giveBack(ctx, []queue.Item{it}, "shutting down")
	case fault == FaultNotSent:
		w.logf("item %d: %s", it.ID, bounded(err))
		w.mu.Lock()
		w.notSent = true
		w.mu.Unlock()
		w.giveBack(ctx, []queue.Item{it}, "kg service unreachable")
	case fault == FaultDeferred:
		w.logf("item %d: %s", it.ID, bounded(err))
		until := time.Now().Add(notBefore)
		w.mu.Lock()
		w.notSent = true
		w.throttledUntil = until
		w.mu.Unlock()
		w.giveBackUntil(ctx, []queue.Item{it}, fmt.Sprintf("kg service asked to wait %s", notBefore), w.queue.Now().Add(notBefore))
	default:
		w.fail(ctx, it, queue.Failure{Reason: err.Error(), Final: fault == FaultFinal, NotBefore: notBefore})
	}
}

// commit writes the result res of item it, and its completion, and returns the outcome.
// Results that finish together share a transaction: the first to arrive
// while none is being written writes it at once, then writes, up to
// maxGroupCommit at a time, those that arrived meanwhile, and the others
// wait for it. A lone result is written by its own goroutine, with no
// handoff to another.
func (w *Worker) commit(ctx context.Context, it queue.Item, res *kgdb.IngestResult) error {
	c := &pendingCommit{it: it, res: res, done: make(chan error, 1)}
	w.mu.Lock()
	w.commits = append(w.commits, c)
	if w.committing {
		w.mu.Unlock()
		return <-c.done
	}
	w.committing = true
	for len(w.commits) > 0 {
		group := w.commits[:min(len(w.commits), maxGroupCommit)]
		w.commits = w.commits[len(group):]
		w.mu.Unlock()
		w.writeGroup(ctx, group)
		w.mu.Lock()
	}
	w.commits = nil
	w.committing = false
	w.mu.Unlock()
	return <-c.done
}

// writeGroup writes group's results and completions in one transaction
// and tells each its outcome.
func (w *Worker) writeGroup(ctx context.Context, group []*pendingCommit) {
	list := make([]kgdb.Completion, len(group))
	for i, c := range group {
		list[i] = kgdb.Completion{ID: c.it.ID, Result: c.res}
	}
	var per []error
	label := "complete 1 item" // the common case, without formatting it for every item
	if len(group) > 1 {
		label = fmt.Sprintf("complete %s", countItems(len(group)))
	}
	err := w.settle(ctx, label, func(ctx context.Context) error {
		var err error
		per, err = w.queue.CompleteMany(ctx, w.owner, list)
		return err
	})
	for i, c := range group {
		switch {
		case err != nil:
			c.done <- err
		default:
			c.done <- per[i]
		}
	}
}

func (w *Worker) complete(ctx context.Context, it queue.Item, res *kgdb.IngestResult) {
	defer w.unhold(it.ID)
	err := w.commit(ctx, it, res)
	switch {
	case err == nil:
		w.count(queue.StatusCompleted)
	case errors.Is(err, queue.ErrLeaseLost):
		w.logf("item %d: result discarded: %v", it.ID, err)
	default:
		w.logf("item %d: result not written: %v", it.ID, err)
	}
}

func (w *Worker) skip(ctx context.Context, it queue.Item, reason string) {
	defer w.unhold(it.ID)
	err := w.settle(ctx, fmt.Sprintf("skip item %d", it.ID), func(ctx context.Context) error {
		return w.queue.Skip(ctx, w.owner, it.ID, reason)
	})
	if err != nil {
		w.logf("item %d: %v", it.ID, err)
		return
	}
	w.logf("item %d skipped: %s", it.ID, reason)
	w.count(queue.StatusSkipped)
}

func (w *Worker) fail(ctx context.Context, it queue.Item, f queue.Failure) {
	defer w.unhold(it.ID)
	var status queue.Status
	err := w.settle(ctx, fmt.Sprintf("fail item %d", it.ID), func(ctx context.Context) error {
		var err error
		status, err = w.queue.FailWith(ctx, w.owner, it.ID, f)
		return err
	})
	if err != nil {
		w.logf("item %d: %v", it.ID, err)
		return
	}
	reason := queue.BoundMessage(f.Reason, queue.MaxMessageBytes)
	if status == queue.StatusFailed {
		w.logf("item %d failed for good: %s", it.ID, reason)
	} else {
		w.logf("item %d will be retried: %s", it.ID, reason)
	}
	w.count(queue.StatusFailed)
}

// bounded is err's text as the queue would store it: the service's own
// words in it can be a whole web page.
func bounded(err error) string { return queue.BoundMessage(err.Error(), queue.MaxMessageBytes) }

// countItems renders n with the noun "item" for log lines.
func countItems(n int) string {
	if n == 1 {
		return "1 item"
	}
	return fmt.Sprintf("%d items", n)
}
