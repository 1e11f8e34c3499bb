package kgpool

import (
	"fmt"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/units"
)

// ReportStaleAfter is how old the latest report of a worker on another host
// may be for the worker to count as running. A worker reports at least
// every 15 seconds (half its watchdog interval); a host that vanished stops
// reporting, and its items come back when their leases expire.
const ReportStaleAfter = time.Minute

// HostReports splits the workers' reports into this host's, by worker
// number, and the other hosts', in their order. A report without a host was
// written before reports carried one, when the queue was this host's file.
func HostReports(reports []kgdb.Report, host string) (local map[int]kgdb.Report, remote []kgdb.Report) {
	local = make(map[int]kgdb.Report, len(reports))
	for _, r := range reports {
		if r.Host == "" || r.Host == host {
			local[r.WorkerID] = r
			continue
		}
		remote = append(remote, r)
	}
	return local, remote
}

// RemoteWorker is a worker on another host as this one sees it: through
// its latest report in the shared queue database only, since its unit is
// that host's systemd's.
type RemoteWorker struct {
	kgdb.Report
	// Running is whether the report is fresh (ReportStaleAfter).
	Running bool
	// Problem says why a worker does not count as running.
	Problem string
}

// RemoteWorkers judges the other hosts' reports at now.
func RemoteWorkers(remote []kgdb.Report, now time.Time) []RemoteWorker {
	out := make([]RemoteWorker, 0, len(remote))
	for _, r := range remote {
		w := RemoteWorker{Report: r, Running: now.Sub(r.UpdatedAt) <= ReportStaleAfter}
		if !w.Running {
			w.Problem = fmt.Sprintf("no report for %s", now.Sub(r.UpdatedAt).Round(time.Second))
		}
		out = append(out, w)
	}
	return out
}

// Unit is the unit of the remote worker on its host.
func (w RemoteWorker) Unit() string { return units.WorkerUnit(w.WorkerID) }

// RemoteHealth is the health rows of the other hosts' workers, from their
// reports: "remote/reporting" while they report, "remote/silent" with the
// problem once they stop. This host cannot see or restart their units, so
// they are listed, not counted among its healthy or unhealthy workers.
func RemoteHealth(reports []kgdb.Report, host string, now time.Time) []supervisor.WorkerHealth {
	_, remote := HostReports(reports, host)
	var out []supervisor.WorkerHealth
	for _, w := range RemoteWorkers(remote, now) {
		h := supervisor.WorkerHealth{Host: w.Host, Index: w.WorkerID - 1, WorkerID: w.WorkerID, Unit: w.Unit(), Running: w.Running,
			ActiveState: "remote", SubState: "reporting", PID: uint32(w.PID), Problem: w.Problem}
		if !w.Running {
			h.SubState = "silent"
		} else {
			st := w.Stats
			h.Stats = &st
		}
		out = append(out, h)
	}
	return out
}
