package supervisor

import (
	"context"
	"io"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/remote"
)

// HostsApply is an apply of a fleet file that names other hosts, run from
// the host that hands the file on (fleet.Source.Apply), with this host's
// fronts kept in step with their members on the other hosts: the members
// the others remove leave the fronts first, those they restart are
// drained for it and put back after (Refresh), and the members they run
// afterwards are read back.
type HostsApply struct {
	Source *fleet.Source
	// Want are this host's entries of the file, resolved.
	Want  []fleet.Desired
	Prune bool
	// Flags are the other hosts' apply flags besides the file's.
	Flags []string
	// Stderr gets what a host that refused the file printed.
	Stderr   io.Writer
	Registry *config.RegistryFile
	Config   *config.Config
	// Manager connects to systemd for this host's fronts; it is called
	// only when they have members on the hosts the apply changes.
	Manager func() (*Manager, func(), error)
	// Confirm, when set, is asked once, after every host accepted the file
	// and before any changes, about every instance removed: this host's
	// (with Prune) by ID, the others' as HOST:ID.
	Confirm func(removed []string) error
	// Here applies this host's entries (see fleet.HostsApply.Here).
	Here func() error
	// FrontsError is told what went wrong in this host's fronts before the
	// other hosts apply; the apply goes on.
	FrontsError func(error)

	// drained are the members drained before their hosts restart them.
	drained []string
}

// Apply applies the file on every host it names, all or none, and returns
// the other hosts' applies; Refresh then reads back their members.
func (o *HostsApply) Apply(ctx context.Context) ([]remote.Result, error) {
	src := o.Source
	return src.Apply(ctx, fleet.HostsApply{
		Prune: o.Prune, Flags: o.Flags, Stderr: o.Stderr,
		// One question for every host, before any host is changed.
		Confirm: func(removed []string) error {
			if o.Confirm != nil {
				if o.Prune && src.Local {
					plan, _, err := fleet.PlanRegistry(o.Registry, src.Name, o.Want, o.Prune)
					if err != nil {
						return err
					}
					removed = append(plan.Removals(), removed...)
				}
				if err := o.Confirm(removed); err != nil {
					return err
				}
			}
			// Members the other hosts remove leave this host's fronts
			// first, their requests finished.
			return o.withMembers(removed, func(m *Manager, ids []string) error { return m.ForgetRemoteMembers(ctx, ids) })
		},
		// Members the other hosts restart are drained here first, and put
		// back once they applied.
		BeforeHosts: func(restarted []string) {
			err := o.withMembers(restarted, func(m *Manager, ids []string) (err error) {
				o.drained, err = m.DrainRemoteMembers(ctx, ids)
				return err
			})
			if err != nil && o.FrontsError != nil {
				o.FrontsError(err)
			}
		},
		Here: o.Here,
	})
}

// withMembers calls do with the remote members of this host's fronts among
// refs (HOST:ID, from the other hosts' diffs), when there are any.
func (o *HostsApply) withMembers(refs []string, do func(m *Manager, ids []string) error) error {
	reg, err := o.Registry.Load()
	if err != nil {
		return err
	}
	ids := reg.RemoteMembersAt(refs)
	if len(ids) == 0 {
		return nil
	}
	m, done, err := o.Manager()
	if err != nil {
		return err
	}
	defer done()
	return do(m, ids)
}

// Refresh has this host's fronts follow the members the hosts that
// applied the file now run, and puts back the members drained for their
// restart (Manager.RefreshRemoteMembers).
func (o *HostsApply) Refresh(ctx context.Context, applied []remote.Result) error {
	reg, err := o.Registry.Load()
	if err != nil {
		return err
	}
	if !reg.Fronted(o.Config) {
		return nil
	}
	m, done, err := o.Manager()
	if err != nil {
		return err
	}
	defer done()
	return m.RefreshRemoteMembers(ctx, applied, o.drained)
}
