package supervisor

import (
	"context"
	"sync"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// Wait is what a single start, restart or stop is waiting for. Manager's
// Waiting is told each time the step or the unit's state changes.
type Wait struct {
	// Unit is the instance's unit.
	Unit string
	// Step is what the command waits for.
	Step WaitStep
	// State is the unit's ActiveState/SubState when last read, or "".
	State string
	// Detail says more where there is more to say: the port, the health
	// request and its last outcome.
	Detail string
	// Elapsed is the time since the command began to wait; Timeout bounds
	// the wait, zero when nothing bounds it.
	Elapsed, Timeout time.Duration
}

// WaitStep is a step of a single start, restart or stop.
type WaitStep string

// The steps of a single start, restart or stop, in their order.
const (
	// WaitUnit: systemd runs the unit's start or restart job, or the unit
	// is not active yet.
	WaitUnit WaitStep = "unit"
	// WaitListen: the unit is active; its processor does not listen on
	// the API port yet.
	WaitListen WaitStep = "listening"
	// WaitAnswer: the processor listens; its health request has not
	// answered 200 yet.
	WaitAnswer WaitStep = "answering"
	// WaitReady: the health request answered; the wait is over.
	WaitReady WaitStep = "ready"
	// WaitStop: systemd runs the unit's stop job (SIGTERM, then SIGKILL
	// after the processor's stop_timeout).
	WaitStop WaitStep = "stopping"
	// WaitStopped: the unit stopped and its files are removed.
	WaitStopped WaitStep = "stopped"
)

// waitReport tells m.Waiting about one wait, once per change of step or
// state. Its methods may be called from several goroutines; a nil
// *waitReport reports nothing.
type waitReport struct {
	fn      func(Wait)
	unit    string
	timeout time.Duration
	begin   time.Time
	mu      sync.Mutex
	last    Wait
}

// waitReport starts the report of a wait on unit bounded by timeout; it is
// nil when nobody listens.
func (m *Manager) waitReport(unit string, timeout time.Duration) *waitReport {
	if m.Waiting == nil {
		return nil
	}
	return &waitReport{fn: m.Waiting, unit: unit, timeout: timeout, begin: time.Now()}
}

// report says the wait is at step, with the unit in state.
func (r *waitReport) report(step WaitStep, state, detail string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.Step == step && r.last.State == state {
		return
	}
	r.last = Wait{Unit: r.unit, Step: step, State: state, Detail: detail, Elapsed: time.Since(r.begin), Timeout: r.timeout}
	r.fn(r.last)
}

// readyTimeout is the bound of the wait for a processor's health request:
// timeout, or when zero the processor's ready_timeout.
func readyTimeout(su *instanceSetup, timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return config.Seconds(su.proc.ReadyTimeout)
	}
	return timeout
}

// unitStateWord is a unit's ActiveState/SubState, as systemctl shows them.
func unitStateWord(u UnitState) string {
	if u.SubState == "" {
		return u.ActiveState
	}
	return u.ActiveState + "/" + u.SubState
}

// watchStop reports the unit's state while its stop job runs, every
// interval, until the returned function is called.
func (m *Manager) watchStop(ctx context.Context, rep *waitReport, unit string, interval time.Duration) func() {
	if rep == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// A listing, unlike a read of the unit's properties, does
			// not load a unit systemd has already let go of.
			if list, err := m.Systemd.ListUnits(ctx, unit); err == nil && len(list) == 1 && ctx.Err() == nil {
				rep.report(WaitStop, unitStateWord(list[0]), "")
			}
		}
	}()
	return func() { cancel(); <-done }
}
