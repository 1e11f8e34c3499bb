package units

import (
	"fmt"
	"testing"
)

func TestValidPort(t *testing.T) {
	for _, tc := range []struct {
		port int
		want bool
	}{
		{-1, false}, {0, false}, {1, true}, {8000, true}, {MaxPort, true}, {MaxPort + 1, false},
	} {
		if got := ValidPort(tc.port); got != tc.want {
			t.Errorf("ValidPort(%d) = %v, want %v", tc.port, got, tc.want)
		}
	}
	if want := fmt.Sprintf("must be between 1 and %d", MaxPort); PortRule != want {
		t.Errorf("PortRule = %q, want %q", PortRule, want)
	}
}
