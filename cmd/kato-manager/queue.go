package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/textview"
)

// openQueue opens the KG queue database named by the configuration; as
// root, through the helper running as the service user (openQueueDB).
// Read only, it takes no write lock, so it never waits for, or holds up,
// the workers.
func (a *app) openQueue(ctx context.Context, readOnly bool) (kgdb.Store, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	return openQueueDB(ctx, cfg, a.paths, readOnly)
}

// withQueue runs do with the queue of a.openQueue, closed after.
func (a *app) withQueue(ctx context.Context, readOnly bool, do func(kgdb.Store) error) error {
	q, err := a.openQueue(ctx, readOnly)
	if err != nil {
		return err
	}
	defer q.Close()
	return do(q)
}

func queueEnqueueFlags(fs *pflag.FlagSet) *int {
	return fs.Int("priority", 1, "priority; higher is processed first")
}

func (a *app) queueEnqueue(ctx context.Context, fs *pflag.FlagSet, priority *int) error {
	if fs.NArg() == 0 {
		return usagef("queue enqueue takes one or more crawled_content ids")
	}
	contentIDs, err := kgdb.ParseIDs("CONTENT_ID", fs.Args())
	if err != nil {
		return err
	}
	return a.withQueue(ctx, false, func(q kgdb.Store) error {
		// All or nothing: an id without a document refuses the whole command.
		items, err := q.EnqueueDocuments(ctx, *priority, contentIDs...)
		if err != nil {
			return err
		}
		for i, c := range contentIDs {
			fmt.Fprintf(a.stdout, "queued content %d as item %d\n", c, items[i])
		}
		return nil
	})
}

// queueListFlagValues are queue list's flags.
type queueListFlagValues struct {
	status *string
	limit  *int
	asJSON *bool
}

func queueListFlags(fs *pflag.FlagSet) *queueListFlagValues {
	return &queueListFlagValues{
		status: fs.String("status", "", "only items in this status: pending, processing, completed, failed, skipped"),
		limit:  fs.Int("limit", 50, "at most this many items, newest first"),
		asJSON: fs.Bool("json", false, "print JSON"),
	}
}

func (a *app) queueList(ctx context.Context, fs *pflag.FlagSet, f *queueListFlagValues) error {
	var st queue.Status
	if *f.status != "" {
		var err error
		if st, err = queue.ParseStatus(*f.status); err != nil {
			return usageError{err}
		}
	}
	if *f.limit < 1 {
		return &config.FieldError{Field: "limit", Value: strconv.Itoa(*f.limit), Rule: "must be 1 or more"}
	}
	return a.withQueue(ctx, true, func(q kgdb.Store) error {
		items, err := q.List(ctx, st, *f.limit)
		if err != nil {
			return err
		}
		if *f.asJSON {
			return writeJSON(a.stdout, items)
		}
		return textview.QueueList(a.stdout, items)
	})
}

func (a *app) queueRetryFailed(ctx context.Context, fs *pflag.FlagSet, _ struct{}) error {
	itemIDs, err := kgdb.ParseIDs("ITEM_ID", fs.Args())
	if err != nil {
		return err
	}
	return a.withQueue(ctx, false, func(q kgdb.Store) error {
		n, err := q.RetryFailed(ctx, itemIDs...)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%d failed item(s) queued again\n", n)
		return nil
	})
}

func (a *app) queueStats(ctx context.Context, fs *pflag.FlagSet, asJSON *bool) error {
	return a.withQueue(ctx, true, func(q kgdb.Store) error {
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
	})
}

func (a *app) queuePriority(ctx context.Context, fs *pflag.FlagSet, _ struct{}) error {
	if fs.NArg() < 2 {
		return usagef("queue priority takes a PRIORITY and one or more ITEM_IDs")
	}
	priority, err := kgdb.ParsePriority("PRIORITY", fs.Arg(0))
	if err != nil {
		return err
	}
	itemIDs, err := kgdb.ParseIDs("ITEM_ID", fs.Args()[1:])
	if err != nil {
		return err
	}
	return a.queueAction(ctx, func(q kgdb.Store) (string, error) {
		n, err := q.SetPriority(ctx, priority, itemIDs...)
		return fmt.Sprintf("%d item(s) now at priority %d", n, priority), err
	})
}

func (a *app) queueDelete(ctx context.Context, fs *pflag.FlagSet, _ struct{}) error {
	if fs.NArg() == 0 {
		return usagef("queue delete takes one or more ITEM_IDs")
	}
	itemIDs, err := kgdb.ParseIDs("ITEM_ID", fs.Args())
	if err != nil {
		return err
	}
	return a.queueAction(ctx, func(q kgdb.Store) (string, error) {
		n, err := q.Delete(ctx, itemIDs...)
		return fmt.Sprintf("%d item(s) deleted", n), err
	})
}

// queueRequeueOptions are queue requeue's flags.
type queueRequeueOptions struct {
	priority *int
	all      *bool
}

func queueRequeueFlags(fs *pflag.FlagSet) queueRequeueOptions {
	return queueRequeueOptions{
		priority: queueEnqueueFlags(fs),
		all:      fs.Bool("all", false, "every document whose latest item is completed, failed or skipped, instead of CONTENT_IDs"),
	}
}

func (a *app) queueRequeue(ctx context.Context, fs *pflag.FlagSet, o queueRequeueOptions) error {
	switch {
	case *o.all && fs.NArg() > 0:
		return usagef("queue requeue takes CONTENT_IDs or --all, not both")
	case !*o.all && fs.NArg() == 0:
		return usagef("queue requeue takes one or more crawled_content ids, or --all")
	}
	if err := kgdb.CheckPriority("priority", *o.priority); err != nil {
		return err
	}
	if *o.all {
		return a.queueAction(ctx, func(q kgdb.Store) (string, error) {
			n, err := q.RequeueAll(ctx, *o.priority)
			return fmt.Sprintf("%d document(s) queued again", n), err
		})
	}
	contentIDs, err := kgdb.ParseIDs("CONTENT_ID", fs.Args())
	if err != nil {
		return err
	}
	return a.queueAction(ctx, func(q kgdb.Store) (string, error) {
		n, err := q.Requeue(ctx, *o.priority, contentIDs...)
		return fmt.Sprintf("%d document(s) queued again (%d already pending or processing)", n, len(contentIDs)-n), err
	})
}

// queueClearFlagValues are queue clear's flags.
type queueClearFlagValues struct {
	status, olderThan *string
	yes               *bool
}

func queueClearFlags(fs *pflag.FlagSet) *queueClearFlagValues {
	return &queueClearFlagValues{
		status:    fs.String("status", "", "the status to clear: pending, completed, failed or skipped (required)"),
		olderThan: fs.String("older-than", "", "clear only items that reached the status longer ago than this: days (7d) or a duration (36h)"),
		yes:       fs.Bool("yes", false, yesFlagHelp),
	}
}

func (a *app) queueClear(ctx context.Context, fs *pflag.FlagSet, f *queueClearFlagValues) error {
	st, err := kgdb.ParseClearStatus("status", *f.status)
	if err != nil {
		return err
	}
	if *f.olderThan != "" {
		age, err := kgdb.ParseAge("older_than", *f.olderThan)
		if err != nil {
			return err
		}
		if err := a.confirm(*f.yes, fmt.Sprintf("Delete every %s item of the KG queue older than %s?", st, *f.olderThan)); err != nil {
			return err
		}
		return a.queueAction(ctx, func(q kgdb.Store) (string, error) {
			n, err := q.ClearOlderThan(ctx, st, age)
			return fmt.Sprintf("%d %s item(s) older than %s deleted", n, st, *f.olderThan), err
		})
	}
	if err := a.confirm(*f.yes, fmt.Sprintf("Delete every %s item of the KG queue?", st)); err != nil {
		return err
	}
	return a.queueAction(ctx, func(q kgdb.Store) (string, error) {
		n, err := q.Clear(ctx, st)
		return fmt.Sprintf("%d %s item(s) deleted", n, st), err
	})
}

// queueAction runs one change to the queue and prints what it did.
func (a *app) queueAction(ctx context.Context, do func(q kgdb.Store) (string, error)) error {
	return a.withQueue(ctx, false, func(q kgdb.Store) error {
		msg, err := do(q)
		if err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, msg)
		return nil
	})
}

// queueMigrateFlagValues are queue migrate's flags.
type queueMigrateFlagValues struct {
	to     *string
	asJSON *bool
}

func queueMigrateFlags(fs *pflag.FlagSet) *queueMigrateFlagValues {
	return &queueMigrateFlagValues{
		to:     fs.String("to", "", "the empty PostgreSQL database to copy the queue into (default kg.db_url): postgres://USER@HOST:PORT/DATABASE; the password from PGPASSWORD, PGPASSFILE (~/.pgpass) or PGSERVICE"),
		asJSON: fs.Bool("json", false, "print JSON"),
	}
}

// queueMigrate copies the SQLite queue at kg.db_path into the PostgreSQL
// database of --to, kg.db_url by default: documents, chunks, results, queue
// and worker reports, in one transaction, counts compared, the file left as
// it was. The connection honours libpq's own sources (PGPASSWORD, the
// password file, PGSERVICE), so no password need be on the command line. As
// root it reads the file as the service user, as every queue command does,
// and hands the child the resolved URL over the pipe.
func (a *app) queueMigrate(ctx context.Context, fs *pflag.FlagSet, f *queueMigrateFlagValues) error {
	if *f.to != "" {
		if err := config.CheckKG("db_url", "--to", &config.KG{DBURL: *f.to}); err != nil {
			return err
		}
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	to := *f.to
	if to == "" {
		to = cfg.KG.DBURL
	}
	if to == "" {
		return usagef("queue migrate needs the database to copy the queue into: --to postgres://USER@HOST:PORT/DATABASE, or kg.db_url in %s", cfg.Path)
	}
	report, err := queueAccess().CopyConfigured(ctx, a.paths, cfg.KG.DBPath, to)
	if err != nil {
		return err
	}
	report.Target = config.RedactURL(to) // as given, not as resolved
	if *f.asJSON {
		return writeJSON(a.stdout, report)
	}
	return textview.Copied(a.stdout, report, cfg.Path)
}
