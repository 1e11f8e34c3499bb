package supervisor

import (
	"fmt"
	"os"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/units"
)

// WorkerDetail is one worker in the KG Manager's worker_details list.
type WorkerDetail struct {
	// Host is the host the worker runs on, as the worker names it;
	// ThisHost says it is the host that answers, whose systemd runs it.
	Host     string         `json:"host"`
	ThisHost bool           `json:"this_host"`
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

// Hosts says whose workers AggregateStats shows besides this host's: the
// workers of every host that shares the queue, from their reports.
type Hosts struct {
	// This is this host's name as its workers report it (its hostname).
	This string
	// Fresh is how recent a report of another host's worker must be for
	// the worker to count as running; a host that vanished drops out of
	// the list once its reports are older, as its leases expire.
	Fresh time.Duration
}

// Hosts returns whose workers the pool's stats show: this host by its
// hostname, as its workers name it, and other hosts' workers whose reports
// are younger than the lease or three poll intervals, whichever is longer
// (an idle worker reports once per poll interval).
func (p *Pool) Hosts() (Hosts, error) {
	name, err := os.Hostname()
	if err != nil {
		return Hosts{}, fmt.Errorf("read the hostname: %w", err)
	}
	kg := p.Config.KG
	return Hosts{This: name, Fresh: max(config.Seconds(kg.LeaseSeconds), 3*config.Seconds(kg.PollInterval))}, nil
}

// AggregateStats combines the pool's health with the workers' reports and
// the queue counts. Reports of this host's workers that are not part of the
// pool (a stopped worker's last report) are left out of the sums; another
// host's workers are shown and counted from reports younger than
// hosts.Fresh.
func AggregateStats(h *PoolHealth, reports []kgworker.Report, queue kgworker.Counts, serviceEnabled bool, now time.Time, hosts Hosts) *PoolStats {
	byWorker := make(map[int]kgworker.Report, len(reports))
	var others []kgworker.Report
	for _, r := range reports {
		// Reports from before workers named their host are this host's.
		if r.Host == hosts.This || r.Host == "" {
			byWorker[r.WorkerID] = r
		} else if now.Sub(r.UpdatedAt) <= hosts.Fresh {
			others = append(others, r)
		}
	}
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
	count := func(r kgworker.Report) {
		s.TotalProcessed += r.Stats.TotalProcessed
		s.TotalSuccess += r.Stats.TotalSuccess
		s.TotalFailed += r.Stats.TotalFailed
		if first {
			s.KGServiceStatus, first = r.Service, false
			// Reports written before URLs were redacted at the source.
			s.KGServiceStatus.URL = config.RedactURL(s.KGServiceStatus.URL)
		}
	}
	for _, w := range h.Workers {
		d := WorkerDetail{Host: hosts.This, ThisHost: true, WorkerID: w.WorkerID, Running: w.Running, Unit: w.Unit, PID: w.PID, Restarts: w.Restarts, Problem: w.Problem}
		// A report belongs to the running process only if the pids match;
		// otherwise it is an earlier process's and its counters are gone.
		if r, ok := byWorker[w.WorkerID]; ok && uint32(r.PID) == w.PID {
			d.Stats = r.Stats
			count(r)
			if s.ManagerStartedAt.IsZero() || r.StartedAt.Before(s.ManagerStartedAt) {
				s.ManagerStartedAt = r.StartedAt
			}
		}
		s.WorkerDetails = append(s.WorkerDetails, d)
	}
	for _, r := range others {
		s.TotalWorkers++
		count(r)
		s.WorkerDetails = append(s.WorkerDetails, WorkerDetail{Host: r.Host, WorkerID: r.WorkerID, Running: true,
			Unit: units.WorkerUnit(r.WorkerID), PID: uint32(r.PID), Stats: r.Stats})
	}
	return s
}
