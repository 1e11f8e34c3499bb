package supervisor

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

func jobPath(id int) dbus.ObjectPath {
	return dbus.ObjectPath("/org/freedesktop/systemd1/job/" + strconv.Itoa(id))
}

// A job's result reaches its caller while other calls are still waiting
// for their answer: here call k is answered only once job k-1's caller has
// its result, which a lock held across every call (go-systemd's) never
// allows.
func TestJobResultsReachTheirCallersWhileOtherCallsWait(t *testing.T) {
	w := newJobWaiter()
	const n = 20
	got := make([]chan string, n+1)
	for k := range got {
		got[k] = make(chan string, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, n)
	for k := 1; k <= n; k++ {
		go func() {
			result, err := w.run(ctx, func() (int, error) {
				if k > 1 {
					select {
					case r := <-got[k-1]:
						got[k-1] <- r
					case <-ctx.Done():
						return 0, errors.New("job " + strconv.Itoa(k-1) + "'s result never reached its caller while call " + strconv.Itoa(k) + " waited")
					}
				}
				// systemd queues the job, answers, and ends the job.
				go func() { time.Sleep(time.Millisecond); w.removed(jobPath(k), "done") }()
				return k, nil
			})
			if err == nil {
				got[k] <- result
			}
			errs <- err
		}()
	}
	for k := 0; k < n; k++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A job that ends before its caller has read the answer naming it is not
// lost; results of jobs nobody waits for are not kept once no call is
// unanswered.
func TestJobEndingBeforeItsAnswerIsKept(t *testing.T) {
	w := newJobWaiter()
	ctx := context.Background()
	result, err := w.run(ctx, func() (int, error) {
		w.removed(jobPath(7), "failed")
		w.removed(jobPath(8), "done") // another client's job
		return 7, nil
	})
	if err != nil || result != "failed" {
		t.Fatalf("run = %q, %v; want the early result \"failed\"", result, err)
	}
	w.removed(jobPath(9), "done")
	if len(w.early) != 0 || len(w.waiting) != 0 {
		t.Errorf("after the last call: early %v, waiting %v; want both empty", w.early, w.waiting)
	}
}

// A caller that gives up (its context ends) stops waiting, and a call that
// fails is not waited for.
func TestJobWaitEndsWithItsContext(t *testing.T) {
	w := newJobWaiter()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.run(ctx, func() (int, error) { return 3, nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("run with an ended context = %v; want context.Canceled", err)
	}
	boom := errors.New("no such unit")
	if _, err := w.run(context.Background(), func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("run of a failing call = %v; want its error", err)
	}
	if len(w.waiting) != 0 {
		t.Errorf("waiting %v; want none", w.waiting)
	}
}
