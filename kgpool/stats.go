package kgpool

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/supervisor"
)

// WorkerDetail is one worker in the KG Manager's worker_details list.
type WorkerDetail struct {
	// Host is the host the worker runs on; Local says whether that is
	// this host, whose systemd the unit's state comes from. A worker of
	// another host is known by its reports only.
	Host  string `json:"host"`
	Local bool   `json:"local"`
	// Index is the KG Manager's worker_id, counted from 0; WorkerID is
	// the N of kg-worker@N.service, counted from 1.
	Index    int              `json:"worker_id"`
	WorkerID int              `json:"instance"`
	Running  bool             `json:"running"`
	Unit     string           `json:"unit"`
	PID      uint32           `json:"pid"`
	Restarts uint32           `json:"restarts"`
	Problem  string           `json:"problem,omitempty"`
	Stats    kgdb.WorkerStats `json:"stats"`
}

// PoolStats is the KG Manager's get_aggregate_stats: manager-level state from
// systemd, counters summed over the running workers' reports, the KG
// service as the first worker sees it, and the shared queue as it is.
type PoolStats struct {
	TotalWorkers     int                `json:"total_workers"`
	ManagerRunning   bool               `json:"manager_running"`
	ManagerStartedAt time.Time          `json:"manager_started_at,omitzero"`
	WorkersRestarted uint32             `json:"workers_restarted"`
	LastHealthCheck  time.Time          `json:"last_health_check"`
	TotalProcessed   int                `json:"total_processed"`
	TotalSuccess     int                `json:"total_success"`
	TotalFailed      int                `json:"total_failed"`
	TotalSkipped     int                `json:"total_skipped"`
	KGServiceEnabled bool               `json:"kg_service_enabled"`
	KGServiceStatus  kgdb.ServiceStatus `json:"kg_service_status"`
	QueueSize        queue.Counts       `json:"queue_size"`
	WorkerDetails    []WorkerDetail     `json:"worker_details"`
}

// AggregateStats combines the pool's health with the workers' reports and
// the queue counts. Reports of workers that are not part of the pool (a
// stopped worker's last report) are left out of the sums. host is this
// host's name: the workers of other hosts sharing a PostgreSQL queue are
// listed after this host's, and those that still report (RemoteWorkers)
// count in the totals.
func AggregateStats(h *supervisor.PoolHealth, reports []kgdb.Report, queue queue.Counts, serviceEnabled bool, now time.Time, host string) *PoolStats {
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
		d := WorkerDetail{Host: host, Local: true, Index: w.WorkerID - 1, WorkerID: w.WorkerID, Running: w.Running, Unit: w.Unit, PID: w.PID, Restarts: w.Restarts, Problem: w.Problem}
		// A report belongs to the running process only if the pids match;
		// otherwise it is an earlier process's and its counters are gone.
		if r, ok := byWorker[w.WorkerID]; ok && uint32(r.PID) == w.PID {
			d.Stats = r.Stats
			s.TotalProcessed += r.Stats.TotalProcessed
			s.TotalSuccess += r.Stats.TotalSuccess
			s.TotalFailed += r.Stats.TotalFailed
			s.TotalSkipped += r.Stats.TotalSkipped
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
		d := WorkerDetail{Host: w.Host, Index: w.WorkerID - 1, WorkerID: w.WorkerID, Running: w.Running, Unit: w.Unit(), PID: uint32(w.PID), Problem: w.Problem}
		if w.Running {
			d.Stats = w.Stats
			s.TotalWorkers++
			s.TotalProcessed += w.Stats.TotalProcessed
			s.TotalSuccess += w.Stats.TotalSuccess
			s.TotalFailed += w.Stats.TotalFailed
			s.TotalSkipped += w.Stats.TotalSkipped
		}
		s.WorkerDetails = append(s.WorkerDetails, d)
	}
	return s
}

// AttachStats gives each of this host's workers the counters of its
// report, when the report is the running process's (the pids match).
func AttachStats(workers []supervisor.WorkerHealth, reports []kgdb.Report, host string) {
	byWorker, _ := HostReports(reports, host)
	for i, w := range workers {
		if !w.Local {
			continue
		}
		if r, ok := byWorker[w.WorkerID]; ok && uint32(r.PID) == w.PID {
			st := r.Stats
			workers[i].Stats = &st
		}
	}
}

// ServiceHealth is the KG service's state as `workers health` found it by
// asking the service's /health, as the workers do before they claim work.
type ServiceHealth struct {
	kgdb.ServiceStatus
	// Problem says why the service is not healthy: the connection's
	// error, the answer's status, or the status it reported.
	Problem string `json:"problem,omitempty"`
}

// CheckService asks the KG service of kg whether it can take work, within
// the client's health timeout (5s). A disabled service is not asked.
func CheckService(ctx context.Context, kg config.KG) ServiceHealth {
	c, err := kgworker.NewClient(kgworker.ClientOpts{URL: kg.ServiceURL, Enabled: kg.ServiceEnabled})
	if err != nil {
		return ServiceHealth{ServiceStatus: kgdb.ServiceStatus{Enabled: kg.ServiceEnabled, URL: config.RedactURL(kg.ServiceURL)}, Problem: err.Error()}
	}
	if !kg.ServiceEnabled {
		return ServiceHealth{ServiceStatus: c.Status()}
	}
	err = c.Health(ctx)
	h := ServiceHealth{ServiceStatus: c.Status()}
	if err != nil {
		h.IsHealthy = false
		h.Problem = err.Error()
		// The error names the URL it asked, credentials and all.
		if u, perr := url.Parse(kg.ServiceURL); perr == nil && u.User != nil {
			h.Problem = strings.ReplaceAll(h.Problem, u.User.String()+"@", "REDACTED@")
		}
	}
	return h
}
