package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/internal/suggest"
	"github.com/kato-manager/kato-manager/remote"
	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/textview"
)

// onHosts runs the invocation cmd on the hosts of --host instead of here:
// on one host as it is, and list and status on several at once, merged.
func (a *app) onHosts(cmd *cobra.Command) error {
	hosts, err := remote.ParseHosts(a.host)
	if err != nil {
		return err
	}
	args := remote.ForwardArgs(a.args, cmd.Flags())
	switch path := cmd.CommandPath(); {
	case len(hosts) == 1:
		err := remote.Run(cmd.Context(), hosts[0], args, a.stdin, a.stdout, a.stderr)
		if code, ran := remote.ExitCode(err); ran {
			// The remote command printed what it had to say.
			return exitCodeError{code: code}
		}
		return err
	case path == "kato-manager list":
		return a.listHosts(cmd.Context(), hosts, args, cmd.Flags())
	case path == "kato-manager status":
		return a.statusHosts(cmd.Context(), hosts, args, cmd.Flags())
	default:
		return usagef("--host %s names %d hosts: only list and status run on several at once; give %s one host", a.host, len(hosts), strings.TrimPrefix(path, "kato-manager "))
	}
}

// errHostsFailed ends a merged command in which some hosts failed: each was
// reported already.
var errHostsFailed = exitCodeError{code: exitFailed}

// listHosts runs list on every host at once and prints one table, or one
// JSON array, with each instance's host. A host that fails is reported on
// standard error and makes the exit status 1; the others' rows still print.
func (a *app) listHosts(ctx context.Context, hosts, args []string, fs *pflag.FlagSet) error {
	rows, failed := supervisor.MergeLists(remote.Each(ctx, hosts, remote.WithJSON(args, fs)))
	for _, f := range failed {
		fmt.Fprintf(a.stderr, "kato-manager: host %s: %s\n", f.Host, f.Message)
	}
	var err error
	switch {
	case fs.Changed("json"):
		if rows == nil {
			rows = []supervisor.HostInstance{}
		}
		err = writeJSON(a.stdout, rows)
	case len(rows) == 0 && len(failed) == 0:
		fmt.Fprintf(a.stdout, "no instances on %s\n", suggest.OrList(hosts))
	case len(rows) > 0:
		err = textview.HostList(a.stdout, rows)
	}
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return errHostsFailed
	}
	return exitCodeError{code: exitOK}
}

// statusHosts runs status on every host at once and prints each host's
// findings, with the instances of all of them in one table. It exits 1 when
// a host fails or is unhealthy.
func (a *app) statusHosts(ctx context.Context, hosts, args []string, fs *pflag.FlagSet) error {
	all, healthy := supervisor.MergeStatuses(remote.Each(ctx, hosts, remote.WithJSON(args, fs)))
	for _, hs := range all {
		if hs.Status == nil {
			fmt.Fprintf(a.stderr, "kato-manager: host %s: %s\n", hs.Host, hs.Error)
		}
	}
	if fs.Changed("json") {
		if err := writeJSON(a.stdout, all); err != nil {
			return err
		}
	} else {
		textview.HostStatuses(a.stdout, a.palette(a.stdout), all)
	}
	if !healthy {
		return errHostsFailed
	}
	return exitCodeError{code: exitOK}
}
