package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"text/tabwriter"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/supervisor"
)

// liveness is one run of the liveness check: kato-liveness.timer's, or by
// hand. Failures and restarts go to the journal, with the instance's unit as
// their object, so that `kato-manager logs ID` shows them too; run by hand,
// they are printed as well.
func (a *app) liveness(ctx context.Context, fs *pflag.FlagSet, jsonOut *bool) error {
	if err := noArgs(fs, "liveness takes no arguments"); err != nil {
		return err
	}
	m, done, err := a.manager(ctx)
	if err != nil {
		return err
	}
	defer done()
	toJournal := journal.Enabled()
	inJournal, _ := journal.StderrIsJournalStream()
	rep, err := m.Liveness(ctx, func(e supervisor.LivenessEvent) {
		msg := e.Message()
		priority := journal.PriNotice
		switch {
		case e.Err != nil:
			priority = journal.PriErr
		case e.Restarted:
			priority = journal.PriWarning
		}
		sent := false
		if toJournal {
			vars := map[string]string{"SYSLOG_IDENTIFIER": "kato-manager"}
			if e.Unit != "" {
				vars["OBJECT_SYSTEMD_UNIT"] = e.Unit
				vars["KATO_INSTANCE"] = e.ID
				vars["KATO_LIVENESS_FAILURES"] = fmt.Sprint(e.Failures)
				vars["KATO_LIVENESS_RESTARTS"] = fmt.Sprint(e.Restarts)
			}
			sent = journal.Send(msg, priority, vars) == nil
		}
		// Run by hand, it is printed too; under the timer, standard error
		// is the journal, which has it already.
		if !sent || !inJournal {
			fmt.Fprintln(a.stderr, msg)
		}
	})
	if errors.Is(err, supervisor.ErrLivenessBusy) {
		fmt.Fprintln(a.stderr, "liveness: another liveness check is running; this one does nothing")
		return nil
	}
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if inJournal {
		return nil // the timer's runs say only what they did
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOUTCOME\tFAILURES\tDETAIL")
	for _, c := range rep.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", c.ID, c.Outcome, c.Failures, c.Detail)
	}
	return tw.Flush()
}
