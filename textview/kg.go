package textview

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/internal/termtext"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgpool"
	"github.com/kato-manager/kato-manager/queue"
)

// Health writes workers health's report: the pool, the KG service and a
// table of the workers.
func Health(w io.Writer, r kgpool.HealthReport) {
	fmt.Fprintf(w, "pool: %s\n", r.Status)
	fmt.Fprintf(w, "workers: %d total, %d healthy, %d unhealthy, %d restarts by systemd\n", r.TotalWorkers, r.HealthyWorkers, r.UnhealthyWorkers, r.WorkersRestarted)
	if s := r.KGServiceStatus; s != nil {
		switch {
		case !s.Enabled:
			fmt.Fprintln(w, "kg service: disabled (kg.service_enabled = false)")
		case s.IsHealthy:
			fmt.Fprintf(w, "kg service: healthy at %s\n", s.URL)
		default:
			fmt.Fprintf(w, "kg service: DOWN at %s: %s; the workers wait for it\n", s.URL, s.Problem)
		}
	}
	if len(r.WorkerDetails) == 0 {
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "HOST\tWORKER\tUNIT\tSTATE\tPID\tRESTARTS\tPROCESSED\tPROBLEM")
	for _, wd := range r.WorkerDetails {
		problem := wd.Problem
		if problem == "" {
			problem = "-"
		}
		host := OrDash(wd.Host)
		if wd.Local {
			host += " (this host)"
		}
		processed := "-"
		if wd.Stats != nil {
			processed = strconv.Itoa(wd.Stats.TotalProcessed)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s/%s\t%d\t%d\t%s\t%s\n", host, wd.Index, wd.Unit, wd.ActiveState, wd.SubState, wd.PID, wd.Restarts, processed, problem)
	}
	tw.Flush()
}

// PoolStats writes workers stats's report: the workers' counts, the KG
// service, the queue and a line per worker.
func PoolStats(out io.Writer, s *kgpool.PoolStats) {
	fmt.Fprintf(out, "workers: %d (%d restarts by systemd), running: %v\n", s.TotalWorkers, s.WorkersRestarted, s.ManagerRunning)
	fmt.Fprintf(out, "processed: %d (success %d, failed %d, skipped %d)\n", s.TotalProcessed, s.TotalSuccess, s.TotalFailed, s.TotalSkipped)
	svc := s.KGServiceStatus
	fmt.Fprintf(out, "kg service: enabled %v, url %s, healthy %v, consecutive failures %d\n", s.KGServiceEnabled, OrDash(svc.URL), svc.IsHealthy, svc.ConsecutiveFailures)
	c := s.QueueSize
	fmt.Fprintf(out, "queue: total %d: pending %d, processing %d, completed %d, failed %d, skipped %d\n", c.Total, c.Pending, c.Processing, c.Completed, c.Failed, c.Skipped)
	for _, w := range s.WorkerDetails {
		where := "this host"
		if !w.Local {
			where = "host " + w.Host
		}
		fmt.Fprintf(out, "  worker %d (%s) on %s: running %v, pid %d, processed %d (success %d, failed %d, skipped %d)", w.Index, w.Unit, where, w.Running, w.PID, w.Stats.TotalProcessed, w.Stats.TotalSuccess, w.Stats.TotalFailed, w.Stats.TotalSkipped)
		if w.Problem != "" {
			fmt.Fprintf(out, ": %s", w.Problem)
		}
		fmt.Fprintln(out)
	}
}

// QueueList writes items as queue list's table. The error text is the
// KG service's own words, and a worker names itself: both are escaped for
// the terminal, tabs and newlines included, so that each item stays one row.
func QueueList(w io.Writer, items []queue.Item) error {
	tw := table(w)
	fmt.Fprintln(tw, "ID\tCONTENT\tSTATUS\tPRIORITY\tRETRIES\tQUEUED\tWORKER\tERROR")
	for _, it := range items {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", it.ID, it.ContentID, it.Status, it.Priority, it.RetryCount,
			it.QueuedAt.Local().Format(time.DateTime), OrDash(termtext.Line(it.LeaseOwner)), OrDash(termtext.Line(it.ErrorMessage)))
	}
	return tw.Flush()
}

// Copied writes what a copy of the queue to PostgreSQL did, table by
// table, and how to use it with the kato.toml at configPath.
func Copied(out io.Writer, report *kgdb.CopyReport, configPath string) error {
	tw := table(out)
	fmt.Fprintln(tw, "TABLE\tROWS")
	var rows int64
	for _, t := range report.Tables {
		fmt.Fprintf(tw, "%s\t%d\n", t.Table, t.Rows)
		rows += t.Rows
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "copied %d rows of %d tables from %s to %s, the counts of both sides equal; %s is unchanged\n",
		rows, len(report.Tables), report.Source, report.Target, report.Source)
	if len(report.Skipped) > 0 {
		fmt.Fprintf(out, "not copied, not KG tables: %s\n", strings.Join(report.Skipped, ", "))
	}
	fmt.Fprintf(out, "to use it, set kg.db_url in %s and restart the pool (kato-manager workers restart)\n", configPath)
	return nil
}
