package supervisor

import (
	"errors"
	"maps"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

// TestLivenessEventForTheJournal: a failure counted is a notice, a restart
// a warning, a failed restart an error; an instance's event names its
// unit, ID and counters, a run's own event only the program.
func TestLivenessEventForTheJournal(t *testing.T) {
	failed := LivenessEvent{ID: "a1", Unit: "kato@a1.service", Failures: 2, Threshold: 3, Reason: "timeout", Restarts: 4}
	restarted := failed
	restarted.Restarted = true
	broken := restarted
	broken.Err = errors.New("access denied")
	for _, tc := range []struct {
		e    LivenessEvent
		want journal.Priority
	}{{failed, journal.PriNotice}, {restarted, journal.PriWarning}, {broken, journal.PriErr}} {
		if got := tc.e.Priority(); got != tc.want {
			t.Errorf("Priority of %q = %d, want %d", tc.e.Message(), got, tc.want)
		}
	}
	want := map[string]string{"SYSLOG_IDENTIFIER": "kato-manager", "OBJECT_SYSTEMD_UNIT": "kato@a1.service", "KATO_INSTANCE": "a1",
		"KATO_LIVENESS_FAILURES": "2", "KATO_LIVENESS_RESTARTS": "4"}
	if got := failed.JournalFields(); !maps.Equal(got, want) {
		t.Errorf("JournalFields = %v, want %v", got, want)
	}
	if got := (LivenessEvent{Reason: "no instances"}).JournalFields(); !maps.Equal(got, map[string]string{"SYSLOG_IDENTIFIER": "kato-manager"}) {
		t.Errorf("JournalFields of a run's event = %v", got)
	}
}
