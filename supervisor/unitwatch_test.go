package supervisor

import (
	"context"
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
// for that unit afterwards, even when it arrives after the job finished.
func TestUnitWatchIgnoresListingsAskedBeforeTheStart(t *testing.T) {
	ctx := context.Background()
	fake := newFakeSystemd()
	sd := &slowListing{fakeSystemd: fake, asked: make(chan struct{}, 1), release: make(chan struct{})}
	w := &unitWatch{sd: sd, names: []string{"kato@a.service", "kato@b.service"}, every: time.Hour}

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
	if u.ActiveState != "active" {
		t.Errorf("a's state %s/%s from a listing asked for before its start; want active/running from a new listing", u.ActiveState, u.SubState)
	}
}
