package main

import (
	"context"

	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/web"
)

// queueOverview is what the dashboard reads of the queue in one round
// trip to the database's child.
type queueOverview = web.QueueOverview

// readOverview reads an overview of q in this process (the child's side).
func readOverview(ctx context.Context, q queueDB, status kgworker.Status, limit int) (queueOverview, error) {
	return web.ReadOverview(ctx, q, status, limit)
}

// Overview implements web.Overviewer: one request to the child.
func (c *queueChild) Overview(ctx context.Context, status kgworker.Status, limit int) (queueOverview, error) {
	return callInto[queueOverview](ctx, c, queueRequest{Op: "overview", Status: status, Limit: limit})
}

// Overview implements web.Overviewer through the current child.
func (r *reopeningQueue) Overview(ctx context.Context, status kgworker.Status, limit int) (o queueOverview, err error) {
	err = r.do(func(q queueDB) error { o, err = readOverview(ctx, q, status, limit); return err })
	return o, err
}
