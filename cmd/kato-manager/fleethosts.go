package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/remote"
)

// A fleet file's entries may name a host: kato-manager hands the whole file
// to that host's kato-manager over ssh (as --host does), on standard input,
// with the entries to take, so that each host resolves, plans and applies
// its own instances against its own kato.toml, registry and units, and its
// errors name the lines of the file as written. This host takes the entries
// without a host; when every entry names one, this host takes no part.

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

// fleetSource is a fleet file read: its content, the name it goes by, the
// other hosts it names, and whether this host has entries in it.
type fleetSource struct {
	name  string
	data  []byte
	hosts []string
	local bool
}

// stdinFleetName is the name of a fleet read from standard input without
// --file-name: YAML, which JSON is too.
const stdinFleetName = "stdin.yaml"

func (a *app) readFleetSource(file string, sf *fleetSourceFlags) (*fleetSource, error) {
	src := &fleetSource{name: file}
	var err error
	if file == "-" {
		src.name = stdinFleetName
		if *sf.name != "" {
			src.name = *sf.name
		}
		src.data, err = io.ReadAll(io.LimitReader(a.stdin, maxFleetBytes+1))
		if err == nil && len(src.data) > maxFleetBytes {
			err = fmt.Errorf("more than %d bytes", maxFleetBytes)
		}
	} else {
		if *sf.name != "" {
			return nil, usagef("--file-name goes with -f -")
		}
		src.data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read fleet file %s: %w", src.name, err)
	}
	if *sf.entriesOf != "" {
		if err := config.CheckHost(*sf.entriesOf); err != nil {
			return nil, &config.FieldError{Field: "--entries-of", Value: *sf.entriesOf, Rule: err.Error()}
		}
	}
	return src, nil
}

// maxFleetBytes bounds a fleet file read from standard input.
const maxFleetBytes = 16 << 20

// fleetArgs are the flags a host handed the file gets besides -f and the
// hidden ones: --prune, and those of a batch that were given.
func fleetArgs(fs *pflag.FlagSet, prune bool) []string {
	var args []string
	if prune {
		args = append(args, "--prune")
	}
	for _, name := range []string{"parallel", "timeout"} {
		if fs == nil {
			break
		}
		if fl := fs.Lookup(name); fl != nil && fl.Changed {
			args = append(args, "--"+name+"="+fl.Value.String())
		}
	}
	return args
}

// onFleetHosts runs verb (diff or apply) of the file on each of its other
// hosts at once, each taking its own entries.
func (a *app) onFleetHosts(ctx context.Context, verb string, src *fleetSource, extra []string) []remote.Result {
	return remote.EachWith(ctx, src.hosts, func(h string) []string {
		return append([]string{verb, "-f", "-", "--file-name", src.name, "--entries-of", h}, extra...)
	}, src.data)
}

// planOf reads a host's diff: whether it has changes, or the error that
// made it refuse the file (diff exits 1 for changes, 2 for trouble).
func planOf(r remote.Result) (pending bool, err error) {
	var exit *remote.ExitError
	switch {
	case r.Err == nil:
		return false, nil
	case errors.As(r.Err, &exit) && exit.Code == exitChanges:
		return true, nil
	default:
		return false, r.Err
	}
}

// planRemovals are the instances a diff's output says it removes: its
// "- ID (port N)" lines (see printPlan).
func planRemovals(diff []byte) []string {
	var ids []string
	for _, line := range strings.Split(string(diff), "\n") {
		if rest, ok := strings.CutPrefix(line, "- "); ok {
			id, _, _ := strings.Cut(rest, " ")
			ids = append(ids, id)
		}
	}
	return ids
}

// printHostResults writes what each host printed, each line after the
// host's name.
func (a *app) printHostResults(results []remote.Result) {
	for _, r := range results {
		prefixLines(a.stdout, r.Host, r.Stdout)
		prefixLines(a.stderr, r.Host, []byte(r.Stderr))
	}
}

func prefixLines(w io.Writer, host string, data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintf(w, "%s: %s\n", host, sc.Text())
	}
}

// applyOnHosts applies a file that names other hosts: first every host
// checks and plans its entries (diff), and on any problem nothing changes
// anywhere; then this host applies its own (here) and the others theirs at
// once. The exit status is the worst of them.
func (a *app) applyOnHosts(ctx context.Context, fs *pflag.FlagSet, prune, yes bool, src *fleetSource, want []fleet.Desired, here func() error) error {
	extra := fleetArgs(fs, prune)
	var bad, removed []string
	for _, r := range a.onFleetHosts(ctx, "diff", src, fleetArgs(nil, prune)) {
		if _, err := planOf(r); err != nil {
			prefixLines(a.stderr, r.Host, []byte(r.Stderr))
			bad = append(bad, fmt.Sprintf("%s: %v", r.Host, err))
		}
		for _, id := range planRemovals(r.Stdout) {
			removed = append(removed, r.Host+":"+id)
		}
	}
	if len(bad) > 0 {
		return exitCodeError{code: exitTrouble, err: fmt.Errorf("%d of %d hosts refused the file, so no host was changed: %v", len(bad), len(src.hosts), bad)}
	}
	// One question for every host, before any host is changed; the
	// remote commands are asked nothing (their input is no terminal).
	if prune && !yes && src.local {
		reg, err := a.registry().Load()
		if err != nil {
			return err
		}
		plan, err := fleet.NewPlan(src.name, want, reg, prune)
		if err != nil {
			return flattenFileErrors(err)
		}
		removed = append(removals(plan), removed...)
	}
	if err := a.confirmPrune(yes, removed); err != nil {
		return err
	}
	code := exitOK
	if src.local {
		if err := here(); err != nil {
			var ec exitCodeError
			if !errors.As(err, &ec) || ec.err != nil {
				return err
			}
			code = ec.code
		}
	}
	for _, r := range a.onFleetHosts(ctx, "apply", src, extra) {
		prefixLines(a.stdout, r.Host, r.Stdout)
		prefixLines(a.stderr, r.Host, []byte(r.Stderr))
		var exit *remote.ExitError
		switch {
		case r.Err == nil:
		case errors.As(r.Err, &exit):
			code = max(code, exit.Code)
		default:
			fmt.Fprintf(a.stderr, "kato-manager: host %s: %v\n", r.Host, r.Err)
			code = max(code, exitFailed)
		}
	}
	if code != exitOK {
		return exitCodeError{code: code, err: errors.New("not every host applied all its entries: see above")}
	}
	return nil
}
