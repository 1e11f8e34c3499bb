package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/remote"
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
	m, done, err := a.manager(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := m.RestartRemoteMember(ctx, id, timeout); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "restarted %s on %s: back in the front of group %s\n", id, rm.Host, rm.Group)
	return nil
}

// stopRemoteMember is `stop ID` of a member of this host's front on
// another host: drained out of the front here, then stopped there.
func (a *app) stopRemoteMember(ctx context.Context, id string, rm config.RemoteMember) error {
	m, done, err := a.manager(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := m.StopRemoteMember(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "stopped %s on %s, drained out of the front of group %s first\n", id, rm.Host, rm.Group)
	return nil
}

// drainRemovedMembers takes the members other hosts are about to remove
// (HOST:ID, from their diffs) out of this host's fronts.
func (a *app) drainRemovedMembers(ctx context.Context, cfg *config.Config, removed []string) error {
	reg, err := a.registry().Load()
	if err != nil {
		return err
	}
	var ids []string
	for _, r := range removed {
		host, id, _ := strings.Cut(r, ":")
		if rm, ok := reg.RemoteMembers[id]; ok && rm.Host == host {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	m, done, err := a.managerWith(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	return m.ForgetRemoteMembers(ctx, ids)
}

// drainRestartedMembers drains the members other hosts are about to
// restart (HOST:ID, from their diffs) in this host's fronts.
func (a *app) drainRestartedMembers(ctx context.Context, cfg *config.Config, restarted []string) ([]string, error) {
	reg, err := a.registry().Load()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range restarted {
		host, id, _ := strings.Cut(r, ":")
		if rm, ok := reg.RemoteMembers[id]; ok && rm.Host == host {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	m, done, err := a.managerWith(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer done()
	return m.DrainRemoteMembers(ctx, ids)
}

// refreshRemoteMembers reads the instances of each host that applied the
// file (their export) and keeps those in groups whose front runs here as
// this host's remote members, the fronts reloaded with them. A host that
// did not answer keeps the members it had. The members drained before
// their hosts restarted them are put back in the rotation.
func (a *app) refreshRemoteMembers(ctx context.Context, cfg *config.Config, src *fleet.Source, applied []remote.Result, drained []string) error {
	reg, err := a.registry().Load()
	if err != nil {
		return err
	}
	fronted := len(reg.RemoteMembers) > 0
	for _, n := range reg.GroupNames(cfg) {
		if g, _ := reg.Group(cfg, n); g.Front != 0 {
			fronted = true
		}
	}
	if !fronted {
		return nil
	}
	var hosts []string
	for _, r := range applied {
		var exit *remote.ExitError
		if r.Err == nil || errors.As(r.Err, &exit) {
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
		f, err := fleet.ParseFleet("export.json", r.Stdout)
		if err != nil {
			errs = append(errs, fmt.Errorf("read the instances of %s: %w", r.Host, err))
			continue
		}
		answered = append(answered, r.Host)
		for _, e := range f.Entries {
			if e.Group != "" {
				found[e.ID] = config.RemoteMember{Group: e.Group, Host: r.Host, Address: config.HostAddress(r.Host), Port: e.APIPort, Weight: e.Weight}
			}
		}
	}
	m, done, err := a.managerWith(ctx, cfg)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer done()
	errs = append(errs, m.SetRemoteMembers(ctx, answered, found))
	if len(drained) > 0 {
		errs = append(errs, m.ReadyRemoteMembers(ctx, drained, 4*supervisor.FrontCheckInterval+10*time.Second))
	}
	return errors.Join(errs...)
}
