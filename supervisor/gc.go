package supervisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/kato-manager/kato-manager/config"
)

// GC repairs drift: it removes registry entries whose unit files are gone
// (as the old registry forgot containers that were removed) and tears down
// instance units that have no registry entry. It then brings the groups'
// fronts in step with their members.
func (m *Manager) GC(ctx context.Context) (Drift, error) {
	var done Drift
	// Under the operation lock, so the picture below is taken after any
	// start or stop in flight has finished, never before.
	reg, release, err := m.lockedRegistry(ctx)
	if err != nil {
		return done, err
	}
	defer release()
	orphans, err := m.orphanIDs(ctx, reg)
	if err != nil {
		return done, err
	}
	var errs []error
	for _, id := range orphans {
		if err := m.teardown(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("remove orphan %s: %w", id, err))
			continue
		}
		done.OrphanUnits = append(done.OrphanUnits, id)
	}
	err = m.Registry.Update(func(r *config.Registry) error {
		for _, inst := range r.Sorted() {
			if m.hasUnitFiles(inst.ID) {
				continue
			}
			// The unit may still run from what systemd loaded before its
			// files went; take it down so nothing runs unregistered.
			if err := m.teardown(ctx, inst.ID); err != nil {
				return err
			}
			delete(r.Instances, inst.ID)
			done.MissingUnits = append(done.MissingUnits, inst.ID)
		}
		return nil
	})
	// The fronts follow what is left: a member removed above leaves its
	// front, a front with no member left stops, one stopped by hand
	// starts again.
	return done, errors.Join(append(errs, err, m.syncFronts(ctx, nil))...)
}
