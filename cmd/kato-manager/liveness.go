package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/textview"
)

// liveness is one run of the liveness check: kato-liveness.timer's, or by
// hand. Failures and restarts go to the journal, with the instance's unit as
// their object, so that `kato-manager logs ID` shows them too; run by hand,
// they are printed as well.
func (a *app) liveness(ctx context.Context, fs *pflag.FlagSet, jsonOut *bool) error {
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		log, inJournal := supervisor.LivenessLog(a.stderr)
		rep, err := m.Liveness(ctx, log)
		if errors.Is(err, supervisor.ErrLivenessBusy) {
			fmt.Fprintln(a.stderr, "liveness: another liveness check is running; this one does nothing")
			return nil
		}
		if err != nil {
			return err
		}
		if *jsonOut {
			return writeJSON(a.stdout, rep)
		}
		if inJournal {
			return nil // the timer's runs say only what they did
		}
		return textview.Liveness(a.stdout, rep)
	})
}
