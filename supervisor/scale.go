package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// MaxReplicas bounds scale --group and a fleet entry's replicas.
const MaxReplicas = config.MaxReplicas

// ScaleOptions are scale's options.
type ScaleOptions struct {
	// Timeout bounds each new member's wait for its health request; zero
	// is the processor's ready_timeout.
	Timeout time.Duration
	// Parallel bounds how many members stop at once; 0 is the default.
	Parallel int
	// Prefix names the replicas, PREFIX-1…PREFIX-N; empty is the group's
	// name. A host running members of another host's front has its own
	// series (web-b-1…), since ids are unique across a front's hosts.
	Prefix string
}

// ScalePlan is what a scale of a group does: the replicas it starts and
// those it stops, by id.
type ScalePlan struct {
	Start []string
	Stop  []string
	Keep  []string
}

// ReplicaID returns the id of the group's replica k, NAME-k.
func ReplicaID(group string, k int) string { return group + "-" + strconv.Itoa(k) }

// replicaIndex returns k when id is the group's replica NAME-k.
func replicaIndex(group, id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, group+"-")
	if !ok || rest == "" || rest[0] == '0' {
		return 0, false
	}
	k, err := strconv.Atoi(rest)
	return k, err == nil && k > 0
}

// PlanScale returns what scaling group to n replicas does, given the
// registered instances: replicas NAME-1…NAME-n that are missing start, the
// group's replicas past n stop, and members of the group named otherwise
// are not replicas and are left alone.
func PlanScale(reg *config.Registry, group string, n int) (ScalePlan, error) {
	return PlanReplicas(reg, group, group, n)
}

// PlanReplicas is PlanScale of the group's replicas named PREFIX-k.
func PlanReplicas(reg *config.Registry, group, prefix string, n int) (ScalePlan, error) {
	if err := checkReplicas(n); err != nil {
		return ScalePlan{}, err
	}
	var have []string
	for _, in := range reg.Sorted() {
		if _, ok := replicaIndex(prefix, in.ID); !ok {
			continue
		}
		if in.Group != group {
			return ScalePlan{}, fmt.Errorf("instance %s has the name of a replica of group %s but is in group %q; stop it or rename the group", in.ID, group, in.Group)
		}
		have = append(have, in.ID)
	}
	return planSeries(have, prefix, n)
}

func checkReplicas(n int) error {
	if n < 0 || n > MaxReplicas {
		return &config.FieldError{Field: "replicas", Value: strconv.Itoa(n), Rule: fmt.Sprintf("must be between 0 and %d", MaxReplicas)}
	}
	return nil
}

// planSeries plans the replicas PREFIX-1…PREFIX-n given the ids that
// exist, have; those not in the series are left alone.
func planSeries(have []string, prefix string, n int) (ScalePlan, error) {
	var p ScalePlan
	index := map[int]bool{}
	for _, id := range have {
		k, ok := replicaIndex(prefix, id)
		if !ok {
			continue
		}
		index[k] = true
		if k > n {
			p.Stop = append(p.Stop, id)
		} else {
			p.Keep = append(p.Keep, id)
		}
	}
	for k := 1; k <= n; k++ {
		if !index[k] {
			id := ReplicaID(prefix, k)
			if err := config.ValidateID(id); err != nil {
				return ScalePlan{}, err
			}
			p.Start = append(p.Start, id)
		}
	}
	byIndex := func(a, b string) int {
		i, _ := replicaIndex(prefix, a)
		j, _ := replicaIndex(prefix, b)
		return i - j
	}
	slices.SortFunc(p.Stop, byIndex)
	slices.SortFunc(p.Keep, byIndex)
	return p, nil
}

// ReplicaEntry is the entry a new replica of the group is made from: its
// [groups.NAME] template's settings, else its processor with [defaults].
func ReplicaEntry(cfg *config.Config, reg *config.Registry, group string) (*config.Entry, *config.Entry, error) {
	gc, ok := reg.Group(cfg, group)
	if !ok {
		return nil, nil, &config.FieldError{Field: "--group", Value: group, Rule: "must name a [groups.NAME] of kato.toml or a group of an applied fleet file, which says what its replicas run (template or processor)"}
	}
	e := &config.Entry{Group: group, Processor: gc.Processor, Set: map[string]bool{"group": true, "processor": gc.Processor != ""}}
	if gc.Template == "" {
		return e, nil, nil
	}
	tpl, err := cfg.TemplateNamed("groups."+group+".template", gc.Template)
	return e, tpl, err
}

// ScaleResult is what a scale did.
type ScaleResult struct {
	Plan    ScalePlan
	Started []string
	Stopped []string
}

// ScaleGroup makes the group exactly n replicas, NAME-1…NAME-n: the missing
// ones start one by one, each taken by the front once ready; those past n
// are drained out of the front, then stopped and removed. The other
// members keep serving throughout.
func (m *Manager) ScaleGroup(ctx context.Context, group string, n int, opts ScaleOptions) (*ScaleResult, error) {
	reg, release, err := m.lockedRegistry(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	e, tpl, err := ReplicaEntry(m.Config, reg, group)
	if err != nil {
		return nil, err
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = group
	} else if err := config.ValidateID(prefix); err != nil {
		return nil, &config.FieldError{Field: "--prefix", Value: prefix, Rule: "must be an instance id, which its replicas' ids begin with"}
	}
	plan, err := PlanReplicas(reg, group, prefix, n)
	if err != nil {
		return nil, err
	}
	res := &ScaleResult{Plan: plan}
	for _, id := range plan.Start {
		l := m.Config.Layer(e, tpl)
		req, err := NewStartRequest(m.Config, l, StartRequest{ID: id, Timeout: opts.Timeout})
		if err != nil {
			return res, err
		}
		if _, err := m.startLocked(ctx, req); err != nil {
			return res, fmt.Errorf("start %s: %w", id, err)
		}
		res.Started = append(res.Started, id)
	}
	if len(plan.Stop) == 0 {
		return res, nil
	}
	if err := m.drainMembers(ctx, plan.Stop); err != nil {
		return res, err
	}
	var errs []error
	out := m.removeMany(ctx, plan.Stop, m.parallel(opts.Parallel))
	for _, id := range plan.Stop {
		if out[id] != nil {
			errs = append(errs, out[id])
			continue
		}
		res.Stopped = append(res.Stopped, id)
	}
	errs = append(errs, m.syncGroups(ctx), m.syncFronts(ctx, nil))
	return res, errors.Join(errs...)
}
