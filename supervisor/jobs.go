package supervisor

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/godbus/dbus/v5"
)

// jobWaiter hands each job's result, from systemd's JobRemoved signal, to
// the caller that queued it. go-systemd does the same (a channel passed to
// StartUnitContext) under one lock held across each call's round trip,
// which its signal handler needs too: with a batch of 200 starts queued at
// once, no start learned that its job was done before the last call had
// been answered, and the health requests of the first processors waited
// for it (15 s on the 2-core machine of make bench). Here the calls go out
// side by side and a result is handed over as soon as it comes.
type jobWaiter struct {
	mu sync.Mutex
	// waiting are the queued jobs whose caller waits for them.
	waiting map[dbus.ObjectPath]chan string
	// inFlight counts the calls not yet answered; while there is one,
	// results of jobs nobody waits for are kept in early: a job may end
	// before its caller has read the answer that names it.
	inFlight int
	early    map[dbus.ObjectPath]string
}

func newJobWaiter() *jobWaiter {
	return &jobWaiter{waiting: map[dbus.ObjectPath]chan string{}, early: map[dbus.ObjectPath]string{}}
}

// watch hands the JobRemoved signals of conn's signal stream to w until
// the connection closes.
func (w *jobWaiter) watch(conn *dbus.Conn) {
	signals := make(chan *dbus.Signal, 256)
	conn.Signal(signals)
	go func() {
		for sig := range signals {
			if sig.Name != managerInterface+".JobRemoved" {
				continue
			}
			var id uint32
			var job dbus.ObjectPath
			var unit, result string
			if dbus.Store(sig.Body, &id, &job, &unit, &result) == nil {
				w.removed(job, result)
			}
		}
	}()
}

// removed is a job's end with its result.
func (w *jobWaiter) removed(job dbus.ObjectPath, result string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.waiting[job]; ok {
		delete(w.waiting, job)
		ch <- result
		return
	}
	if w.inFlight > 0 {
		w.early[job] = result
	}
}

// run makes call, which queues a job and returns its id, and waits for
// the job's result.
func (w *jobWaiter) run(ctx context.Context, call func() (int, error)) (string, error) {
	w.mu.Lock()
	w.inFlight++
	w.mu.Unlock()
	id, err := call()
	if err == nil && id == 0 {
		err = errors.New("systemd answered with no job")
	}
	w.mu.Lock()
	w.inFlight--
	job := dbus.ObjectPath("/org/freedesktop/systemd1/job/" + strconv.Itoa(id))
	ch := make(chan string, 1)
	if result, ok := w.early[job]; ok && err == nil {
		delete(w.early, job)
		ch <- result
	} else if err == nil {
		w.waiting[job] = ch
	}
	if w.inFlight == 0 {
		clear(w.early)
	}
	w.mu.Unlock()
	if err != nil {
		return "", err
	}
	select {
	case result := <-ch:
		return result, nil
	case <-ctx.Done():
		w.mu.Lock()
		delete(w.waiting, job)
		w.mu.Unlock()
		return "", ctx.Err()
	}
}
