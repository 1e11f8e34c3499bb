package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// LivenessStateFile is the name of the liveness check's state file, next to
// the registry: /var/lib/kato/liveness.json.
const LivenessStateFile = "liveness.json"

// livenessSlack is how much earlier than liveness_interval after the last
// check an instance is checked again: kato-liveness.timer fires every 5 s
// within its accuracy of 1 s, so a run may come a little early.
const livenessSlack = time.Second

// LivenessState is what the liveness check keeps between its runs, by
// instance id.
type LivenessState struct {
	Instances map[string]*LivenessRecord `json:"instances"`
}

// LivenessRecord is one instance's liveness: the failures in a row of its
// current process and the restarts the check made.
type LivenessRecord struct {
	// Failures are the failed health requests in a row since the last
	// success or (re)start.
	Failures int `json:"failures"`
	// LastCheck is when the health request was last made.
	LastCheck time.Time `json:"last_check,omitzero"`
	// Since is when the unit became active, as it was at LastCheck: a unit
	// active since another moment was restarted, and its count starts over.
	Since time.Time `json:"since,omitzero"`
	// LastError is what the last failed request got.
	LastError string `json:"last_error,omitempty"`
	// Restarts counts the restarts the liveness check made; it survives
	// every restart, and goes with the instance's removal.
	Restarts uint64 `json:"restarts"`
	// LastRestart and LastReason say when and why it last restarted it.
	LastRestart time.Time `json:"last_restart,omitzero"`
	LastReason  string    `json:"last_reason,omitempty"`
}

// LivenessEvent is one step of a run: a failure counted, a restart, or
// (with no Unit) a word about the run itself.
type LivenessEvent struct {
	ID, Unit string
	// Restarted is set for a restart; otherwise a failure was counted.
	Restarted bool
	Failures  int // failures in a row, including this one
	Threshold int // liveness_failures
	Reason    string
	// Restarts is the instance's liveness restarts after this one.
	Restarts uint64
	// Err is set when the restart was asked for and failed.
	Err error
}

// Message is the event as the journal and the command say it.
func (e LivenessEvent) Message() string {
	switch {
	case e.Unit == "":
		return "liveness: " + e.Reason
	case e.Restarted && e.Err != nil:
		return fmt.Sprintf("liveness: %s failed %d health checks in a row (last: %s); restarting it failed: %v", e.Unit, e.Failures, e.Reason, e.Err)
	case e.Restarted:
		return fmt.Sprintf("liveness: restarted %s: %d health checks in a row failed (last: %s); liveness restarts: %d", e.Unit, e.Failures, e.Reason, e.Restarts)
	}
	return fmt.Sprintf("liveness: %s failed its health check (%s), %d of %d in a row", e.Unit, e.Reason, e.Failures, e.Threshold)
}

// LivenessCheck is what a run did with one instance.
type LivenessCheck struct {
	ID string `json:"id"`
	// Outcome is off (the processor's check is off), stopped, starting
	// (within ready_timeout of its start), waiting (not due yet), ok,
	// failed, or restarted.
	Outcome  string `json:"outcome"`
	Failures int    `json:"failures"`
	Detail   string `json:"detail,omitempty"`
}

// LivenessReport is one run of the liveness check.
type LivenessReport struct {
	Checks []LivenessCheck `json:"checks"`
}

// ErrLivenessBusy is returned when another liveness run holds the state
// file's lock.
var ErrLivenessBusy = errors.New("another liveness check is running")

// LivenessStatePath is the state file of the scope: next to the registry.
func (m *Manager) LivenessStatePath() string {
	return filepath.Join(filepath.Dir(m.Registry.Path), LivenessStateFile)
}

// ReadLivenessState reads the state file; a missing file is an empty state.
func (m *Manager) ReadLivenessState() (*LivenessState, error) {
	st := &LivenessState{Instances: map[string]*LivenessRecord{}}
	data, err := os.ReadFile(m.LivenessStatePath())
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, st); err != nil {
		return &LivenessState{Instances: map[string]*LivenessRecord{}}, fmt.Errorf("%s: %w", m.LivenessStatePath(), err)
	}
	if st.Instances == nil {
		st.Instances = map[string]*LivenessRecord{}
	}
	return st, nil
}

// writeLivenessState replaces the state file atomically, readable by its
// owner (root) alone.
func (m *Manager) writeLivenessState(st *LivenessState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	_, err = writeFileAtomic(m.LivenessStatePath(), append(data, '\n'), 0o600)
	return err
}

// lockLiveness takes the liveness run's own lock without waiting: two runs
// at once would count one failure twice.
func (m *Manager) lockLiveness() (func(), error) {
	path := m.LivenessStatePath() + ".lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLivenessBusy
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// livenessTarget is one instance a run looks at.
type livenessTarget struct {
	inst  config.Instance
	su    *instanceSetup
	unit  UnitState
	rec   *LivenessRecord
	check *LivenessCheck
	// failed is what the health request got when it failed.
	failed string
}

// Liveness makes the health request of every running instance whose
// processor has the check on and is due, counts the failures in a row in
// the state file, and restarts an instance whose count reaches
// liveness_failures, as Kubernetes' livenessProbe does. An instance that is
// stopped, or started less than ready_timeout ago, is left alone and its
// count starts over; so does one restarted since its last check. log, when
// set, is told every failure counted and every restart, as they happen.
func (m *Manager) Liveness(ctx context.Context, log func(LivenessEvent)) (*LivenessReport, error) {
	if log == nil {
		log = func(LivenessEvent) {}
	}
	release, err := m.lockLiveness()
	if err != nil {
		return nil, err
	}
	defer release()
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	st, stateErr := m.ReadLivenessState()
	if stateErr != nil && !errors.Is(stateErr, fs.ErrNotExist) {
		// A damaged file must not stop the check for good: it starts over.
		log(LivenessEvent{Reason: "state file unreadable, counting from zero: " + stateErr.Error()})
	}
	now := m.now()
	ids := make([]string, 0, len(reg.Instances))
	for id := range reg.Instances {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// Room for every check up front: the targets point into the slice.
	rep := &LivenessReport{Checks: make([]LivenessCheck, 0, len(ids))}
	for id := range st.Instances {
		if _, ok := reg.Instances[id]; !ok {
			delete(st.Instances, id)
		}
	}
	var due []*livenessTarget
	for _, id := range ids {
		inst := reg.Instances[id]
		rec := st.Instances[id]
		if rec == nil {
			rec = &LivenessRecord{}
		}
		rep.Checks = append(rep.Checks, LivenessCheck{ID: id})
		check := &rep.Checks[len(rep.Checks)-1]
		su, err := m.setup(*inst)
		if err != nil {
			check.Outcome, check.Detail = "off", err.Error()
			continue
		}
		if !su.proc.LivenessOn() {
			rec.Failures, rec.LastError, rec.Since = 0, "", time.Time{}
			check.Outcome = "off"
			st.keep(id, rec)
			continue
		}
		u, err := m.Systemd.Unit(ctx, inst.Unit)
		if err != nil {
			return nil, err
		}
		if !u.ActiveSince.Equal(rec.Since) {
			// Started or restarted since the last check (by anyone):
			// the count is the last process's.
			rec.Failures, rec.LastError, rec.Since = 0, "", u.ActiveSince
		}
		grace := config.Seconds(su.proc.ReadyTimeout)
		switch {
		case u.ActiveState != "active":
			rec.Failures, rec.LastError, rec.Since = 0, "", time.Time{}
			check.Outcome = "stopped"
		case u.ActiveSince.IsZero() || now.Sub(u.ActiveSince) < grace:
			check.Outcome = "starting"
			check.Detail = fmt.Sprintf("started %s ago, within ready_timeout (%s)", now.Sub(u.ActiveSince).Truncate(time.Second), grace)
		case !rec.LastCheck.IsZero() && now.Sub(rec.LastCheck) < config.Seconds(su.proc.LivenessInterval)-livenessSlack:
			check.Outcome = "waiting"
		default:
			due = append(due, &livenessTarget{inst: *inst, su: su, unit: u, rec: rec, check: check})
		}
		check.Failures = rec.Failures
		st.keep(id, rec)
	}
	// The health requests go out together: each may take its timeout.
	var wg sync.WaitGroup
	for _, t := range due {
		wg.Go(func() {
			t.failed = m.livenessProbe(ctx, t.su, t.inst.ID)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var restart []*livenessTarget
	for _, t := range due {
		t.rec.LastCheck = now
		if t.failed == "" {
			t.rec.Failures, t.rec.LastError = 0, ""
			t.check.Outcome, t.check.Failures = "ok", 0
			continue
		}
		t.rec.Failures++
		t.rec.LastError = t.failed
		t.check.Outcome, t.check.Failures, t.check.Detail = "failed", t.rec.Failures, t.failed
		if t.rec.Failures >= t.su.proc.LivenessFailures {
			restart = append(restart, t)
			continue
		}
		log(LivenessEvent{ID: t.inst.ID, Unit: t.inst.Unit, Failures: t.rec.Failures, Threshold: t.su.proc.LivenessFailures, Reason: t.failed, Restarts: t.rec.Restarts})
	}
	// The counts are on disk before any restart: a run that dies while a
	// processor stops still leaves them.
	if err := m.writeLivenessState(st); err != nil {
		return nil, err
	}
	if len(restart) == 0 {
		return rep, nil
	}
	// A restart is an operation like `restart`: it waits for the others,
	// and looks again once it holds the lock, so that an instance stopped
	// or restarted meanwhile is left alone.
	unlock, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return rep, err
	}
	defer unlock()
	for _, t := range restart {
		u, err := m.Systemd.Unit(ctx, t.inst.Unit)
		if err != nil {
			return rep, err
		}
		if u.ActiveState != "active" || !u.ActiveSince.Equal(t.unit.ActiveSince) {
			t.rec.Failures, t.rec.LastError, t.rec.Since = 0, "", time.Time{}
			t.check.Outcome, t.check.Failures, t.check.Detail = "stopped", 0, "stopped or restarted meanwhile: left alone"
			continue
		}
		ev := LivenessEvent{ID: t.inst.ID, Unit: t.inst.Unit, Restarted: true, Failures: t.rec.Failures, Threshold: t.su.proc.LivenessFailures, Reason: t.failed}
		ev.Err = m.Systemd.RestartUnit(ctx, t.inst.Unit)
		if ev.Err == nil {
			t.rec.Restarts++
			t.rec.LastRestart, t.rec.LastReason = m.now().UTC().Truncate(time.Second), fmt.Sprintf("%d health checks in a row failed (last: %s)", t.rec.Failures, t.failed)
			t.rec.Failures, t.rec.LastError, t.rec.Since = 0, "", time.Time{}
			t.check.Outcome, t.check.Failures = "restarted", 0
		}
		ev.Restarts = t.rec.Restarts
		log(ev)
		if err := m.writeLivenessState(st); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// keep stores rec under id, leaving out the record of an instance that has
// nothing to remember.
func (st *LivenessState) keep(id string, rec *LivenessRecord) {
	if *rec == (LivenessRecord{}) {
		delete(st.Instances, id)
		return
	}
	st.Instances[id] = rec
}

// livenessProbe makes an instance's health request within
// liveness_timeout and returns "" when it answered 200 (and, for
// generation C, said it was not unhealthy), or what went wrong.
func (m *Manager) livenessProbe(ctx context.Context, su *instanceSetup, id string) string {
	timeout := config.Seconds(su.proc.LivenessTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := su.proc.ReadyPath(id)
	request := "GET " + path
	var status int
	var unhealthy bool
	var err error
	if m.Probe != nil {
		status, err = m.Probe(ctx, su.readyPort, path)
	} else {
		status, unhealthy, err = httpHealth(ctx, su.readyPort, path)
	}
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("%s on port %d did not answer within %s", request, su.readyPort, timeout)
	case err != nil:
		return fmt.Sprintf("%s on port %d: %v", request, su.readyPort, err)
	case unhealthy:
		return fmt.Sprintf("%s on port %d said \"unhealthy\"", request, su.readyPort)
	case status != 200:
		return fmt.Sprintf("%s on port %d answered HTTP %d", request, su.readyPort, status)
	}
	return ""
}

// LivenessRestarts returns the liveness restarts of every instance by id,
// for status and /metrics: empty when the check never restarted one.
func (m *Manager) LivenessRestarts() (map[string]uint64, error) {
	st, err := m.ReadLivenessState()
	out := map[string]uint64{}
	for id, rec := range st.Instances {
		out[id] = rec.Restarts
	}
	return out, err
}
