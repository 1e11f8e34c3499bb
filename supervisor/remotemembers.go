package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/remote"
)

// A group's front runs on the host whose kato-manager applied the fleet
// file naming the group's members: the one host that read every entry and
// reaches every member's host over ssh (the others are handed their own
// entries only). Members on other hosts are registered there, in their
// own host's registry, and known here as RemoteMembers: the front reaches
// them at their host's address, and a roll, a restart or a stop from here
// drains them in the front before it asks their host's kato-manager, over
// ssh, to restart or stop them.

// remoteHost returns the host of the remote member id.
func (m *Manager) remoteHost(id string) (string, bool) {
	reg, err := m.Registry.Load()
	if err != nil {
		return "", false
	}
	rm, ok := reg.RemoteMembers[id]
	return rm.Host, ok
}

// runRemote runs kato-manager with args on host: the RemoteRun hook, else
// over ssh, its standard error in the error.
func (m *Manager) runRemote(ctx context.Context, host string, args []string) error {
	if m.RemoteRun != nil {
		return m.RemoteRun(ctx, host, args)
	}
	var stderr bytes.Buffer
	err := remote.Run(ctx, host, args, nil, nil, &stderr)
	if err != nil && strings.TrimSpace(stderr.String()) != "" {
		err = fmt.Errorf("%w: %s", err, strings.ReplaceAll(strings.TrimSpace(stderr.String()), "\n", "; "))
	}
	return err
}

// restartRemote restarts the remote member id on host with that host's
// kato-manager, which waits for its health request as a restart does.
func (m *Manager) restartRemote(ctx context.Context, host, id string, timeout time.Duration) error {
	args := []string{"restart", id}
	if timeout > 0 {
		args = append(args, "--timeout", timeout.String())
	}
	if err := m.runRemote(ctx, host, args); err != nil {
		return fmt.Errorf("restart %s on %s: %w", id, host, err)
	}
	return nil
}

// SetRemoteMembers makes the remote members on hosts those found (by id),
// less the groups that have no front here, and brings the fronts in step:
// members no longer found are drained out first. The remote members of
// other hosts are left alone.
func (m *Manager) SetRemoteMembers(ctx context.Context, hosts []string, found map[string]config.RemoteMember) error {
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return err
	}
	defer release()
	return m.setRemoteMembersLocked(ctx, hosts, found)
}

// setRemoteMembersLocked is SetRemoteMembers under the operations lock.
func (m *Manager) setRemoteMembersLocked(ctx context.Context, hosts []string, found map[string]config.RemoteMember) error {
	reg, err := m.Registry.Load()
	if err != nil {
		return err
	}
	var gone []string
	for id, rm := range reg.RemoteMembers {
		if _, still := found[id]; !still && slices.Contains(hosts, rm.Host) {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	if err := m.drainMembers(ctx, gone); err != nil {
		return err
	}
	if err := m.Registry.Update(func(r *config.Registry) error {
		for id, rm := range r.RemoteMembers {
			if slices.Contains(hosts, rm.Host) {
				delete(r.RemoteMembers, id)
			}
		}
		for _, id := range slices.Sorted(maps.Keys(found)) {
			rm := found[id]
			if gc, ok := r.Group(m.Config, rm.Group); !ok || gc.Front == 0 {
				continue
			}
			if _, local := r.Instances[id]; local {
				return &config.FieldError{Field: "id", Value: id, Rule: "must be unique across the hosts of a group's front: " + rm.Host + " and this host both have it"}
			}
			if r.RemoteMembers == nil {
				r.RemoteMembers = map[string]config.RemoteMember{}
			}
			r.RemoteMembers[id] = rm
		}
		return nil
	}); err != nil {
		return err
	}
	return m.syncFronts(ctx, nil)
}

// lockRemoteMember takes the registry's operations lock (lockedRegistry)
// and returns the registry and its remote member id, with the lock's release; a missing
// member is config.ErrNotFound, the lock released.
func (m *Manager) lockRemoteMember(ctx context.Context, id string) (*config.Registry, config.RemoteMember, func(), error) {
	reg, release, err := m.lockedRegistry(ctx)
	if err != nil {
		return nil, config.RemoteMember{}, nil, err
	}
	rm, ok := reg.RemoteMembers[id]
	if !ok {
		release()
		return nil, config.RemoteMember{}, nil, fmt.Errorf("no member %s of a front on another host: %w", id, config.ErrNotFound)
	}
	return reg, rm, release, nil
}

// RestartRemoteMember restarts the remote member id through its front:
// drained, restarted by its host's kato-manager, put back once the front
// sees it up (a roll of one member).
func (m *Manager) RestartRemoteMember(ctx context.Context, id string, timeout time.Duration) error {
	reg, rm, release, err := m.lockRemoteMember(ctx, id)
	if err != nil {
		return err
	}
	defer release()
	g, _, err := m.FrontOf(reg, rm.Group, nil)
	if err != nil {
		return err
	}
	g.Members = slices.DeleteFunc(g.Members, func(mb front.Member) bool { return mb.ID != id })
	ro := front.RollOptions{DrainTimeout: frontDrainTimeout, ReadyTimeout: 4*FrontCheckInterval + 10*time.Second}
	_, err = front.Roll(ctx, g, m.frontAdmin(rm.Group), memberRestarter{m: m, timeout: timeout, locked: true}, ro)
	return err
}

// StopRemoteMember drains the remote member id out of its front, reloads
// the front without it, stops it with its host's kato-manager and forgets
// it.
func (m *Manager) StopRemoteMember(ctx context.Context, id string) error {
	_, rm, release, err := m.lockRemoteMember(ctx, id)
	if err != nil {
		return err
	}
	defer release()
	if err := m.drainMembers(ctx, []string{id}); err != nil {
		return err
	}
	stopErr := m.runRemote(ctx, rm.Host, []string{"stop", id})
	if stopErr != nil {
		stopErr = fmt.Errorf("stop %s on %s: %w", id, rm.Host, stopErr)
	}
	err = m.Registry.Update(func(r *config.Registry) error {
		delete(r.RemoteMembers, id)
		return nil
	})
	return errors.Join(stopErr, err, m.syncFronts(ctx, nil))
}

// ForgetRemoteMembers drains the remote members ids out of their fronts,
// reloads the fronts without them and forgets them: their hosts are about
// to remove them.
func (m *Manager) ForgetRemoteMembers(ctx context.Context, ids []string) error {
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := m.drainMembers(ctx, ids); err != nil {
		return err
	}
	if err := m.Registry.Update(func(r *config.Registry) error {
		for _, id := range ids {
			delete(r.RemoteMembers, id)
		}
		return nil
	}); err != nil {
		return err
	}
	return m.syncFronts(ctx, nil)
}

// DrainRemoteMembers drains the remote members ids in their fronts and
// waits (bounded) until their connections end: their hosts are about to
// restart them. It returns the ids it drained, for ReadyRemoteMembers.
func (m *Manager) DrainRemoteMembers(ctx context.Context, ids []string) ([]string, error) {
	return m.setRemoteStates(ctx, ids, front.Drain, "drain %s in", func(rt front.Runtime, id string) error {
		m.waitDrained(ctx, rt, []string{id})
		return nil
	})
}

// ReadyRemoteMembers puts the remote members ids back in their fronts'
// rotation and waits, for at most timeout each, until the front sees them
// up.
func (m *Manager) ReadyRemoteMembers(ctx context.Context, ids []string, timeout time.Duration) error {
	_, err := m.setRemoteStates(ctx, ids, front.Ready, "put %s back in", func(rt front.Runtime, id string) error {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return waitUp(wctx, rt, id)
	})
	return err
}

// setRemoteStates sets each of the remote members ids to state in its
// group's front (verb, with the id, says what failed) and calls then for
// it. It returns the ids then took, and every error met on the way; an id
// that is not a remote member is passed over.
func (m *Manager) setRemoteStates(ctx context.Context, ids []string, state front.AdminState, verb string, then func(front.Runtime, string) error) ([]string, error) {
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, id := range ids {
		rm, ok := reg.RemoteMembers[id]
		if !ok {
			continue
		}
		g, _, err := m.FrontOf(reg, rm.Group, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rt := m.frontAdmin(rm.Group)
		if err := rt.SetState(ctx, g.Backend(id), id, state); err != nil {
			errs = append(errs, fmt.Errorf(verb+" the front of group %s: %w", id, rm.Group, err))
			continue
		}
		if err := then(rt, id); err != nil {
			errs = append(errs, fmt.Errorf("%s in the front of group %s: %w", id, rm.Group, err))
			continue
		}
		done = append(done, id)
	}
	return done, errors.Join(errs...)
}

// RefreshRemoteMembers reads the instances of each host that applied a
// fleet file (their export) and keeps those in groups whose front runs
// here as this host's remote members, the fronts reloaded with them. A
// host that did not answer, or whose apply did not run, keeps the members
// it had. The members drained before their hosts restarted them are put
// back in the rotation.
func (m *Manager) RefreshRemoteMembers(ctx context.Context, applied []remote.Result, drained []string) error {
	var hosts []string
	for _, r := range applied {
		if _, ran := remote.ExitCode(r.Err); ran {
			hosts = append(hosts, r.Host)
		}
	}
	found := map[string]config.RemoteMember{}
	var answered []string
	var errs []error
	for _, r := range remote.Each(ctx, hosts, []string{"export", "--format", "json"}) {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("read the instances of %s: %s", r.Host, r.Failure()))
			continue
		}
		members, err := remoteMembersIn(r.Host, r.Stdout)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		answered = append(answered, r.Host)
		maps.Copy(found, members)
	}
	errs = append(errs, m.SetRemoteMembers(ctx, answered, found))
	if len(drained) > 0 {
		errs = append(errs, m.ReadyRemoteMembers(ctx, drained, 4*FrontCheckInterval+10*time.Second))
	}
	return errors.Join(errs...)
}
