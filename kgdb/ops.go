// Package kgdb is root's access path to the KG database beside the queue:
// the operations operators run on it (from the CLI and the web), as one
// table that the in-process access, the kato-queue helper's dispatch and
// the helper's client all use, and the errors that keep their kind across
// the helper's connection.
//
// Adding an operation: define it in the table below (name, arguments,
// result) and give Client a method calling it. The helper serves it, and
// every Store (direct or through the helper) offers it, with nothing else
// to change.
package kgdb

import (
	"context"
	"fmt"
	"time"

	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
)

// Args are the arguments of an operation; each uses the fields it names.
type Args struct {
	Status    queue.Status  `json:"status,omitempty"`
	Limit     int           `json:"limit,omitempty"`
	Priority  int           `json:"priority,omitempty"`
	IDs       []int64       `json:"ids,omitempty"`
	ID        int64         `json:"id,omitempty"`
	Search    string        `json:"search,omitempty"`
	OlderThan time.Duration `json:"older_than,omitempty"`
}

// Overview is everything a page or a scrape reads from the queue, fetched
// in one call (one round trip to the helper).
type Overview struct {
	Counts    queue.Counts      `json:"counts"`
	Reports   []kgworker.Report `json:"reports"`
	Latencies queue.Latencies   `json:"latencies"`
	// Items are up to Limit items of Status, as List returns them.
	Items []queue.Item `json:"items"`
}

// op is one operation of the table, returning an R.
type op[R any] struct {
	name string
	run  func(context.Context, *kgworker.Queue, Args) (R, error)
}

// handler is an operation of any result type, as the table holds it.
type handler interface {
	// serve runs the operation for the helper, its result to be encoded.
	serve(ctx context.Context, q *kgworker.Queue, args Args) (any, error)
	// into runs the operation in process, its result stored in *result.
	into(ctx context.Context, q *kgworker.Queue, args Args, result any) error
}

func (o op[R]) serve(ctx context.Context, q *kgworker.Queue, args Args) (any, error) {
	return o.run(ctx, q, args)
}

func (o op[R]) into(ctx context.Context, q *kgworker.Queue, args Args, result any) error {
	r, err := o.run(ctx, q, args)
	if err != nil {
		return err
	}
	p, ok := result.(*R)
	if !ok {
		return fmt.Errorf("kg database operation %s: result into %T, want *%T", o.name, result, r)
	}
	*p = r
	return nil
}

// call runs o through c.
func (o op[R]) call(ctx context.Context, c Caller, args Args) (R, error) {
	var r R
	err := c.Call(ctx, o.name, args, &r)
	return r, err
}

// ops is the table: every operation by name.
var ops = map[string]handler{}

func define[R any](name string, run func(context.Context, *kgworker.Queue, Args) (R, error)) op[R] {
	o := op[R]{name: name, run: run}
	ops[name] = o
	return o
}

// The operations.
var (
	opEnqueue = define("enqueue", func(ctx context.Context, q *kgworker.Queue, a Args) ([]int64, error) {
		return q.EnqueueDocuments(ctx, a.Priority, a.IDs...)
	})
	opList = define("list", func(ctx context.Context, q *kgworker.Queue, a Args) ([]queue.Item, error) {
		return q.List(ctx, a.Status, a.Limit)
	})
	opRetryFailed = define("retry-failed", func(ctx context.Context, q *kgworker.Queue, a Args) (int, error) {
		return q.RetryFailed(ctx, a.IDs...)
	})
	opStats = define("stats", func(ctx context.Context, q *kgworker.Queue, _ Args) (queue.Counts, error) {
		return q.Stats(ctx)
	})
	opReports = define("reports", func(ctx context.Context, q *kgworker.Queue, _ Args) ([]kgworker.Report, error) {
		return q.Reports(ctx)
	})
	opLatencies = define("latencies", func(ctx context.Context, q *kgworker.Queue, _ Args) (queue.Latencies, error) {
		return q.Latencies(ctx)
	})
	opOverview = define("overview", readOverview)
	opPriority = define("priority", func(ctx context.Context, q *kgworker.Queue, a Args) (int, error) {
		return q.SetPriority(ctx, a.Priority, a.IDs...)
	})
	opDelete = define("delete", func(ctx context.Context, q *kgworker.Queue, a Args) (int, error) {
		return q.Delete(ctx, a.IDs...)
	})
	opRequeue = define("requeue", func(ctx context.Context, q *kgworker.Queue, a Args) (int, error) {
		return q.Requeue(ctx, a.Priority, a.IDs...)
	})
	opRequeueAll = define("requeue-all", func(ctx context.Context, q *kgworker.Queue, a Args) (int, error) {
		return q.RequeueAll(ctx, a.Priority)
	})
	opClear = define("clear", func(ctx context.Context, q *kgworker.Queue, a Args) (int, error) {
		return q.Clear(ctx, a.Status)
	})
	opClearOlderThan = define("clear-older-than", func(ctx context.Context, q *kgworker.Queue, a Args) (int, error) {
		return q.ClearOlderThan(ctx, a.Status, a.OlderThan)
	})
	opDocuments = define("documents", func(ctx context.Context, q *kgworker.Queue, a Args) ([]kgworker.DocumentSummary, error) {
		return q.Documents(ctx, a.Search, a.Limit)
	})
	opDocument = define("document", func(ctx context.Context, q *kgworker.Queue, a Args) (*kgworker.DocumentDetail, error) {
		return q.Document(ctx, a.ID)
	})
)

// readOverview reads the overview of q call by call.
func readOverview(ctx context.Context, q *kgworker.Queue, a Args) (Overview, error) {
	var o Overview
	var err error
	if o.Counts, err = q.Stats(ctx); err != nil {
		return o, err
	}
	if o.Reports, err = q.Reports(ctx); err != nil {
		return o, err
	}
	if o.Latencies, err = q.Latencies(ctx); err != nil {
		return o, err
	}
	o.Items, err = q.List(ctx, a.Status, a.Limit)
	return o, err
}

// Serve runs the operation name on q for the helper, and returns its
// result to encode.
func Serve(ctx context.Context, q *kgworker.Queue, name string, args Args) (any, error) {
	h, ok := ops[name]
	if !ok {
		return nil, fmt.Errorf("unknown queue operation %q", name)
	}
	return h.serve(ctx, q, args)
}
