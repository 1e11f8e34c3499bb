package kgpool

import (
	"context"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/supervisor"
)

// Stats gathers the pool's health, the workers' reports and the queue
// counts into the KG Manager's aggregate statistics: /stats, and `workers
// stats`.
func Stats(ctx context.Context, p *supervisor.Pool, q Reader) (*PoolStats, error) {
	h, err := p.Health(ctx)
	if err != nil {
		return nil, err
	}
	reports, err := q.Reports(ctx)
	if err != nil {
		return nil, err
	}
	counts, err := q.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return AggregateStats(h, reports, counts, p.Config.KG.ServiceEnabled, time.Now().UTC(), supervisor.Hostname()), nil
}

// Reader is the part of the KG database Stats reads.
type Reader interface {
	Reports(ctx context.Context) ([]kgdb.Report, error)
	Stats(ctx context.Context) (queue.Counts, error)
}

// The states of the pool in a HealthReport.
const (
	StatusHealthy   = "healthy"
	StatusDegraded  = "degraded"
	StatusUnhealthy = "unhealthy"
)

// HealthReport is `workers health` in the KG Manager's field names, with
// the pool's state and the KG service's beside them: /health, and
// `workers health --json`.
type HealthReport struct {
	// Status is healthy, degraded (the workers are, the KG service is
	// not) or unhealthy (a worker is not, or none runs).
	Status           string                    `json:"status"`
	ManagerRunning   bool                      `json:"manager_running"`
	TotalWorkers     int                       `json:"total_workers"`
	HealthyWorkers   int                       `json:"healthy_workers"`
	UnhealthyWorkers int                       `json:"unhealthy_workers"`
	WorkersRestarted uint32                    `json:"workers_restarted"`
	WorkerDetails    []supervisor.WorkerHealth `json:"worker_details"`
	// KGServiceStatus is what the service's /health answered `workers
	// health`; serve's /health does not ask it.
	KGServiceStatus *ServiceHealth `json:"kg_service_status,omitempty"`
}

// NewHealthReport is the report of h.
func NewHealthReport(h *supervisor.PoolHealth) HealthReport {
	status := StatusHealthy
	if h.UnhealthyWorkers > 0 || !h.ManagerRunning {
		status = StatusUnhealthy
	}
	return HealthReport{
		Status: status, ManagerRunning: h.ManagerRunning, TotalWorkers: h.TotalWorkers, HealthyWorkers: h.HealthyWorkers,
		UnhealthyWorkers: h.UnhealthyWorkers, WorkersRestarted: h.WorkersRestarted, WorkerDetails: h.Workers,
	}
}

// Health is the report of `workers health`: h, its workers given the
// counters of their reports, then, when the reports are shared with other
// hosts (a PostgreSQL queue), those hosts' workers, and the KG service's
// health; degraded when every worker is healthy but the service is not.
func Health(h *supervisor.PoolHealth, reports []kgdb.Report, shared bool, service ServiceHealth, host string, now time.Time) HealthReport {
	AttachStats(h.Workers, reports, host)
	report := NewHealthReport(h)
	if shared {
		report.WorkerDetails = append(report.WorkerDetails, RemoteHealth(reports, host, now)...)
	}
	report.KGServiceStatus = &service
	if report.Status == StatusHealthy && service.Enabled && !service.IsHealthy {
		report.Status = StatusDegraded
	}
	return report
}
