package textview

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kato-manager/kato-manager/supervisor"
)

// Liveness writes a liveness run's table: each instance's outcome.
func Liveness(w io.Writer, rep *supervisor.LivenessReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOUTCOME\tFAILURES\tDETAIL")
	for _, c := range rep.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", c.ID, c.Outcome, c.Failures, c.Detail)
	}
	return tw.Flush()
}
