package supervisor

import (
	"context"
	"time"

	"github.com/kato-manager/kato-manager/front"
)

// FrontRestarter returns what a rolling restart of a group's front
// (front.Roll) restarts members with: each member is the instance of that
// id, restarted as Restart does and waited for until it answers its ready
// request, for at most timeout.
func (m *Manager) FrontRestarter(timeout time.Duration) front.Restarter {
	return memberRestarter{m: m, timeout: timeout}
}

type memberRestarter struct {
	m       *Manager
	timeout time.Duration
}

func (r memberRestarter) RestartMember(ctx context.Context, id string) error {
	_, err := r.m.Restart(ctx, id, r.timeout)
	return err
}
