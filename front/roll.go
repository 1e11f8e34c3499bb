package front

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Runtime is what a rolling restart needs of a running front: the Client,
// or a double in tests.
type Runtime interface {
	SetState(ctx context.Context, backend, server string, s AdminState) error
	Stats(ctx context.Context) (Stats, error)
}

// Restarter restarts one member and returns once it answers its ready
// request, or with an error when it does not within its own bound. The
// supervisor implements it with systemd (restart kato@ID.service, wait for
// the ready check).
type Restarter interface {
	RestartMember(ctx context.Context, id string) error
}

// RollOptions bound a rolling restart; the zero value is usable.
type RollOptions struct {
	// MaxUnavailable is how many members are out at once: zero is 1, and
	// it is lowered to leave at least one member serving. With Surge, it
	// is how far the serving members may fall below the group's size, and
	// zero is zero.
	MaxUnavailable int
	// Surge is how many extra members serve beside g's members throughout
	// the roll (started by the caller before, removed after, not rolled):
	// MaxUnavailable+Surge members are out at once, so that at least
	// len(g.Members)-MaxUnavailable serve.
	Surge int
	// DrainTimeout bounds the wait for a drained member's connections to
	// finish; zero is 30s. It is restarted anyway when the bound passes.
	DrainTimeout time.Duration
	// ReadyTimeout bounds the wait for the front to see a restarted member
	// up again (its ready check passing); zero is 60s.
	ReadyTimeout time.Duration
	// Poll is the time between two reads of the front's stats; zero is
	// 100ms.
	Poll time.Duration
}

// RollError reports the member a rolling restart stopped at.
type RollError struct {
	Member string
	Err    error
}

func (e *RollError) Error() string {
	return fmt.Sprintf("rolling restart stopped at member %s: %v", e.Member, e.Err)
}
func (e *RollError) Unwrap() error { return e.Err }

// ErrNotReady is wrapped when a restarted member is not seen up by the
// front within RollOptions.ReadyTimeout.
var ErrNotReady = errors.New("not up in the front")

// Roll restarts the members of g, in their order, at most
// opts.MaxUnavailable at a time and never all of them: each is drained,
// waited for until its connections end (bounded), restarted with r, and put
// back once the front sees it up. It stops at the first member that does
// not come back, leaving that one out of the rotation and the members not
// yet restarted serving, and returns a *RollError naming it. It returns the
// ids restarted and back in the rotation.
func Roll(ctx context.Context, g Group, rt Runtime, r Restarter, opts RollOptions) ([]string, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	n := batchSize(len(g.Members), opts.MaxUnavailable, opts.Surge)
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if opts.Poll == 0 {
		opts.Poll = 100 * time.Millisecond
	}
	var done []string
	for start := 0; start < len(g.Members); start += n {
		batch := g.Members[start:min(start+n, len(g.Members))]
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for i, m := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = rollOne(ctx, g, rt, r, m.ID, opts)
			}()
		}
		wg.Wait()
		for i, m := range batch {
			if errs[i] != nil {
				return done, &RollError{Member: m.ID, Err: errs[i]}
			}
		}
		for _, m := range batch {
			done = append(done, m.ID)
		}
	}
	return done, nil
}

// batchSize is how many of members are out of the rotation at once.
func batchSize(members, maxUnavailable, surge int) int {
	if surge > 0 {
		// The extra members serve meanwhile: all of the group's may be out
		// at once, and at least one is.
		return max(1, min(members, max(0, maxUnavailable)+surge))
	}
	n := maxUnavailable
	if n <= 0 {
		n = 1
	}
	if n >= members {
		n = members - 1
	}
	if n == 0 {
		// A single member cannot be rolled without an outage; it is
		// restarted in place, drained first all the same.
		n = 1
	}
	return n
}

func rollOne(ctx context.Context, g Group, rt Runtime, r Restarter, id string, opts RollOptions) error {
	backend := g.Backend(id)
	if err := rt.SetState(ctx, backend, id, Drain); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	// Connections that end in time end cleanly; past the bound the member
	// is restarted anyway, as a stop would.
	drainCtx, cancel := context.WithTimeout(ctx, opts.DrainTimeout)
	err := waitMember(drainCtx, rt, id, opts.Poll, func(m MemberStats) bool { return m.Sessions == 0 })
	cancel()
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if err := r.RestartMember(ctx, id); err != nil {
		rt.SetState(context.WithoutCancel(ctx), backend, id, Maint)
		return fmt.Errorf("restart: %w", err)
	}
	// Back to ready: HAProxy sends it requests once its check passes.
	if err := rt.SetState(ctx, backend, id, Ready); err != nil {
		return fmt.Errorf("set ready: %w", err)
	}
	readyCtx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	if err := waitMember(readyCtx, rt, id, opts.Poll, func(m MemberStats) bool { return m.State == Up }); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Out of the rotation, so that a member that half works gets no
		// requests while someone looks at it.
		rt.SetState(context.WithoutCancel(ctx), backend, id, Maint)
		return fmt.Errorf("%w within %s: %v", ErrNotReady, opts.ReadyTimeout, err)
	}
	return nil
}

// waitMember polls the front's stats until member id satisfies ok.
func waitMember(ctx context.Context, rt Runtime, id string, poll time.Duration, ok func(MemberStats) bool) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	var last MemberStats
	for {
		s, err := rt.Stats(ctx)
		if err == nil {
			m, found := s.Member(id)
			if !found {
				return fmt.Errorf("member %s not in the front", id)
			}
			if ok(m) {
				return nil
			}
			last = m
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %s still %s (%s), %d connections", id, last.State, last.Status, last.Sessions)
		case <-t.C:
		}
	}
}
