package kgdb

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kato-manager/kato-manager/queue"
)

// Report is what one worker process last said about itself: its counters
// since it started and what it knows of the KG service. Each worker number
// of each host has one report; a restarted worker replaces its
// predecessor's.
type Report struct {
	// Host is the hostname of the machine the worker runs on.
	Host      string        `json:"host"`
	WorkerID  int           `json:"worker_id"`
	Owner     string        `json:"owner"`
	PID       int           `json:"pid"`
	StartedAt time.Time     `json:"started_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	Stats     WorkerStats   `json:"stats"`
	Service   ServiceStatus `json:"kg_service_status"`
}

// PublishReport records r as its worker's latest report.
func (q *DB) PublishReport(ctx context.Context, r Report) error {
	stats, err := json.Marshal(r.Stats)
	if err != nil {
		return fmt.Errorf("publish report of worker %d: %w", r.WorkerID, err)
	}
	service, err := json.Marshal(r.Service)
	if err != nil {
		return fmt.Errorf("publish report of worker %d: %w", r.WorkerID, err)
	}
	if q.readOnly {
		return fmt.Errorf("publish report of worker %d: %w", r.WorkerID, ErrReadOnly)
	}
	_, err = q.db.ExecContext(ctx, `INSERT INTO kg_worker_reports(host, worker_id, owner, pid, started_at, updated_at, stats, service)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(host, worker_id) DO UPDATE SET owner = excluded.owner, pid = excluded.pid, started_at = excluded.started_at,
	updated_at = excluded.updated_at, stats = excluded.stats, service = excluded.service`,
		r.Host, r.WorkerID, r.Owner, r.PID, queue.Stamp(r.StartedAt), queue.Stamp(r.UpdatedAt), string(stats), string(service))
	if err != nil {
		return fmt.Errorf("publish report of worker %d: %w", r.WorkerID, err)
	}
	return nil
}

// Reports returns every worker's latest report, by host and worker number.
func (q *DB) Reports(ctx context.Context) ([]Report, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT host, worker_id, owner, pid, started_at, updated_at, stats, service FROM kg_worker_reports ORDER BY host, worker_id`)
	if err != nil {
		return nil, fmt.Errorf("read worker reports: %w", err)
	}
	defer rows.Close()
	var out []Report
	for rows.Next() {
		var r Report
		var started, updated queue.NullTime
		var stats, service string
		if err := rows.Scan(&r.Host, &r.WorkerID, &r.Owner, &r.PID, &started, &updated, &stats, &service); err != nil {
			return nil, fmt.Errorf("read worker reports: %w", err)
		}
		r.StartedAt, r.UpdatedAt = started.Time, updated.Time
		if err := json.Unmarshal([]byte(stats), &r.Stats); err != nil {
			return nil, fmt.Errorf("read report of worker %d: %w", r.WorkerID, err)
		}
		if err := json.Unmarshal([]byte(service), &r.Service); err != nil {
			return nil, fmt.Errorf("read report of worker %d: %w", r.WorkerID, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
