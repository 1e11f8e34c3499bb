package queue

import (
	"context"
	"fmt"
	"strings"
)

// LatencyBuckets are the upper bounds, in seconds, of the latency
// histograms: from a tenth of a second to an hour.
var LatencyBuckets = []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// Histogram is a latency distribution as Prometheus keeps one: Cumulative[i]
// items took at most Bounds[i] seconds; Count and Sum cover every item.
type Histogram struct {
	Bounds     []float64 `json:"bounds"`
	Cumulative []uint64  `json:"cumulative"`
	Count      uint64    `json:"count"`
	Sum        float64   `json:"sum"`
}

// Latencies are the queue's two latencies over the items it holds.
type Latencies struct {
	// Pickup is enqueue to claim, over every item claimed at least once
	// (processing_started_at - queued_at of its latest claim).
	Pickup Histogram `json:"enqueue_to_pickup"`
	// Done is claim to completion, over completed items (processed_at -
	// processing_started_at).
	Done Histogram `json:"claim_to_done"`
}

// Latencies computes both histograms in the database, one query each,
// with the bounds of LatencyBuckets.
func (q *Queue) Latencies(ctx context.Context) (Latencies, error) {
	var l Latencies
	var err error
	l.Pickup, err = q.histogram(ctx, "processing_started_at", "queued_at", "processing_started_at IS NOT NULL AND queued_at IS NOT NULL")
	if err != nil {
		return l, fmt.Errorf("enqueue-to-pickup latency: %w", err)
	}
	l.Done, err = q.histogram(ctx, "processed_at", "processing_started_at", "status = 'completed' AND processed_at IS NOT NULL AND processing_started_at IS NOT NULL")
	if err != nil {
		return l, fmt.Errorf("claim-to-done latency: %w", err)
	}
	return l, nil
}

func (q *Queue) histogram(ctx context.Context, end, start, where string) (Histogram, error) {
	h := Histogram{Bounds: LatencyBuckets, Cumulative: make([]uint64, len(LatencyBuckets))}
	cols := []string{"count(*)", "COALESCE(sum(d), 0)"}
	for range LatencyBuckets {
		cols = append(cols, "COALESCE(sum(CASE WHEN d <= ? THEN 1 ELSE 0 END), 0)")
	}
	// Timestamps are kept to the millisecond, and julianday's floating
	// point is rounded back to it. A clock step can make a difference
	// negative: it counts as zero.
	seconds := fmt.Sprintf("max(0, round((julianday(%s) - julianday(%s)) * 86400000.0) / 1000.0)", end, start)
	if q.dialect == Postgres {
		seconds = fmt.Sprintf("GREATEST(0, round(EXTRACT(EPOCH FROM (%s - %s)) * 1000) / 1000.0)", end, start)
	}
	query := fmt.Sprintf(`SELECT %s FROM (SELECT %s AS d
FROM kg_processing_queue WHERE %s) AS latencies`, strings.Join(cols, ", "), seconds, where)
	args := make([]any, len(LatencyBuckets))
	dest := []any{&h.Count, &h.Sum}
	for i, b := range LatencyBuckets {
		args[i] = b
		dest = append(dest, &h.Cumulative[i])
	}
	if err := q.db.QueryRowContext(ctx, query, args...).Scan(dest...); err != nil {
		return h, err
	}
	return h, nil
}
