package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/remote"
	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/textview"
)

// Exit codes of diff and apply --dry-run, as diff(1) and `kubectl diff`
// have them.
const (
	exitNoChanges = 0                     // the fleet is as the file says
	exitChanges   = fleet.DiffExitChanges // applying the file would change something
	exitTrouble   = 2                     // the file or the command line is wrong, or the registry unreadable
)

// exitCodeError ends the command with its code, printing err unless it is
// nil.
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e exitCodeError) Unwrap() error { return e.err }

// applyFlagValues are apply's flags.
type applyFlagValues struct {
	file               *string
	prune, dryRun, yes *bool
	surge              *int
	batch              *batchFlagValues
	src                *fleetSourceFlags
}

// batchFlagValues are the flags of the commands that start many instances.
type batchFlagValues struct {
	parallel *int
	timeout  *time.Duration
}

func batchFlags(fs *pflag.FlagSet) *batchFlagValues {
	return &batchFlagValues{
		parallel: fs.Int("parallel", 0, "how many instances start at once (default: batch.parallel of kato.toml, else all at once)"),
		timeout:  fs.Duration("timeout", 0, "how long each instance may take to answer its health request (default: its processor's ready_timeout)"),
	}
}

// options checks the flags and returns them as supervisor.BatchOptions.
func (b *batchFlagValues) options(fs *pflag.FlagSet) (supervisor.BatchOptions, error) {
	if fs.Changed("parallel") && (*b.parallel < 1 || *b.parallel > config.MaxParallel) {
		return supervisor.BatchOptions{}, &config.FieldError{Field: "--parallel", Value: fmt.Sprint(*b.parallel), Rule: fmt.Sprintf("must be between 1 and %d", config.MaxParallel)}
	}
	if err := positiveDuration(fs, "timeout", *b.timeout); err != nil {
		return supervisor.BatchOptions{}, err
	}
	return supervisor.BatchOptions{Parallel: *b.parallel, Timeout: *b.timeout}, nil
}

func applyFlags(fs *pflag.FlagSet) *applyFlagValues {
	return &applyFlagValues{
		file:   fs.StringP("file", "f", "", "fleet file: .yaml or .yml, .json, or .toml, or - for YAML or JSON on standard input (required)"),
		prune:  fs.Bool("prune", false, "also stop and remove the registered instances the file does not name"),
		dryRun: fs.Bool("dry-run", false, "print the plan and change nothing, as diff does (same exit status)"),
		yes:    fs.Bool("yes", false, "with --prune, "+yesFlagHelp),
		surge:  fs.Int("surge", 0, "start N extra members of each fronted group whose members change before they are rolled, N out at a time, and remove them after (as restart --group --surge; default: the group's surge)"),
		batch:  batchFlags(fs),
		src:    fleetSourceFlagsOf(fs),
	}
}

// diffFlagValues are diff's flags.
type diffFlagValues struct {
	file  *string
	prune *bool
	src   *fleetSourceFlags
}

func diffFlags(fs *pflag.FlagSet) *diffFlagValues {
	return &diffFlagValues{
		file:  fs.StringP("file", "f", "", "fleet file: .yaml or .yml, .json, or .toml, or - for YAML or JSON on standard input (required)"),
		prune: fs.Bool("prune", false, "also show the registered instances the file does not name, as removed"),
		src:   fleetSourceFlagsOf(fs),
	}
}

// loadFleet reads and checks the fleet file of -f against kato.toml: the
// whole file, and this host's entries resolved (see fleet.Source).
func (a *app) loadFleet(fs *pflag.FlagSet, file string, sf *fleetSourceFlags) (*config.Config, []fleet.Desired, *fleet.Source, error) {
	if fs.NArg() > 0 {
		return nil, nil, nil, usagef("unexpected arguments %q; give the fleet file with -f FILE", fs.Args())
	}
	if file == "" {
		return nil, nil, nil, usagef("give the fleet file with -f FILE")
	}
	name, data, err := a.readFleetFile(file, sf)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	want, f, err := fleet.ReadFleet(cfg, name, data, *sf.entriesOf)
	if errors.As(err, new(config.FileErrors)) {
		return nil, nil, nil, flattenFileErrors(err)
	}
	if err != nil {
		return nil, nil, nil, usageError{err}
	}
	return cfg, want, fleet.NewSource(f, name, data, *sf.entriesOf), nil
}

// fileErrors prints each problem of a fleet file on a line of its own and
// exits 2.
type fileErrors struct{ errs config.FileErrors }

func (e fileErrors) Error() string { return e.errs.Error() }
func (e fileErrors) Unwrap() error { return e.errs }

func (a *app) diff(ctx context.Context, fs *pflag.FlagSet, f *diffFlagValues) error {
	return a.showPlan(ctx, fs, *f.file, *f.prune, f.src)
}

// showPlan prints the plan of applying file and exits as diff(1) does: this
// host's plan, then each other host's as its kato-manager makes it.
func (a *app) showPlan(ctx context.Context, fs *pflag.FlagSet, file string, prune bool, sf *fleetSourceFlags) error {
	cfg, want, src, err := a.loadFleet(fs, file, sf)
	if err != nil {
		return exitCodeError{exitTrouble, err}
	}
	pending := false
	if src.Local {
		plan, reg, err := fleet.PlanRegistry(a.registry(), src.Name, want, prune)
		if err != nil {
			return exitCodeError{exitTrouble, flattenFileErrors(err)}
		}
		// What runs, when systemd can be asked: the instances apply
		// would restart because their units do not run the registry's
		// settings.
		if m, done, err := a.managerWith(ctx, cfg); err == nil {
			plan, err = m.PlanFleet(ctx, src.Name, want, prune)
			done()
			if err != nil {
				return exitCodeError{exitTrouble, flattenFileErrors(err)}
			}
		} else {
			fmt.Fprintf(a.stderr, "kato-manager: systemd cannot be asked (%v): the plan compares the file with the registry only\n", err)
		}
		textview.Plan(a.stdout, plan)
		pending = plan.Pending()
		if src.HasGroups {
			for _, line := range fleet.GroupChanges(reg.Groups, src.Groups) {
				fmt.Fprintln(a.stdout, line)
				pending = true
			}
		}
	}
	if len(src.Hosts) > 0 {
		results, changes, err := src.Diff(ctx, fleetArgs(fs, prune))
		remote.WriteAll(a.stdout, a.stderr, results)
		if err != nil {
			return exitCodeError{code: exitTrouble, err: err}
		}
		pending = pending || changes
	}
	if pending {
		return exitCodeError{code: exitChanges}
	}
	return nil
}

func flattenFileErrors(err error) error {
	var fes config.FileErrors
	if errors.As(err, &fes) {
		return fileErrors{fes}
	}
	return err
}

func (a *app) apply(ctx context.Context, fs *pflag.FlagSet, f *applyFlagValues) error {
	if *f.dryRun {
		return a.showPlan(ctx, fs, *f.file, *f.prune, f.src)
	}
	opts, err := f.batch.options(fs)
	if err != nil {
		return err
	}
	if err := supervisor.CheckSurge(*f.surge); err != nil {
		return err
	}
	opts.Surge = supervisor.SurgeOfGroup
	if fs.Changed("surge") {
		opts.Surge = *f.surge
	}
	cfg, want, src, err := a.loadFleet(fs, *f.file, f.src)
	if err != nil {
		return err
	}
	if len(src.Hosts) > 0 {
		return a.applyOnHosts(ctx, cfg, fs, *f.prune, *f.yes, src, want,
			// A host without entries of its own, here for the fronts,
			// prunes nothing.
			func() error { return a.applyHere(ctx, cfg, want, src, opts, *f.prune && src.Local, true) })
	}
	return a.applyHere(ctx, cfg, want, src, opts, *f.prune, *f.yes)
}

// confirmPrune asks, on a terminal and unless yes, before apply --prune
// removes the instances named.
func (a *app) confirmPrune(yes bool, removed []string) error {
	if len(removed) == 0 {
		return nil
	}
	return a.confirm(yes, fmt.Sprintf("Stop and remove %d instance(s) the file does not name (%s)?", len(removed), strings.Join(removed, ", ")))
}

// applyHere applies this host's entries of the file; unless yes, it asks
// on a terminal before it removes instances.
func (a *app) applyHere(ctx context.Context, cfg *config.Config, want []fleet.Desired, src *fleet.Source, opts supervisor.BatchOptions, prune, yes bool) error {
	file := src.Name
	// The file is checked against the registry before systemd is asked
	// anything. Whether there is nothing to do is not the registry's to
	// say: an apply stopped before its restarts left a registry that
	// already matches the file; Apply looks at what runs.
	plan, _, err := fleet.PlanRegistry(a.registry(), file, want, prune)
	if err != nil {
		return flattenFileErrors(err)
	}
	if err := a.confirmPrune(yes, plan.Removals()); err != nil {
		return err
	}
	return a.withManager(ctx, cfg, func(m *supervisor.Manager) error {
		pr := textview.NewProgress(a.stderr)
		opts.Progress = pr.Update
		applyOpts := supervisor.ApplyOptions{BatchOptions: opts, Prune: prune, Groups: src.Groups, SetGroups: src.HasGroups}
		if os.Getenv(testPauseVariable) == "registry" {
			applyOpts.AfterRegistry = func(ctx context.Context) {
				// For the tests that stop an apply between its registry
				// update and its restarts: a signal ends the wait.
				fmt.Fprintln(a.stderr, "kato-manager: paused after the registry update ("+testPauseVariable+")")
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Minute):
				}
			}
		}
		res, err := m.Apply(ctx, file, want, applyOpts)
		pr.Finish()
		if res == nil {
			return flattenFileErrors(err)
		}
		if res.GroupsChanged {
			fmt.Fprintf(a.stdout, "groups of %s stored: %s\n", file, config.NamesOrNone(slices.Sorted(maps.Keys(src.Groups))))
		}
		if !res.Plan.Pending() {
			fmt.Fprintf(a.stdout, "nothing to do: the %d instances are as %s says; nothing restarted\n", res.Plan.Count(fleet.Keep), file)
			return nil
		}
		textview.Applied(a.stdout, file, res)
		if err != nil && errors.Is(err, supervisor.ErrBatchFailed) {
			return exitCodeError{code: exitFailed}
		}
		return err
	})
}

// testPauseVariable, set to "registry", makes apply wait after its registry
// update until a signal: the end-to-end tests kill it there.
const testPauseVariable = "KATO_MANAGER_TEST_APPLY_PAUSE"

func exportFlags(fs *pflag.FlagSet) *string {
	return fs.String("format", "yaml", "yaml, json or toml")
}

func (a *app) export(ctx context.Context, fs *pflag.FlagSet, format *string) error {
	if err := fleet.CheckExportFormat("--format", *format); err != nil {
		return err
	}
	cfg, reg, err := a.loadWithRegistry()
	if err != nil {
		return err
	}
	data, err := fleet.Export(reg, cfg.Defaults, *format)
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(data)
	return err
}
