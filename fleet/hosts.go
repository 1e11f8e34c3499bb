package fleet

import (
	"context"
	"errors"
	"strings"

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
}

// NewSource is the Source of f, read from data under name, on the host
// whose entries are taken: entriesOf, or "" for this host as a command
// line names it. Only this host's kato-manager hands the file on: one
// handed a file with --entries-of takes its entries and hands it to none.
func NewSource(f *File, name string, data []byte, entriesOf string) *Source {
	src := &Source{Name: name, Data: data, Local: len(f.OfHost(entriesOf).Entries) > 0}
	if entriesOf == "" {
		src.Hosts = f.Hosts()
		src.Local = src.Local || len(src.Hosts) == 0
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
