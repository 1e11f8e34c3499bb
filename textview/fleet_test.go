package textview

import (
	"slices"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
)

// TestPlanPrintedReadsBackItsRemovals: the host that hands a file on asks
// about the removals of every host at once from the diffs they print, so
// what Plan writes, fleet.DiffRemovals reads back.
func TestPlanPrintedReadsBackItsRemovals(t *testing.T) {
	plan := fleet.Plan{Steps: []fleet.Step{
		{Action: fleet.Create, ID: "new", Changes: []fleet.FieldChange{{Field: "port", New: "8004"}}},
		{Action: fleet.Change, ID: "changed", Changes: []fleet.FieldChange{{Field: "name", Old: "- a", New: "- b"}}},
		{Action: fleet.Remove, ID: "extra", Have: &config.Instance{ID: "extra", APIPort: 8003}},
		{Action: fleet.Remove, ID: "other", Have: &config.Instance{ID: "other", APIPort: 8005}},
	}}
	var out strings.Builder
	Plan(&out, plan)
	if got := fleet.DiffRemovals([]byte(out.String())); !slices.Equal(got, plan.Removals()) {
		t.Errorf("removals read back = %q, want %q from:\n%s", got, plan.Removals(), out.String())
	}
}
