package supervisor

import (
	"errors"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/config"
)

// TestRollOptionsCheck: the rules of a roll's --surge and
// --max-unavailable, each refusal a *config.FieldError naming the flag.
func TestRollOptionsCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     RollOptions
		given bool
		want  string // "" for accepted
	}{
		{"defaults", RollOptions{}, false, ""},
		{"max-unavailable 2", RollOptions{MaxUnavailable: 2}, true, ""},
		{"surge with none unavailable", RollOptions{Surge: 1}, true, ""},
		{"most surge", RollOptions{Surge: MaxReplicas}, false, ""},
		{"surge negative", RollOptions{Surge: -1}, false, "invalid --surge -1: must be between 0 and 256"},
		{"surge too many", RollOptions{Surge: MaxReplicas + 1}, false, "invalid --surge 257: must be between 0 and 256"},
		{"negative with surge", RollOptions{Surge: 1, MaxUnavailable: -1}, true, "invalid --max-unavailable -1: must be at least 0"},
		{"zero given without surge", RollOptions{}, true, "invalid --max-unavailable 0: must be at least 1 (it is lowered to leave one member serving), or 0 with --surge 1 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Check(tc.given)
			var fe *config.FieldError
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (!errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
