package kgdb_test

import (
	"sync"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
	"github.com/kato-manager/kato-manager/queue"
)

// The shared helpers of the KG database's tests (internal/testkit/kgdbtest).
type backend = kgdbtest.Backend

var (
	backends    = kgdbtest.Backends
	eachBackend = kgdbtest.EachBackend
	openQueue   = kgdbtest.Open
	openQueueAt = kgdbtest.OpenAt
	rawDB       = kgdbtest.RawDB
	mustExec    = kgdbtest.MustExec
	queryInt    = kgdbtest.QueryInt
	addContent  = kgdbtest.AddContent
	enqueue     = kgdbtest.Enqueue
	claim       = kgdbtest.Claim
	get         = kgdbtest.Get
	waitFor     = kgdbtest.WaitFor
)

// clock is a settable clock for leases and backoff.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 10, 21, 23, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func ids(items []queue.Item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}
