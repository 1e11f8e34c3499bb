package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgworker"
)

// openQueue opens the KG queue database named by the configuration. A
// database created here belongs to the kato user, as the workers', so they
// can write it.
func (a *app) openQueue(ctx context.Context) (*kgworker.Queue, *config.Config, error) {
	return a.openQueueWith(ctx, kgworker.Open)
}

// openQueueReadOnly opens the KG queue database for commands that only
// read it: they take no write lock, so they never wait for, or hold up, the
// workers. A database that does not exist yet is created as openQueue does.
func (a *app) openQueueReadOnly(ctx context.Context) (*kgworker.Queue, *config.Config, error) {
	return a.openQueueWith(ctx, kgworker.OpenReadOnly)
}

func (a *app) openQueueWith(ctx context.Context, open func(context.Context, string, ...kgworker.Option) (*kgworker.Queue, error)) (*kgworker.Queue, *config.Config, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	q, err := open(ctx, cfg.KG.DBPath, kgworker.WithMaxRetries(cfg.KG.MaxRetries), kgworker.WithFileOwner(config.ServiceUser))
	if err != nil {
		return nil, nil, err
	}
	return q, cfg, nil
}

func (a *app) queue(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("queue needs a subcommand: enqueue, list, retry-failed, stats")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "enqueue":
		return a.queueEnqueue(ctx, args)
	case "list":
		return a.queueList(ctx, args)
	case "retry-failed":
		return a.queueRetryFailed(ctx, args)
	case "stats":
		return a.queueStats(ctx, args)
	}
	return usagef("unknown queue subcommand %q: must be enqueue, list, retry-failed or stats", sub)
}

// ids parses positive row or content IDs.
func ids(field string, args []string) ([]int64, error) {
	out := make([]int64, 0, len(args))
	for _, s := range args {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id < 1 {
			return nil, &config.FieldError{Field: field, Value: s, Rule: "must be a positive whole number"}
		}
		out = append(out, id)
	}
	return out, nil
}

func (a *app) queueEnqueue(ctx context.Context, args []string) error {
	fs := a.newFlags("queue enqueue", "CONTENT_ID... [--priority N]")
	priority := fs.Int("priority", 1, "priority; higher is processed first")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("queue enqueue takes one or more crawled_content ids")
	}
	contentIDs, err := ids("CONTENT_ID", fs.Args())
	if err != nil {
		return err
	}
	q, _, err := a.openQueue(ctx)
	if err != nil {
		return err
	}
	defer q.Close()
	for _, c := range contentIDs {
		id, err := q.Enqueue(ctx, c, *priority)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "queued content %d as item %d\n", c, id)
	}
	return nil
}

func (a *app) queueList(ctx context.Context, args []string) error {
	fs := a.newFlags("queue list", "[--status S] [--limit N] [--json]")
	status := fs.String("status", "", "only items in this status: pending, processing, completed, failed, skipped")
	limit := fs.Int("limit", 50, "at most this many items, newest first")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args, "queue list takes no arguments"); err != nil {
		return err
	}
	var st kgworker.Status
	if *status != "" {
		var err error
		if st, err = kgworker.ParseStatus(*status); err != nil {
			return usageError{err}
		}
	}
	if *limit < 1 {
		return &config.FieldError{Field: "limit", Value: strconv.Itoa(*limit), Rule: "must be 1 or more"}
	}
	q, _, err := a.openQueueReadOnly(ctx)
	if err != nil {
		return err
	}
	defer q.Close()
	items, err := q.List(ctx, st, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.stdout, items)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONTENT\tSTATUS\tPRIORITY\tRETRIES\tQUEUED\tWORKER\tERROR")
	for _, it := range items {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", it.ID, it.ContentID, it.Status, it.Priority, it.RetryCount,
			it.QueuedAt.Local().Format(time.DateTime), orDash(it.LeaseOwner), orDash(it.ErrorMessage))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) queueRetryFailed(ctx context.Context, args []string) error {
	fs := a.newFlags("queue retry-failed", "[ITEM_ID...]")
	if err := parse(fs, args); err != nil {
		return err
	}
	itemIDs, err := ids("ITEM_ID", fs.Args())
	if err != nil {
		return err
	}
	q, _, err := a.openQueue(ctx)
	if err != nil {
		return err
	}
	defer q.Close()
	n, err := q.RetryFailed(ctx, itemIDs...)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d failed item(s) queued again\n", n)
	return nil
}

func (a *app) queueStats(ctx context.Context, args []string) error {
	fs := a.newFlags("queue stats", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args, "queue stats takes no arguments"); err != nil {
		return err
	}
	q, _, err := a.openQueueReadOnly(ctx)
	if err != nil {
		return err
	}
	defer q.Close()
	c, err := q.Stats(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.stdout, c)
	}
	fmt.Fprintf(a.stdout, "total %d: pending %d, processing %d, completed %d, failed %d, skipped %d\n",
		c.Total, c.Pending, c.Processing, c.Completed, c.Failed, c.Skipped)
	return nil
}
