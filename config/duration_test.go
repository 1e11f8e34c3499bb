package config

import (
	"errors"
	"testing"
	"time"
)

func TestPositiveDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{time.Nanosecond, ""},
		{time.Minute, ""},
		{0, "invalid timeout 0s: must be greater than 0"},
		{-2 * time.Second, "invalid timeout -2s: must be greater than 0"},
	} {
		err := PositiveDuration("timeout", tc.d)
		var fe *FieldError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want nil", tc.d, err)
		case tc.want != "" && (!errors.As(err, &fe) || err.Error() != tc.want):
			t.Errorf("%v: %v, want %s", tc.d, err, tc.want)
		}
	}
}
