package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/units"
)

// queueDBCommand is the hidden command the helper runs: the same binary,
// re-executed as the kato user.
const queueDBCommand = kgdb.HelperCommand

// serviceUser is who does root's database work; tests change it.
var serviceUser = config.ServiceUser

// queueSocket is where kato-queue.socket listens; tests change it.
var queueSocket = units.QueueSocketPath

// queueCallDeadline bounds one call to the helper; tests shorten it.
var queueCallDeadline = kgdb.DefaultCallDeadline

// queueChildGrace is the helper's time to close; tests shorten it.
var queueChildGrace = kgdb.DefaultGrace

// queueOpHook, when set, runs in the helper before each request; tests use
// it to make the helper slow.
var queueOpHook func(db, op string)

// queueAccess is how this process reaches the database as the service user.
func queueAccess() kgdb.Access {
	return kgdb.Access{User: serviceUser, Socket: queueSocket, CallDeadline: queueCallDeadline, Grace: queueChildGrace}
}

// openQueueDB opens the queue database of cfg for this process: directly,
// with its own rights, or, when running as root in a scope whose workers
// run as kato (the system's; in the user scope the database is the user's
// own), as the kato user. The database lives in a directory kato owns, so
// root never opens it itself: it does its database work in a helper
// running as kato (kgdb.Access), which can reach only what kato can: an
// instance of kato-queue@.service, which systemd starts for each
// connection to kato-queue.socket, or, where that socket is not installed,
// a child process. A PostgreSQL queue (kg.db_url) is reached as kato too:
// the server knows the workers' user, and a socket URL with peer
// authentication lets in only that user. The URL, resolved with root's own
// libpq settings (PGPASSWORD, PGSERVICE, ~/.pgpass), goes to the helper in
// its first request.
func openQueueDB(ctx context.Context, cfg *config.Config, paths config.Paths, readOnly bool) (kgdb.Store, error) {
	if os.Geteuid() != 0 || paths.FileOwner == "" {
		q, err := kgdb.OpenFor(ctx, cfg.KG.Database(), cfg.KG.MaxRetries, readOnly, paths.MakeStateDir)
		if err != nil {
			return nil, err
		}
		return kgdb.NewLocal(q), nil
	}
	open := kgdb.Request{Op: "open", MaxRetries: cfg.KG.MaxRetries, ReadOnly: readOnly}
	if cfg.KG.DBURL == "" {
		open.DB = cfg.KG.DBPath
	} else {
		dbURL, err := queue.ResolveURL(cfg.KG.DBURL, serviceUser)
		if err != nil {
			return nil, fmt.Errorf("kg.db_url: %w", err)
		}
		open.URL = dbURL
	}
	return queueAccess().Start(ctx, open)
}

// queueDBCommand is the hidden command of the helper side.
func (a *app) queueDBCommand() *cobra.Command {
	cmd := command(queueDBCommand, "do the queue work of root's commands as the service user", func(*pflag.FlagSet) struct{} { return struct{}{} }, a.serveQueueDB)
	cmd.Hidden = true
	return cmd
}

// serveQueueDB is the helper side: `kato-manager __queue-db`, run as the
// service user by kato-queue@.service on a connection, or by
// kgdb.Access.Start on pipes.
func (a *app) serveQueueDB(ctx context.Context, fs *pflag.FlagSet, _ struct{}) error {
	if fs.NArg() > 0 {
		return usagef("%s takes no arguments", queueDBCommand)
	}
	if os.Geteuid() == 0 {
		return usagef("%s does the queue work of root's commands and must not run as root", queueDBCommand)
	}
	return kgdb.Serve(ctx, a.stdin, a.stdout, kgdb.ServeOptions{Grace: queueChildGrace, Hook: queueOpHook})
}
