package kgdb

import (
	"context"
	"errors"
	"testing"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

func TestRetryBusy(t *testing.T) {
	busy := sqlite3.Error{Code: sqlite3.ErrBusy}
	other := errors.New("disk on fire")
	for _, tc := range []struct {
		name      string
		errs      []error // fn's answers, in turn; nil after the last
		cancelled bool
		wantCalls int
		want      []error // what the error must be (errors.Is); none for nil
	}{
		{name: "busy then done", errs: []error{busy, busy, nil}, wantCalls: 3},
		{name: "locked then done", errs: []error{sqlite3.Error{Code: sqlite3.ErrLocked}, nil}, wantCalls: 2},
		{name: "other error at once", errs: []error{other, nil}, wantCalls: 1, want: []error{other}},
		{name: "busy then other", errs: []error{busy, other}, wantCalls: 2, want: []error{other}},
		{name: "context ends while busy", errs: []error{busy, busy, busy}, cancelled: true, wantCalls: 1, want: []error{context.Canceled, sqlite3.ErrBusy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0
			start := time.Now()
			err := retryBusy(ctx, func() error {
				calls++
				if tc.cancelled {
					cancel()
				}
				if calls <= len(tc.errs) {
					return tc.errs[calls-1]
				}
				return nil
			})
			if calls != tc.wantCalls {
				t.Errorf("fn called %d times, want %d", calls, tc.wantCalls)
			}
			if len(tc.want) == 0 && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
			for _, w := range tc.want {
				var se sqlite3.Error
				if errors.Is(err, w) || errors.As(err, &se) && w == sqlite3.ErrBusy && se.Code == sqlite3.ErrBusy {
					continue
				}
				t.Errorf("err = %v, want it to be %v", err, w)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}
