package kgdb

import (
	"context"
	"fmt"
	"time"

	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
)

// Caller runs an operation of the table by name, storing its result in
// result, a pointer to the operation's result type: in process (Local) or
// through the helper.
type Caller interface {
	Call(ctx context.Context, name string, args Args, result any) error
}

// Store is the KG database as root's commands and the web use it.
type Store interface {
	EnqueueDocuments(ctx context.Context, priority int, contentIDs ...int64) ([]int64, error)
	List(ctx context.Context, status queue.Status, limit int) ([]queue.Item, error)
	RetryFailed(ctx context.Context, ids ...int64) (int, error)
	Stats(ctx context.Context) (queue.Counts, error)
	Reports(ctx context.Context) ([]kgworker.Report, error)
	Latencies(ctx context.Context) (queue.Latencies, error)
	Overview(ctx context.Context, status queue.Status, limit int) (Overview, error)
	SetPriority(ctx context.Context, priority int, ids ...int64) (int, error)
	Delete(ctx context.Context, ids ...int64) (int, error)
	Requeue(ctx context.Context, priority int, contentIDs ...int64) (int, error)
	RequeueAll(ctx context.Context, priority int) (int, error)
	Clear(ctx context.Context, status queue.Status) (int, error)
	ClearOlderThan(ctx context.Context, status queue.Status, age time.Duration) (int, error)
	Documents(ctx context.Context, search string, limit int) ([]kgworker.DocumentSummary, error)
	Document(ctx context.Context, id int64) (*kgworker.DocumentDetail, error)
	Close() error
}

// Client gives a Caller the typed methods of Store, each one operation of
// the table. Embed it in a Caller, set to that Caller.
type Client struct {
	Caller Caller
}

// EnqueueDocuments queues stored documents (see kgworker.Queue.EnqueueDocuments).
func (c Client) EnqueueDocuments(ctx context.Context, priority int, contentIDs ...int64) ([]int64, error) {
	return opEnqueue.call(ctx, c.Caller, Args{Priority: priority, IDs: contentIDs})
}

// List lists up to limit items of status, all statuses for "".
func (c Client) List(ctx context.Context, status queue.Status, limit int) ([]queue.Item, error) {
	return opList.call(ctx, c.Caller, Args{Status: status, Limit: limit})
}

// RetryFailed puts failed items back to pending, all of them for no ids.
func (c Client) RetryFailed(ctx context.Context, ids ...int64) (int, error) {
	return opRetryFailed.call(ctx, c.Caller, Args{IDs: ids})
}

// Stats counts the items in each status.
func (c Client) Stats(ctx context.Context) (queue.Counts, error) {
	return opStats.call(ctx, c.Caller, Args{})
}

// Reports returns the workers' report rows.
func (c Client) Reports(ctx context.Context) ([]kgworker.Report, error) {
	return opReports.call(ctx, c.Caller, Args{})
}

// Latencies returns the queue's latency histograms.
func (c Client) Latencies(ctx context.Context) (queue.Latencies, error) {
	return opLatencies.call(ctx, c.Caller, Args{})
}

// Overview reads counts, reports, latencies and up to limit items of
// status in one call.
func (c Client) Overview(ctx context.Context, status queue.Status, limit int) (Overview, error) {
	return opOverview.call(ctx, c.Caller, Args{Status: status, Limit: limit})
}

// SetPriority changes the priority of items.
func (c Client) SetPriority(ctx context.Context, priority int, ids ...int64) (int, error) {
	return opPriority.call(ctx, c.Caller, Args{Priority: priority, IDs: ids})
}

// Delete removes items.
func (c Client) Delete(ctx context.Context, ids ...int64) (int, error) {
	return opDelete.call(ctx, c.Caller, Args{IDs: ids})
}

// Requeue asks for documents to be processed again.
func (c Client) Requeue(ctx context.Context, priority int, contentIDs ...int64) (int, error) {
	return opRequeue.call(ctx, c.Caller, Args{Priority: priority, IDs: contentIDs})
}

// RequeueAll asks for every document to be processed again.
func (c Client) RequeueAll(ctx context.Context, priority int) (int, error) {
	return opRequeueAll.call(ctx, c.Caller, Args{Priority: priority})
}

// Clear deletes every item in status.
func (c Client) Clear(ctx context.Context, status queue.Status) (int, error) {
	return opClear.call(ctx, c.Caller, Args{Status: status})
}

// ClearOlderThan deletes the items in status that reached it more than
// age ago.
func (c Client) ClearOlderThan(ctx context.Context, status queue.Status, age time.Duration) (int, error) {
	return opClearOlderThan.call(ctx, c.Caller, Args{Status: status, OlderThan: age})
}

// Documents lists stored documents whose title or URL holds search.
func (c Client) Documents(ctx context.Context, search string, limit int) ([]kgworker.DocumentSummary, error) {
	return opDocuments.call(ctx, c.Caller, Args{Search: search, Limit: limit})
}

// Document returns one stored document in detail; an unknown id is a
// *config.NotFoundError.
func (c Client) Document(ctx context.Context, id int64) (*kgworker.DocumentDetail, error) {
	return opDocument.call(ctx, c.Caller, Args{ID: id})
}

// Local is a Store on a database this process opened itself.
type Local struct {
	Client
	Queue *kgworker.Queue
}

// NewLocal returns the Store of q, which it closes on Close.
func NewLocal(q *kgworker.Queue) *Local {
	l := &Local{Queue: q}
	l.Client = Client{Caller: l}
	return l
}

// Call runs the operation name on the database, in process.
func (l *Local) Call(ctx context.Context, name string, args Args, result any) error {
	h, ok := ops[name]
	if !ok {
		return fmt.Errorf("unknown queue operation %q", name)
	}
	return h.into(ctx, l.Queue, args, result)
}

// Close closes the database.
func (l *Local) Close() error { return l.Queue.Close() }
