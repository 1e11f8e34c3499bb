package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/supervisor"
)

// remoteMember returns the member ref of this host's fronts that runs on
// another host.
func (a *app) remoteMember(ref string) (config.RemoteMember, bool) {
	reg, err := a.registry().Load()
	if err != nil {
		return config.RemoteMember{}, false
	}
	rm, ok := reg.RemoteMembers[ref]
	return rm, ok
}

// restartRemoteMember is `restart ID` of a member of this host's front on
// another host: drained here, restarted there, put back once up.
func (a *app) restartRemoteMember(ctx context.Context, id string, rm config.RemoteMember, timeout time.Duration) error {
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		if err := m.RestartRemoteMember(ctx, id, timeout); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "restarted %s on %s: back in the front of group %s\n", id, rm.Host, rm.Group)
		return nil
	})
}

// stopRemoteMember is `stop ID` of a member of this host's front on
// another host: drained out of the front here, then stopped there.
func (a *app) stopRemoteMember(ctx context.Context, id string, rm config.RemoteMember) error {
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		if err := m.StopRemoteMember(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "stopped %s on %s, drained out of the front of group %s first\n", id, rm.Host, rm.Group)
		return nil
	})
}
