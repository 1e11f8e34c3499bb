package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/remote"
	"github.com/kato-manager/kato-manager/supervisor"
)

// fleetSourceFlags are apply's and diff's hidden flags for a file handed on
// to another host.
type fleetSourceFlags struct {
	entriesOf *string // take the entries of this host
	name      *string // the file's name, for errors and its format
}

func fleetSourceFlagsOf(fs *pflag.FlagSet) *fleetSourceFlags {
	sf := &fleetSourceFlags{
		entriesOf: fs.String("entries-of", "", "take the entries whose host is this (set by the host that hands the file on)"),
		name:      fs.String("file-name", "", "the name of the file read from standard input, for its format and errors"),
	}
	fs.MarkHidden("entries-of")
	fs.MarkHidden("file-name")
	return sf
}

// readFleetFile reads the fleet file of -f, - being standard input
// (fleet.ReadInput), and returns the name it goes by and its content.
func (a *app) readFleetFile(file string, sf *fleetSourceFlags) (name string, data []byte, err error) {
	if file != "-" && *sf.name != "" {
		return "", nil, usagef("--file-name goes with -f -")
	}
	if name, data, err = fleet.ReadInput(file, *sf.name, a.stdin); err != nil {
		return "", nil, err
	}
	if *sf.entriesOf != "" {
		if err := config.CheckHost(*sf.entriesOf); err != nil {
			return "", nil, &config.FieldError{Field: "--entries-of", Value: *sf.entriesOf, Rule: err.Error()}
		}
	}
	return name, data, nil
}

// fleetArgs are the flags a host handed the file gets besides -f and the
// hidden ones: --prune, and those of a batch that were given.
func fleetArgs(fs *pflag.FlagSet, prune bool) []string {
	var args []string
	if prune {
		args = append(args, "--prune")
	}
	for _, name := range []string{"parallel", "timeout"} {
		if fl := fs.Lookup(name); fl != nil && fl.Changed {
			args = append(args, "--"+name+"="+fl.Value.String())
		}
	}
	return args
}

// applyOnHosts applies a file that names other hosts, all or none
// (supervisor.HostsApply): this host's entries with here. The exit status
// is the worst of the hosts'.
func (a *app) applyOnHosts(ctx context.Context, cfg *config.Config, fs *pflag.FlagSet, prune, yes bool, src *fleet.Source, want []fleet.Desired, here func() error) error {
	code := exitOK
	frontsError := func(err error) {
		fmt.Fprintf(a.stderr, "kato-manager: fronts: %v\n", err)
		code = max(code, exitFailed)
	}
	o := &supervisor.HostsApply{Source: src, Want: want, Prune: prune, Flags: fleetArgs(fs, prune), Stderr: a.stderr,
		Registry: a.registry(), Config: cfg, FrontsError: frontsError,
		Manager: func() (*supervisor.Manager, func(), error) { return a.managerWith(ctx, cfg) },
		Here: func() error {
			err := here()
			var ec exitCodeError
			if err != nil && errors.As(err, &ec) && ec.err == nil {
				code, err = ec.code, nil
			}
			return err
		}}
	if !yes {
		o.Confirm = func(removed []string) error { return a.confirmPrune(false, removed) }
	}
	results, err := o.Apply(ctx)
	var refused *fleet.RefusedError
	if errors.As(err, &refused) {
		return exitCodeError{code: exitTrouble, err: err}
	}
	if err != nil {
		return flattenFileErrors(err)
	}
	code = max(code, remote.WriteEach(a.stdout, a.stderr, results))
	// The members the other hosts run now, for this host's fronts.
	if err := o.Refresh(ctx, results); err != nil {
		frontsError(err)
	}
	if code != exitOK {
		return exitCodeError{code: code, err: errors.New("not every host applied all its entries: see above")}
	}
	return nil
}
