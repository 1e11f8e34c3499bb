package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
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

// openQueueDB opens the queue database of cfg for this process, as root
// through the helper running as the service user
// (kgdb.Access.OpenConfigured).
func openQueueDB(ctx context.Context, cfg *config.Config, paths config.Paths, readOnly bool) (kgdb.Store, error) {
	return queueAccess().OpenConfigured(ctx, &cfg.KG, paths, readOnly)
}

// queueDBCommand is the hidden command of the helper side.
func (a *app) queueDBCommand() *cobra.Command {
	cmd := noArgs("", command(queueDBCommand, "do the queue work of root's commands as the service user", noFlags, a.serveQueueDB))
	cmd.Hidden = true
	return cmd
}

// serveQueueDB is the helper side: `kato-manager __queue-db`, run as the
// service user by kato-queue@.service on a connection, or by
// kgdb.Access.Start on pipes.
func (a *app) serveQueueDB(ctx context.Context, fs *pflag.FlagSet, _ struct{}) error {
	if os.Geteuid() == 0 {
		return usagef("%s does the queue work of root's commands and must not run as root", queueDBCommand)
	}
	return kgdb.Serve(ctx, a.stdin, a.stdout, kgdb.ServeOptions{Grace: queueChildGrace, Hook: queueOpHook})
}
