package supervisor

import (
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgworker"
)

// WorkerDetail is one worker in the KG Manager's worker_details list.
type WorkerDetail struct {
	// Host is the host the worker runs on; Local says whether that is
	// this host, whose systemd the unit's state comes from. A worker of
	// another host is known by its reports only.
	Host     string         `json:"host"`
	Local    bool           `json:"local"`
	WorkerID int            `json:"worker_id"`
	Running  bool           `json:"running"`
	Unit     string         `json:"unit"`
	PID      uint32         `json:"pid"`
	Restarts uint32         `json:"restarts"`
	Problem  string         `json:"problem,omitempty"`
	Stats    kgworker.Stats `json:"stats"`
}

// PoolStats is the KG Manager's get_aggregate_stats: manager-level state from
// systemd, counters summed over the running workers' reports, the KG
// service as the first worker sees it, and the shared queue as it is.
type PoolStats struct {
	TotalWorkers     int                    `json:"total_workers"`
	ManagerRunning   bool                   `json:"manager_running"`
	ManagerStartedAt time.Time              `json:"manager_started_at,omitzero"`
	WorkersRestarted uint32                 `json:"workers_restarted"`
	LastHealthCheck  time.Time              `json:"last_health_check"`
	TotalProcessed   int                    `json:"total_processed"`
	TotalSuccess     int                    `json:"total_success"`
	TotalFailed      int                    `json:"total_failed"`
	KGServiceEnabled bool                   `json:"kg_service_enabled"`
	KGServiceStatus  kgworker.ServiceStatus `json:"kg_service_status"`
	QueueSize        kgworker.Counts        `json:"queue_size"`
	WorkerDetails    []WorkerDetail         `json:"worker_details"`
}

// AggregateStats combines the pool's health with the workers' reports and
// the queue counts. Reports of workers that are not part of the pool (a
// stopped worker's last report) are left out of the sums. host is this
// host's name: the workers of other hosts sharing a PostgreSQL queue are
// listed after this host's, and those that still report (RemoteWorkers)
// count in the totals.
func AggregateStats(h *PoolHealth, reports []kgworker.Report, queue kgworker.Counts, serviceEnabled bool, now time.Time, host string) *PoolStats {
	byWorker, remote := HostReports(reports, host)
	s := &PoolStats{
		TotalWorkers:     h.TotalWorkers,
		ManagerRunning:   h.ManagerRunning,
		WorkersRestarted: h.WorkersRestarted,
		LastHealthCheck:  now,
		KGServiceEnabled: serviceEnabled,
		QueueSize:        queue,
		WorkerDetails:    []WorkerDetail{},
	}
	first := true
	for _, w := range h.Workers {
		d := WorkerDetail{Host: host, Local: true, WorkerID: w.WorkerID, Running: w.Running, Unit: w.Unit, PID: w.PID, Restarts: w.Restarts, Problem: w.Problem}
		// A report belongs to the running process only if the pids match;
		// otherwise it is an earlier process's and its counters are gone.
		if r, ok := byWorker[w.WorkerID]; ok && uint32(r.PID) == w.PID {
			d.Stats = r.Stats
			s.TotalProcessed += r.Stats.TotalProcessed
			s.TotalSuccess += r.Stats.TotalSuccess
			s.TotalFailed += r.Stats.TotalFailed
			if first {
				s.KGServiceStatus, first = r.Service, false
				// Reports written before URLs were redacted at the source.
				s.KGServiceStatus.URL = config.RedactURL(s.KGServiceStatus.URL)
			}
			if s.ManagerStartedAt.IsZero() || r.StartedAt.Before(s.ManagerStartedAt) {
				s.ManagerStartedAt = r.StartedAt
			}
		}
		s.WorkerDetails = append(s.WorkerDetails, d)
	}
	for _, w := range RemoteWorkers(remote, now) {
		d := WorkerDetail{Host: w.Host, WorkerID: w.WorkerID, Running: w.Running, Unit: w.Unit(), PID: uint32(w.PID), Problem: w.Problem}
		if w.Running {
			d.Stats = w.Stats
			s.TotalWorkers++
			s.TotalProcessed += w.Stats.TotalProcessed
			s.TotalSuccess += w.Stats.TotalSuccess
			s.TotalFailed += w.Stats.TotalFailed
		}
		s.WorkerDetails = append(s.WorkerDetails, d)
	}
	return s
}
