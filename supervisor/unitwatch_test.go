package supervisor

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// slowListing answers ListUnits with systemd's state when the call came,
// once release is closed, as an answer still on its way does.
type slowListing struct {
	*fakeSystemd
	asked   chan struct{}
	release chan struct{}
}

func (s *slowListing) ListUnits(ctx context.Context, patterns ...string) ([]UnitState, error) {
	list, err := s.fakeSystemd.ListUnits(ctx, patterns...)
	select {
	case s.asked <- struct{}{}:
	default:
	}
	<-s.release
	return list, err
}

// A listing asked for before a unit's start job finished does not answer
// for that unit afterwards, even when it arrives after the job finished:
// until the next listing the unit is only starting.
func TestUnitWatchIgnoresListingsAskedBeforeTheStart(t *testing.T) {
	ctx := context.Background()
	fake := newFakeSystemd()
	sd := &slowListing{fakeSystemd: fake, asked: make(chan struct{}, 1), release: make(chan struct{})}
	w := &unitWatch{sd: sd, names: []string{"kato@a.service", "kato@b.service"}, every: 200 * time.Millisecond}

	// b's wait lists the units while a is not loaded yet.
	first := make(chan error, 1)
	go func() {
		_, err := w.state(ctx, "kato@b.service", time.Now())
		first <- err
	}()
	<-sd.asked
	// a's start job finishes, and a's wait begins, before that listing
	// arrives.
	fake.mu.Lock()
	fake.units["kato@a.service"] = &UnitState{Name: "kato@a.service", LoadState: "loaded", ActiveState: "active", SubState: "running"}
	fake.mu.Unlock()
	since := time.Now()
	time.Sleep(time.Millisecond)
	close(sd.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}

	u, err := w.state(ctx, "kato@a.service", since)
	if err != nil {
		t.Fatal(err)
	}
	if u.ActiveState != "activating" {
		t.Errorf("a's state %s/%s from a listing asked for before its start; want activating until the next listing", u.ActiveState, u.SubState)
	}
	time.Sleep(w.every)
	if u, err = w.state(ctx, "kato@a.service", since); err != nil || u.ActiveState != "active" {
		t.Errorf("a's state %s/%s %v after the next listing; want active/running", u.ActiveState, u.SubState, err)
	}
}

// The waits of a batch share one listing per interval: starts that finish
// after a listing do not each ask for one of their own.
func TestUnitWatchListsOncePerInterval(t *testing.T) {
	ctx := context.Background()
	fake := newFakeSystemd()
	var lists int
	fake.onList = func() { lists++ }
	w := &unitWatch{sd: fake, every: time.Hour}
	for i := range 40 {
		name := fmt.Sprintf("kato@i%02d.service", i)
		w.names = append(w.names, name)
		if _, err := w.state(ctx, name, time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond)
	}
	if lists != 1 {
		t.Errorf("40 waits that began one after another asked for %d listings within the interval, want 1", lists)
	}
}
