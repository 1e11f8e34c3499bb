package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/remote"
	"github.com/kato-manager/kato-manager/supervisor"
)

// remoteExit ends an invocation that ran on another host: the remote
// command printed what it had to say, and code is its exit status.
type remoteExit struct{ code int }

func (remoteExit) Error() string { return "" }

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
		var exit *remote.ExitError
		if errors.As(err, &exit) {
			return remoteExit{exit.Code}
		}
		if err != nil {
			return err
		}
		return remoteExit{exitOK}
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
var errHostsFailed = remoteExit{exitFailed}

// hostInstance is a row of a merged list: an instance and its host.
type hostInstance struct {
	Host string `json:"host"`
	supervisor.InstanceView
}

// listHosts runs list on every host at once and prints one table, or one
// JSON array, with each instance's host. A host that fails is reported on
// standard error and makes the exit status 1; the others' rows still print.
func (a *app) listHosts(ctx context.Context, hosts, args []string, fs *pflag.FlagSet) error {
	var rows []hostInstance
	failed := false
	for _, r := range remote.Each(ctx, hosts, remote.WithJSON(args, fs)) {
		var views []supervisor.InstanceView
		if r.Err == nil {
			if err := json.Unmarshal(r.Stdout, &views); err != nil {
				r.Err = fmt.Errorf("%s: unreadable answer of list --json: %w", r.Host, err)
			}
		}
		if r.Err != nil {
			fmt.Fprintf(a.stderr, "kato-manager: host %s: %s\n", r.Host, r.Failure())
			failed = true
			continue
		}
		for _, v := range views {
			rows = append(rows, hostInstance{Host: r.Host, InstanceView: v})
		}
	}
	var err error
	switch {
	case fs.Changed("json"):
		if rows == nil {
			rows = []hostInstance{}
		}
		err = writeJSON(a.stdout, rows)
	case len(rows) == 0 && !failed:
		fmt.Fprintf(a.stdout, "no instances on %s\n", orList(hosts))
	case len(rows) > 0:
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\t"+listHeader)
		for _, r := range rows {
			fmt.Fprintln(tw, r.Host+"\t"+listRow(r.InstanceView))
		}
		err = tw.Flush()
	}
	if err != nil {
		return err
	}
	if failed {
		return errHostsFailed
	}
	return remoteExit{exitOK}
}

// hostStatus is one host's part of a merged status: its status, or the
// error that kept it from answering.
type hostStatus struct {
	Host  string `json:"host"`
	Error string `json:"error,omitempty"`
	*supervisor.Status
}

// statusHosts runs status on every host at once and prints each host's
// findings, with the instances of all of them in one table. It exits 1 when
// a host fails or is unhealthy.
func (a *app) statusHosts(ctx context.Context, hosts, args []string, fs *pflag.FlagSet) error {
	var all []hostStatus
	bad := false
	for _, r := range remote.Each(ctx, hosts, remote.WithJSON(args, fs)) {
		hs := hostStatus{Host: r.Host}
		var exit *remote.ExitError
		// status exits 1 when something is unhealthy, and still answers.
		if r.Err == nil || errors.As(r.Err, &exit) && exit.Code == exitFailed {
			var st supervisor.Status
			if err := json.NewDecoder(bytes.NewReader(r.Stdout)).Decode(&st); err == nil {
				hs.Status = &st
			} else if r.Err == nil {
				r.Err = fmt.Errorf("%s: unreadable answer of status --json: %w", r.Host, err)
			}
		}
		if hs.Status == nil {
			hs.Error = r.Failure()
			fmt.Fprintf(a.stderr, "kato-manager: host %s: %s\n", r.Host, hs.Error)
		}
		if hs.Status == nil || !hs.Status.Healthy() {
			bad = true
		}
		all = append(all, hs)
	}
	if fs.Changed("json") {
		if err := writeJSON(a.stdout, all); err != nil {
			return err
		}
	} else {
		printStatuses(a, all)
	}
	if bad {
		return errHostsFailed
	}
	return remoteExit{exitOK}
}

// printStatuses prints a merged status: per host what status prints once,
// and one instance table with a HOST column.
func printStatuses(a *app, all []hostStatus) {
	fmt.Fprintln(a.stdout, "systemd:")
	for _, hs := range all {
		switch {
		case hs.Status == nil:
			fmt.Fprintf(a.stdout, "  %s: no answer: %s\n", hs.Host, hs.Error)
		case !hs.SystemdReachable:
			fmt.Fprintf(a.stdout, "  %s: unreachable: %s\n", hs.Host, hs.SystemdError)
		default:
			fmt.Fprintf(a.stdout, "  %s: reachable (version %s)\n", hs.Host, hs.SystemdVersion)
		}
	}
	var services, instances []string
	pal := a.palette(a.stdout)
	for _, hs := range all {
		if hs.Status == nil {
			continue
		}
		for _, s := range hs.Services {
			services = append(services, fmt.Sprintf("  %s: %s: %s (%s/%s)", hs.Host, s.Unit, s.LoadState, s.ActiveState, s.SubState))
		}
		for _, i := range hs.Instances {
			instances = append(instances, "  "+hs.Host+"\t"+statusRow(pal, i))
		}
	}
	if len(services) > 0 {
		fmt.Fprintln(a.stdout, "shared services:")
		fmt.Fprintln(a.stdout, strings.Join(services, "\n"))
	}
	if len(instances) == 0 {
		fmt.Fprintln(a.stdout, "instances: none")
	} else {
		fmt.Fprintln(a.stdout, "instances:")
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  HOST\t"+statusHeader(pal))
		for _, row := range instances {
			fmt.Fprintln(tw, row)
		}
		tw.Flush()
	}
	for _, hs := range all {
		if hs.Status == nil {
			continue
		}
		for _, w := range hs.Warnings {
			fmt.Fprintf(a.stdout, "warning: %s: %s\n", hs.Host, w)
		}
	}
	fmt.Fprintln(a.stdout, "registry:")
	for _, hs := range all {
		if hs.Status == nil {
			continue
		}
		for _, line := range driftLines(hs.Drift, "kato-manager --host "+hs.Host+" gc") {
			fmt.Fprintf(a.stdout, "  %s: %s\n", hs.Host, line)
		}
	}
}
