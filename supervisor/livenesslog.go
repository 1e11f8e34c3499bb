package supervisor

import (
	"fmt"
	"io"

	"github.com/coreos/go-systemd/v22/journal"
)

// Priority is e's journal priority: an error for a restart that failed, a
// warning for a restart, a notice for a failure counted.
func (e LivenessEvent) Priority() journal.Priority {
	switch {
	case e.Err != nil:
		return journal.PriErr
	case e.Restarted:
		return journal.PriWarning
	}
	return journal.PriNotice
}

// JournalFields are the fields the journal gets beside e's message: the
// instance's unit, ID and counters, for `journalctl OBJECT_SYSTEMD_UNIT=…`.
func (e LivenessEvent) JournalFields() map[string]string {
	vars := map[string]string{"SYSLOG_IDENTIFIER": "kato-manager"}
	if e.Unit != "" {
		vars["OBJECT_SYSTEMD_UNIT"] = e.Unit
		vars["KATO_INSTANCE"] = e.ID
		vars["KATO_LIVENESS_FAILURES"] = fmt.Sprint(e.Failures)
		vars["KATO_LIVENESS_RESTARTS"] = fmt.Sprint(e.Restarts)
	}
	return vars
}

// LivenessLog is how `kato-manager liveness` logs its events: to the
// journal with their fields when there is one, and to w as well when an
// event did not reach the journal or w is not the journal's stream.
// inJournal says that w is the journal's stream (the timer's runs).
func LivenessLog(w io.Writer) (log func(LivenessEvent), inJournal bool) {
	toJournal := journal.Enabled()
	inJournal, _ = journal.StderrIsJournalStream()
	return func(e LivenessEvent) {
		msg := e.Message()
		sent := toJournal && journal.Send(msg, e.Priority(), e.JournalFields()) == nil
		if !sent || !inJournal {
			fmt.Fprintln(w, msg)
		}
	}, inJournal
}
