package kgworker

import (
	"slices"
	"testing"
	"time"
)

func TestHealthBackOff(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		poll time.Duration
		want []time.Duration
	}{
		{name: "doubles up to the poll interval", poll: 2 * time.Second, want: []time.Duration{250 * ms, 500 * ms, time.Second, 2 * time.Second, 2 * time.Second}},
		{name: "a poll interval between steps caps it", poll: 700 * ms, want: []time.Duration{250 * ms, 500 * ms, 700 * ms, 700 * ms}},
		{name: "a poll interval below the first wait keeps it", poll: 100 * ms, want: []time.Duration{250 * ms, 250 * ms, 250 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := healthBackOff(tc.poll)
			var got []time.Duration
			for range tc.want {
				got = append(got, b.NextBackOff())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("waits = %v, want %v", got, tc.want)
			}
			b.Reset()
			if d := b.NextBackOff(); d != firstHealthRetry {
				t.Errorf("after Reset the wait is %s, want %s", d, firstHealthRetry)
			}
		})
	}
}
