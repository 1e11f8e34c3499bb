package textview

import (
	"fmt"
	"io"

	"github.com/kato-manager/kato-manager/fleet"
	"github.com/kato-manager/kato-manager/supervisor"
)

// Plan writes a fleet file's plan: "+ id" and its fields for an instance to
// create, "~ id" and "field: old -> new" for one to change, "- id" for one
// to remove, and a summary line.
func Plan(w io.Writer, plan fleet.Plan) {
	for _, s := range plan.Steps {
		switch s.Action {
		case fleet.Create:
			fmt.Fprintf(w, "+ %s\n", s.ID)
			for _, c := range s.Changes {
				fmt.Fprintf(w, "    %s: %s\n", c.Field, c.New)
			}
		case fleet.Change, fleet.Restart:
			fmt.Fprintf(w, "%s %s\n", s.Action.Symbol(), s.ID)
			for _, c := range s.Changes {
				fmt.Fprintf(w, "    %s: %s -> %s\n", c.Field, orNone(c.Old), orNone(c.New))
			}
		case fleet.Remove:
			fmt.Fprintf(w, "%s%s (port %d)\n", fleet.RemovalPrefix, s.ID, s.Have.APIPort)
		}
	}
	restart := ""
	if n := plan.Count(fleet.Restart); n > 0 {
		restart = fmt.Sprintf(", %d to restart (not running what the registry says)", n)
	}
	fmt.Fprintf(w, "plan: %d to create, %d to change (restart)%s, %d to remove, %d unchanged\n",
		plan.Count(fleet.Create), plan.Count(fleet.Change), restart, plan.Count(fleet.Remove), plan.Count(fleet.Keep))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Applied writes what an apply of file that had something to do did: a
// line per instance changed, each failure with its journal, and a summary.
func Applied(w io.Writer, file string, res *supervisor.ApplyResult) {
	plan := res.Plan
	done := map[string]bool{}
	for _, id := range res.Done {
		done[id] = true
	}
	verbs := map[fleet.Action]string{fleet.Create: "created", fleet.Change: "changed and restarted", fleet.Remove: "removed",
		fleet.Restart: "restarted: it now runs its registered settings"}
	for _, s := range plan.Steps {
		if s.Action != fleet.Keep && done[s.ID] {
			fmt.Fprintf(w, "%s %s %s\n", s.Action.Symbol(), s.ID, verbs[s.Action])
		}
	}
	for _, fl := range res.Failed {
		what := map[fleet.Action]string{fleet.Create: "removed again", fleet.Change: "put back to its old settings", fleet.Remove: "left registered",
			fleet.Restart: "stopped; its entry keeps the file's settings"}[fl.Action]
		fmt.Fprintf(w, "! %s failed: %v; %s\n", fl.ID, fl.Err, what)
		if fl.RollbackErr != nil {
			fmt.Fprintf(w, "  rollback failed too: %v\n", fl.RollbackErr)
		}
		for _, l := range fl.Journal {
			fmt.Fprintf(w, "  | %s\n", l)
		}
	}
	count := func(act fleet.Action) int {
		n := 0
		for _, s := range plan.Steps {
			if s.Action == act && done[s.ID] {
				n++
			}
		}
		return n
	}
	restarted := ""
	if n := count(fleet.Restart); n > 0 {
		restarted = fmt.Sprintf(", %d restarted", n)
	}
	fmt.Fprintf(w, "applied %s: %d created, %d changed%s, %d removed, %d unchanged, %d failed\n", file,
		count(fleet.Create), count(fleet.Change), restarted, count(fleet.Remove), plan.Count(fleet.Keep), len(res.Failed))
}
