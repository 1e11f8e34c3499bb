package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/remote"
)

// The replicas of a fronted group on another host are a series of their
// own, PREFIX-1…PREFIX-N (ids are unique across the hosts of a front):
// the one its members there already form, as a fleet entry with host: and
// replicas: makes it. ScaleOnHost changes its length through that host's
// kato-manager (scale --prefix), the front following.

// ReplicaSeries returns the prefix of the replicas PREFIX-k among ids, and
// an error naming them when they form none or several.
func ReplicaSeries(ids []string) (string, error) {
	var prefixes []string
	for _, id := range ids {
		i := strings.LastIndex(id, "-")
		if i <= 0 {
			continue
		}
		if _, ok := replicaIndex(id[:i], id); ok && !slices.Contains(prefixes, id[:i]) {
			prefixes = append(prefixes, id[:i])
		}
	}
	slices.Sort(prefixes)
	switch len(prefixes) {
	case 1:
		return prefixes[0], nil
	case 0:
		return "", fmt.Errorf("its members there (%s) are no replicas ID-1…ID-N; give their fleet entry replicas: N and apply it", strings.Join(ids, ", "))
	}
	return "", fmt.Errorf("its members there form several series of replicas (%s); change them with apply", strings.Join(prefixes, "-…, ")+"-…")
}

// PlanOnHost returns what scaling the replicas of group on host, a host
// with members of this host's front, to n does, the series' prefix and the
// host as the registry names it ([USER@]HOST), which is reached with its
// login whatever login host gives. Nothing changes.
func PlanOnHost(cfg *config.Config, reg *config.Registry, group, host string, n int) (ScalePlan, string, string, error) {
	if err := checkReplicas(n); err != nil {
		return ScalePlan{}, "", "", err
	}
	if gc, ok := reg.Group(cfg, group); !ok || gc.Front == 0 {
		return ScalePlan{}, "", "", &config.FieldError{Field: "--group", Value: group,
			Rule: "must name a group whose front runs on this host to go with --on-host ([groups.NAME] front = PORT, or groups: in the fleet file applied here)"}
	}
	var hosts, groupHosts []string
	var ids []string
	at := ""
	for _, id := range slices.Sorted(maps.Keys(reg.RemoteMembers)) {
		rm := reg.RemoteMembers[id]
		if !slices.Contains(hosts, rm.Host) {
			hosts = append(hosts, rm.Host)
		}
		if rm.Group != group {
			continue
		}
		if !slices.Contains(groupHosts, rm.Host) {
			groupHosts = append(groupHosts, rm.Host)
		}
		if sameHost(rm.Host, host) {
			if at != "" && at != rm.Host {
				return ScalePlan{}, "", "", &config.FieldError{Field: "--on-host", Value: host, Rule: fmt.Sprintf("names both %s and %s; give the one meant", at, rm.Host)}
			}
			at = rm.Host
			ids = append(ids, id)
		}
	}
	slices.Sort(hosts)
	slices.Sort(groupHosts)
	known := slices.ContainsFunc(hosts, func(h string) bool { return sameHost(h, host) })
	switch {
	case !known && len(hosts) == 0:
		return ScalePlan{}, "", "", &config.FieldError{Field: "--on-host", Value: host, Rule: "must be a host running members of a front of this host, and no front here has any on another host"}
	case !known:
		return ScalePlan{}, "", "", &config.FieldError{Field: "--on-host", Value: host, Rule: "must be a host running members of a front of this host: " + strings.Join(hosts, ", ")}
	case len(ids) == 0:
		where := "this host only"
		if len(groupHosts) > 0 {
			where = strings.Join(groupHosts, ", ")
		}
		return ScalePlan{}, "", "", &config.FieldError{Field: "--on-host", Value: host, Rule: fmt.Sprintf("must be a host running a member of group %s; its members on other hosts are on %s", group, where)}
	}
	prefix, err := ReplicaSeries(ids)
	if err != nil {
		return ScalePlan{}, "", "", &config.FieldError{Field: "--on-host", Value: host, Rule: fmt.Sprintf("must run replicas of group %s to scale: %v", group, err)}
	}
	plan, err := planSeries(ids, prefix, n)
	if err != nil {
		return ScalePlan{}, "", "", err
	}
	for _, id := range plan.Start {
		if _, local := reg.Instances[id]; local {
			return ScalePlan{}, "", "", fmt.Errorf("replica %s of group %s on %s would have the id of an instance of this host; ids are unique across a front's hosts", id, group, at)
		}
		if rm, ok := reg.RemoteMembers[id]; ok && rm.Host != at {
			return ScalePlan{}, "", "", fmt.Errorf("replica %s of group %s on %s would have the id of a member on %s; ids are unique across a front's hosts", id, group, at, rm.Host)
		}
	}
	return plan, prefix, at, nil
}

// sameHost reports whether the [USER@]HOST values a and b name one host,
// whatever their logins.
func sameHost(a, b string) bool { return config.HostAddress(a) == config.HostAddress(b) }

// ScaleOnHost makes the replicas of the fronted group on another host
// exactly n (PlanOnHost): those past n are drained out of the front here
// first, then that host's kato-manager scales its series (scale --prefix,
// over ssh), starting the missing ones until they answer their health
// request and stopping the drained ones; then the front takes the members
// the host now runs (its export) and this waits until it sees the new ones
// up. The members on the other hosts serve throughout.
func (m *Manager) ScaleOnHost(ctx context.Context, group, host string, n int, opts ScaleOptions) (*ScaleResult, error) {
	reg, release, err := m.lockedRegistry(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	plan, prefix, at, err := PlanOnHost(m.Config, reg, group, host, n)
	if err != nil {
		return nil, err
	}
	res := &ScaleResult{Plan: plan}
	if len(plan.Start) == 0 && len(plan.Stop) == 0 {
		return res, nil
	}
	if len(plan.Stop) > 0 {
		if err := m.drainMembers(ctx, plan.Stop); err != nil {
			return res, err
		}
		// Out of the front for good: the refresh below must not drain
		// them again in a front that no longer has them.
		if err := m.Registry.Update(func(r *config.Registry) error {
			for _, id := range plan.Stop {
				delete(r.RemoteMembers, id)
			}
			return nil
		}); err != nil {
			return res, err
		}
	}
	args := []string{"scale", "--group", group, "--prefix", prefix, strconv.Itoa(n)}
	if opts.Timeout > 0 {
		args = append(args, "--timeout", opts.Timeout.String())
	}
	if opts.Parallel > 0 {
		args = append(args, "--parallel", strconv.Itoa(opts.Parallel))
	}
	var errs []error
	if err := m.runRemote(ctx, at, args); err != nil {
		errs = append(errs, fmt.Errorf("scale group %s on %s: %w", group, at, err))
	}
	// Whatever the host did, the front follows what it runs now.
	found, err := m.readRemoteMembers(ctx, at)
	if err != nil {
		return res, errors.Join(append(errs, err)...)
	}
	if err := m.setRemoteMembersLocked(ctx, []string{at}, found); err != nil {
		return res, errors.Join(append(errs, err)...)
	}
	for _, id := range plan.Start {
		if _, ok := found[id]; ok {
			res.Started = append(res.Started, id)
		}
	}
	for _, id := range plan.Stop {
		if _, ok := found[id]; !ok {
			res.Stopped = append(res.Stopped, id)
		}
	}
	rt := m.frontAdmin(group)
	for _, id := range res.Started {
		wctx, cancel := context.WithTimeout(ctx, 4*FrontCheckInterval+10*time.Second)
		if err := waitUp(wctx, rt, id); err != nil {
			errs = append(errs, fmt.Errorf("replica %s on %s in the front of group %s: %w", id, at, group, err))
		}
		cancel()
	}
	return res, errors.Join(errs...)
}

// readRemoteMembers reads the instances host runs (its export) and returns
// those in groups as remote members at that host's address.
func (m *Manager) readRemoteMembers(ctx context.Context, host string) (map[string]config.RemoteMember, error) {
	var out []byte
	var err error
	args := []string{"export", "--format", "json"}
	if m.RemoteOutput != nil {
		out, err = m.RemoteOutput(ctx, host, args)
	} else {
		var stdout, stderr bytes.Buffer
		err = remote.Run(ctx, host, args, nil, &stdout, &stderr)
		if err != nil && strings.TrimSpace(stderr.String()) != "" {
			err = fmt.Errorf("%w: %s", err, strings.ReplaceAll(strings.TrimSpace(stderr.String()), "\n", "; "))
		}
		out = stdout.Bytes()
	}
	if err != nil {
		return nil, fmt.Errorf("read the instances of %s: %w", host, err)
	}
	return remoteMembersIn(host, out)
}

// remoteMembersIn returns the members of groups in export, the instances
// of host as its export --format json writes them.
func remoteMembersIn(host string, export []byte) (map[string]config.RemoteMember, error) {
	f, err := fleet.ParseFleet("export.json", export)
	if err != nil {
		return nil, fmt.Errorf("read the instances of %s: %w", host, err)
	}
	found := map[string]config.RemoteMember{}
	for _, e := range f.Entries {
		if e.Group != "" {
			found[e.ID] = config.RemoteMember{Group: e.Group, Host: host, Address: config.HostAddress(host), Port: e.APIPort, Weight: e.Weight}
		}
	}
	return found, nil
}
