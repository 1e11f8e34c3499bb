package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/supervisor"
)

// restartGroup is `restart --group NAME`: a rolling restart through the
// group's front when it has one, else every member as one batch.
func (a *app) restartGroup(ctx context.Context, fs *pflag.FlagSet, f *restartFlagValues) error {
	if err := checkGroupFlag(*f.group); err != nil {
		return err
	}
	ro := supervisor.RollOptions{MaxUnavailable: *f.maxUnavailable, Surge: *f.surge, Timeout: *f.timeout}
	if err := ro.Check(fs.Changed("max-unavailable")); err != nil {
		return err
	}
	cfg, reg, err := a.loadWithRegistry()
	if err != nil {
		return err
	}
	if gc, ok := reg.Group(cfg, *f.group); !ok || gc.Front == 0 {
		for _, flag := range []string{"max-unavailable", "surge"} {
			if fs.Changed(flag) {
				return usagef("--%s goes with a group that has a front ([groups.%s] front = PORT in kato.toml)", flag, *f.group)
			}
		}
		return a.groupBatch(ctx, fs, *f.group, &batchFlagValues{parallel: f.parallel, timeout: f.timeout}, "restarted", (*supervisor.Manager).RestartGroup)
	}
	if fs.Changed("parallel") {
		return usagef("--parallel does not go with a group that has a front, which restarts rolling: use --max-unavailable")
	}
	if err := positiveDuration(fs, "timeout", *f.timeout); err != nil {
		return err
	}
	return a.withManager(ctx, cfg, func(m *supervisor.Manager) error {
		if !fs.Changed("surge") {
			ro.Surge = supervisor.SurgeOfGroup
		}
		res, err := m.RollGroup(ctx, *f.group, ro)
		if res == nil {
			return err
		}
		return a.printGroupResult("restarted", res, err)
	})
}

// scaleFlagValues are scale's flags.
type scaleFlagValues struct {
	group, onHost, prefix *string
	timeout               *time.Duration
	parallel              *int
}

func scaleFlags(fs *pflag.FlagSet) *scaleFlagValues {
	return &scaleFlagValues{
		group:    fs.String("group", "", "the group NAME to scale: its replicas are NAME-1 to NAME-N, made as [groups.NAME] of kato.toml says"),
		timeout:  fs.Duration("timeout", 0, "how long each new replica may take to answer its health request (default: its processor's ready_timeout)"),
		parallel: fs.Int("parallel", 0, "how many replicas stop at once (default: batch.parallel of kato.toml, else all at once)"),
		onHost:   fs.String("on-host", "", "scale the replicas of the group's front that run on [USER@]HOST, over ssh, the front here updated (default: this host's replicas)"),
		prefix:   fs.String("prefix", "", "name the replicas ID-1 to ID-N (default: the group's NAME)"),
	}
}

// scale is `scale --group NAME N`.
func (a *app) scale(ctx context.Context, fs *pflag.FlagSet, f *scaleFlagValues) error {
	if !fs.Changed("group") || fs.NArg() != 1 {
		return usagef("scale takes --group NAME and one number, the replicas wanted")
	}
	if err := checkGroupFlag(*f.group); err != nil {
		return err
	}
	n, err := strconv.Atoi(fs.Arg(0))
	if err != nil || n < 0 || n > supervisor.MaxReplicas {
		return &config.FieldError{Field: "N", Value: fs.Arg(0), Rule: fmt.Sprintf("must be a whole number between 0 and %d", supervisor.MaxReplicas)}
	}
	if err := positiveDuration(fs, "timeout", *f.timeout); err != nil {
		return err
	}
	cfg, reg, err := a.loadWithRegistry()
	if err != nil {
		return err
	}
	opts := supervisor.ScaleOptions{Timeout: *f.timeout, Parallel: *f.parallel, Prefix: *f.prefix}
	where := ""
	if fs.Changed("on-host") {
		if fs.Changed("prefix") {
			return usagef("--prefix goes without --on-host: the replicas on that host keep the series they have")
		}
		if err := config.CheckHost(*f.onHost); err != nil {
			return &config.FieldError{Field: "--on-host", Value: *f.onHost, Rule: err.Error()}
		}
		if _, _, _, err := supervisor.PlanOnHost(cfg, reg, *f.group, *f.onHost, n); err != nil {
			return err
		}
		where = " on " + *f.onHost
	} else if _, _, err := supervisor.ReplicaEntry(cfg, reg, *f.group); err != nil {
		return err
	}
	return a.withManager(ctx, cfg, func(m *supervisor.Manager) error {
		var res *supervisor.ScaleResult
		if where != "" {
			res, err = m.ScaleOnHost(ctx, *f.group, *f.onHost, n, opts)
		} else {
			res, err = m.ScaleGroup(ctx, *f.group, n, opts)
		}
		if res != nil {
			for _, id := range res.Started {
				fmt.Fprintf(a.stdout, "started %s\n", id)
			}
			for _, id := range res.Stopped {
				fmt.Fprintf(a.stdout, "stopped %s\n", id)
			}
			fmt.Fprintf(a.stdout, "group %s: %d replica(s)%s; started %d, stopped %d\n", *f.group, n, where, len(res.Started), len(res.Stopped))
			if where == "" && reg.HasRemoteMembers(*f.group) {
				fmt.Fprintf(a.stdout, "its members on other hosts are unchanged; scale them with --on-host HOST\n")
			}
		}
		return err
	})
}
