package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/supervisor"
)

// pageItems is how many queue items the dashboard lists.
const pageItems = 50

// defaultPageStatus is the status whose items the dashboard lists unless
// the page asks for another; /metrics shares its snapshot.
const defaultPageStatus = kgworker.StatusFailed

// QueueOverview is everything a page or a scrape reads from the queue,
// fetched in one round trip to the database's child.
type QueueOverview = kgdb.Overview

// ReadOverview reads the overview of q in one call.
func ReadOverview(ctx context.Context, q Queue, status kgworker.Status, limit int) (QueueOverview, error) {
	return q.Overview(ctx, status, limit)
}

// snapshot is the fleet and the queue at one moment, as every page and
// scrape of that moment shows them. A source that could not be read has
// its error instead.
type snapshot struct {
	At       time.Time
	Fleet    *supervisor.Sample
	FleetErr error
	Queue    QueueOverview
	QueueErr error

	// rendered are the answers made of this snapshot that are the same for
	// every reader (the encoded metrics, the page of a reader without a
	// session), made once by the first reader who needs one.
	renderMu sync.Mutex
	rendered map[string]*renderedBody
}

type renderedBody struct {
	once sync.Once
	body []byte
	err  error
}

// render returns the answer key made of s, making it with fn the first
// time; readers who ask meanwhile wait for that one.
func (s *snapshot) render(key string, fn func() ([]byte, error)) ([]byte, error) {
	s.renderMu.Lock()
	if s.rendered == nil {
		s.rendered = map[string]*renderedBody{}
	}
	r := s.rendered[key]
	if r == nil {
		r = &renderedBody{}
		s.rendered[key] = r
	}
	s.renderMu.Unlock()
	r.once.Do(func() { r.body, r.err = fn() })
	return r.body, r.err
}

// snapshots hands serve's readers a shared snapshot: one no older than
// maxAge is served from memory, and the requests that come while one is
// being taken wait for that one (singleflight) rather than each reading
// systemd and the database. A snapshot is taken on its own context,
// bounded by timeout, so that a reader who gives up (a closed connection)
// cancels nothing the others wait for.
type snapshots struct {
	maxAge  time.Duration
	timeout time.Duration
	sample  func(ctx context.Context) (*supervisor.Sample, error)
	queue   Queue
	now     func() time.Time

	group  singleflight.Group
	mu     sync.Mutex
	cached map[kgworker.Status]*snapshot // by the status whose items it lists
	// generation counts forget's calls: a snapshot begun before one is
	// neither kept nor shared with the readers after it.
	generation uint64
}

// forget drops the snapshots kept and those being taken, after an action
// changed the fleet or the queue: the next reader sees the change.
func (s *snapshots) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.generation++
	clear(s.cached)
}

func newSnapshots(sample func(context.Context) (*supervisor.Sample, error), q Queue, maxAge, timeout time.Duration) *snapshots {
	return &snapshots{maxAge: maxAge, timeout: timeout, sample: sample, queue: q, now: time.Now, cached: map[kgworker.Status]*snapshot{}}
}

// get returns a snapshot listing the items of status, taking one if the
// last is older than maxAge. It returns early only when ctx ends; the
// snapshot being taken is then kept for the next reader.
func (s *snapshots) get(ctx context.Context, status kgworker.Status) (*snapshot, error) {
	s.mu.Lock()
	if c := s.cached[status]; c != nil && s.now().Sub(c.At) < s.maxAge {
		s.mu.Unlock()
		return c, nil
	}
	gen := s.generation
	s.mu.Unlock()
	ch := s.group.DoChan(fmt.Sprintf("%d %s", gen, status), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		snap := s.take(ctx, status)
		s.mu.Lock()
		if s.generation == gen {
			s.cached[status] = snap
		}
		s.mu.Unlock()
		return snap, nil
	})
	select {
	case r := <-ch:
		return r.Val.(*snapshot), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// take reads systemd and the queue side by side.
func (s *snapshots) take(ctx context.Context, status kgworker.Status) *snapshot {
	snap := &snapshot{At: s.now()}
	var wg sync.WaitGroup
	wg.Go(func() { snap.Fleet, snap.FleetErr = s.sample(ctx) })
	snap.Queue, snap.QueueErr = ReadOverview(ctx, s.queue, status, pageItems)
	wg.Wait()
	return snap
}

// limitRequests serves at most max requests at a time: one more is
// answered 503 with Retry-After at once, rather than queued behind the
// others.
func limitRequests(max int, next http.Handler) http.Handler {
	slots := make(chan struct{}, max)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", strconv.Itoa(1))
			http.Error(w, fmt.Sprintf("serve is answering %d requests already (--max-requests); try again in a second", max), http.StatusServiceUnavailable)
		}
	})
}
