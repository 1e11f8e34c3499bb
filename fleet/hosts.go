package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/remote"
)

// A fleet file's entries may name a host: kato-manager hands the whole file
// to that host's kato-manager over ssh (as --host does), on standard input,
// with the entries to take, so that each host resolves, plans and applies
// its own instances against its own kato.toml, registry and units, and its
// errors name the lines of the file as written. This host takes the entries
// without a host; when every entry names one, this host takes no part.

// Source is a fleet file as this host read it: its content, the name it
// goes by, the other hosts it hands the file to, and whether this host has
// entries in it.
type Source struct {
	Name  string
	Data  []byte
	Hosts []string
	Local bool
	// Groups are the file's groups:, when HasGroups.
	Groups    map[string]config.Group
	HasGroups bool
	// Fronts says the file's groups have fronts, which run on this host
	// (the one that hands the file on) whether it has entries or not.
	Fronts bool
}

// NewSource is the Source of f, read from data under name, on the host
// whose entries are taken: entriesOf, or "" for this host as a command
// line names it. Only this host's kato-manager hands the file on: one
// handed a file with --entries-of takes its entries and hands it to none.
func NewSource(f *Fleet, name string, data []byte, entriesOf string) *Source {
	src := &Source{Name: name, Data: data, Local: len(f.OfHost(entriesOf).Entries) > 0, Groups: f.Groups, HasGroups: f.HasGroups}
	if entriesOf == "" {
		src.Hosts = f.Hosts()
		src.Local = src.Local || len(src.Hosts) == 0
		for _, g := range f.Groups {
			src.Fronts = src.Fronts || g.Front != 0
		}
	} else if f.HasGroups {
		// The groups' fronts run on the host that hands the file on, which
		// reaches this host's members at its address: none here.
		src.Groups = make(map[string]config.Group, len(f.Groups))
		for name, g := range f.Groups {
			g.Front, g.Address, g.Balance, g.Ready = 0, "", "", ""
			src.Groups[name] = g
		}
	}
	return src
}

// OnHosts runs verb (diff or apply) of the file on each of its other hosts
// at once, the file on standard input, each taking its own entries; extra
// are the flags besides the file's.
func (s *Source) OnHosts(ctx context.Context, verb string, extra []string) []remote.Result {
	return remote.EachWith(ctx, s.Hosts, func(h string) []string {
		return append([]string{verb, "-f", "-", "--file-name", s.Name, "--entries-of", h}, extra...)
	}, s.Data)
}

// DiffExitChanges is the exit status of `kato-manager diff` when applying
// the file would change something; 0 is no changes, any other trouble.
const DiffExitChanges = 1

// DiffPending reads a host's diff: whether it has changes, or the error
// that made it refuse the file.
func DiffPending(r remote.Result) (pending bool, err error) {
	var exit *remote.ExitError
	switch {
	case r.Err == nil:
		return false, nil
	case errors.As(r.Err, &exit) && exit.Code == DiffExitChanges:
		return true, nil
	default:
		return false, r.Err
	}
}

// RemovalPrefix starts the line of a diff's output for an instance the plan
// removes: "- ID (port N)". DiffRemovals reads those lines back from
// another host's diff.
const RemovalPrefix = "- "

// Diff runs diff of the file on each of its other hosts at once (extra
// are the flags besides the file's) and returns their results, whether
// any has changes, and the error of the first that refused the file.
func (s *Source) Diff(ctx context.Context, extra []string) (results []remote.Result, pending bool, err error) {
	results = s.OnHosts(ctx, "diff", extra)
	for _, r := range results {
		changes, herr := DiffPending(r)
		if herr != nil && err == nil {
			err = fmt.Errorf("host %s: %w", r.Host, herr)
		}
		pending = pending || changes
	}
	return results, pending, err
}

// DiffRemovals are the instances a diff's output says it removes.
func DiffRemovals(diff []byte) []string {
	var ids []string
	for _, line := range strings.Split(string(diff), "\n") {
		if rest, ok := strings.CutPrefix(line, RemovalPrefix); ok {
			id, _, _ := strings.Cut(rest, " ")
			ids = append(ids, id)
		}
	}
	return ids
}

// DiffRestarts are the instances a diff's output says it changes and
// restarts ("~ ID") or restarts ("^ ID").
func DiffRestarts(diff []byte) []string {
	var ids []string
	for _, line := range strings.Split(string(diff), "\n") {
		for _, a := range []Action{Change, Restart} {
			if rest, ok := strings.CutPrefix(line, a.Symbol()+" "); ok && rest != "" && !strings.Contains(rest, " ") {
				ids = append(ids, rest)
			}
		}
	}
	return ids
}

// Removals are the instances a plan removes.
func (p Plan) Removals() []string {
	var ids []string
	for _, s := range p.Steps {
		if s.Action == Remove {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// HostsApply is how Source.Apply applies a file on the hosts it names.
type HostsApply struct {
	// Prune removes the registered instances the file does not name, on
	// every host.
	Prune bool
	// Flags are the other hosts' apply flags besides the file's.
	Flags []string
	// Confirm is called once, after every host accepted the file and
	// before any changes, with the instances the other hosts remove, as
	// HOST:ID; its error stops the apply everywhere.
	Confirm func(removed []string) error
	// BeforeHosts, when set, is called after Here and before the other
	// hosts apply, with the instances they restart (changed settings), as
	// HOST:ID.
	BeforeHosts func(restarted []string)
	// Here applies this host's entries, when it has any or runs the
	// file's fronts, after Confirm and before the other hosts apply
	// theirs; its error stops the apply.
	Here func() error
	// Stderr gets what a host that refused the file printed, each line
	// after the host's name.
	Stderr io.Writer
}

// RefusedError is an apply on several hosts that changed no host, because
// some refused the file when asked to plan it.
type RefusedError struct {
	Refusals []string // HOST: why
	Hosts    int      // the hosts asked
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%d of %d hosts refused the file, so no host was changed: %v", len(e.Refusals), e.Hosts, e.Refusals)
}

// Apply applies the file on every host it names, all or none: first every
// other host checks and plans its entries (diff), and on any refusal no
// host changes (a *RefusedError); then, once o.Confirm agrees, this host
// applies its own (o.Here) and the others theirs at once, remote commands
// being asked nothing (their input is no terminal). The results are the
// other hosts' applies.
func (s *Source) Apply(ctx context.Context, o HostsApply) ([]remote.Result, error) {
	var check []string
	if o.Prune {
		check = []string{"--prune"}
	}
	var refusals, removed, restarted []string
	for _, r := range s.OnHosts(ctx, "diff", check) {
		if _, err := DiffPending(r); err != nil {
			remote.PrefixLines(o.Stderr, r.Host, []byte(r.Stderr))
			refusals = append(refusals, fmt.Sprintf("%s: %v", r.Host, err))
		}
		for _, id := range DiffRemovals(r.Stdout) {
			removed = append(removed, r.Host+":"+id)
		}
		for _, id := range DiffRestarts(r.Stdout) {
			restarted = append(restarted, r.Host+":"+id)
		}
	}
	if len(refusals) > 0 {
		return nil, &RefusedError{Refusals: refusals, Hosts: len(s.Hosts)}
	}
	if err := o.Confirm(removed); err != nil {
		return nil, err
	}
	if s.Local || s.Fronts {
		if err := o.Here(); err != nil {
			return nil, err
		}
	}
	if o.BeforeHosts != nil {
		o.BeforeHosts(restarted)
	}
	return s.OnHosts(ctx, "apply", o.Flags), nil
}
