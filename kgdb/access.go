package kgdb

import (
	"context"
	"fmt"
	"os"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/queue"
)

// throughHelper reports whether this process does its database work
// through the helper: as root in a scope whose workers run as the service
// user (the system's; in the user scope the database is the user's own).
func throughHelper(paths config.Paths) bool {
	return os.Geteuid() == 0 && paths.FileOwner != ""
}

// OpenConfigured opens the KG database of kg for this process: directly,
// with its own rights, or, as root in the system's scope, as the service
// user. The database lives in a directory the service user owns, so root
// never opens it itself: it does its database work in a helper running as
// that user (a.Start), which can reach only what the user can: an instance
// of kato-queue@.service, which systemd starts for each connection to
// kato-queue.socket, or, where that socket is not installed, a child
// process. A PostgreSQL database (kg.db_url) is reached as the service
// user too: the server knows the workers' user, and a socket URL with
// peer authentication lets in only that user. The URL, resolved with
// root's own libpq settings (PGPASSWORD, PGSERVICE, ~/.pgpass), goes to
// the helper in its first request.
func (a Access) OpenConfigured(ctx context.Context, kg *config.KG, paths config.Paths, readOnly bool) (Store, error) {
	if !throughHelper(paths) {
		q, err := OpenFor(ctx, kg.Database(), kg.MaxRetries, readOnly, paths.MakeStateDir)
		if err != nil {
			return nil, err
		}
		return NewLocal(q), nil
	}
	open := Request{Op: "open", MaxRetries: kg.MaxRetries, ReadOnly: readOnly}
	if kg.DBURL == "" {
		open.DB = kg.DBPath
	} else {
		dbURL, err := queue.ResolveURL(kg.DBURL, a.User)
		if err != nil {
			return nil, fmt.Errorf("kg.db_url: %w", err)
		}
		open.URL = dbURL
	}
	return a.Start(ctx, open)
}

// CopyConfigured copies the SQLite database at dbPath into the empty
// PostgreSQL database to (CopyToPostgres): in this process, or, as root
// in the system's scope, in a helper running as the service user (Copy),
// handed the URL resolved with root's libpq settings.
func (a Access) CopyConfigured(ctx context.Context, paths config.Paths, dbPath, to string) (*CopyReport, error) {
	if !throughHelper(paths) {
		return CopyToPostgres(ctx, dbPath, to)
	}
	resolved, err := queue.ResolveURL(to, a.User)
	if err != nil {
		return nil, err
	}
	return a.Copy(ctx, dbPath, resolved)
}
