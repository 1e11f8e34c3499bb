package queue

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// defaultChangeCheck is how often WaitForWork looks at an SQLite
// database's data_version when it cannot watch the database's files.
const defaultChangeCheck = 50 * time.Millisecond

// The delays after a change to the files at which WaitForWork looks at
// data_version again. The kernel reports the write of the last WAL frame a
// moment before SQLite marks the commit in the shared-memory index (which
// no file event reports), so a look right after the event can come too
// early; looking again a few times, sooner first, catches the commit with
// no look at all while nothing is written.
const (
	firstRecheck = time.Millisecond
	lastRecheck  = 32 * time.Millisecond
)

// WithChangeCheck sets how often WaitForWork looks at an SQLite database's
// data_version when it does not watch the database's files: when the
// kernel cannot watch them (no inotify, or its limit of watches reached),
// or when WithoutFileWatch says so. The default is 50ms.
func WithChangeCheck(every time.Duration) Option {
	return func(q *Queue) { q.changeCheck = every }
}

// WithoutFileWatch makes WaitForWork on SQLite look at data_version every
// WithChangeCheck interval instead of waiting for the kernel to report a
// change to the database's files: the way of earlier releases, kept as the
// benchmark's baseline.
func WithoutFileWatch() Option {
	return func(q *Queue) { q.watchFiles = nil }
}

// fileChanges reports changes to files. watchFiles returns one, or an
// error when the files cannot be watched.
type fileChanges interface {
	// changed receives a value after a change to a watched file.
	changed() <-chan struct{}
	close() error
}

// dbFiles returns the files SQLite keeps the database at path in: the
// database, its write-ahead log and its rollback journal.
func dbFiles(path string) []string {
	return []string{path, path + "-wal", path + "-journal"}
}

// watchDBFiles watches the files of the SQLite database at path. It
// watches their directory, which reports writes to each file in it and the
// write-ahead log appearing and disappearing at checkpoints with one
// watch, where a watch on the log itself would end with the log.
func watchDBFiles(path string) (fileChanges, error) {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", filepath.Dir(path), err)
	}
	d := &dirWatch{w: w, names: map[string]bool{}, ch: make(chan struct{}, 1), done: make(chan struct{})}
	for _, f := range dbFiles(path) {
		d.names[filepath.Base(f)] = true
	}
	go d.run()
	return d, nil
}

type dirWatch struct {
	w     *fsnotify.Watcher
	names map[string]bool
	ch    chan struct{}
	done  chan struct{}
}

func (d *dirWatch) run() {
	defer close(d.done)
	for {
		select {
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			if ev.Op != fsnotify.Chmod && d.names[filepath.Base(ev.Name)] {
				d.signal()
			}
		case _, ok := <-d.w.Errors:
			if !ok {
				return
			}
			// An overflow of the kernel's queue loses events: treat it
			// as a change, which costs one look.
			d.signal()
		}
	}
}

func (d *dirWatch) signal() {
	select {
	case d.ch <- struct{}{}:
	default:
	}
}

func (d *dirWatch) changed() <-chan struct{} { return d.ch }

func (d *dirWatch) close() error {
	err := d.w.Close()
	<-d.done
	return err
}

// FileWatchErr returns why the last wait for work on SQLite could not have
// the kernel watch the database's files, and so looked for commits every
// WithChangeCheck interval instead; nil when it could, before the first
// wait, on PostgreSQL and with WithoutFileWatch.
func (q *Queue) FileWatchErr() error {
	if err := q.watchErr.Load(); err != nil {
		return *err
	}
	return nil
}

// dbPath returns the file of conn's main database, "" for one in memory.
func dbPath(ctx context.Context, conn *sql.Conn) (string, error) {
	rows, err := conn.QueryContext(ctx, "PRAGMA database_list")
	if err != nil {
		return "", err
	}
	defer rows.Close()
	for rows.Next() {
		var seq int
		var name, file string
		if err := rows.Scan(&seq, &name, &file); err != nil {
			return "", err
		}
		if name == "main" {
			return file, nil
		}
	}
	return "", rows.Err()
}

// waitChanged is WaitForWork on SQLite: it watches the database's files
// and looks at data_version on each change they report, or looks every
// changeCheck when it cannot watch them.
func (q *Queue) waitChanged(ctx context.Context) (bool, error) {
	// data_version is only comparable on one connection, so hold one.
	conn, err := q.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	// Watch before the first look, so that no commit falls between them.
	var changes <-chan struct{}
	if q.watchFiles != nil {
		path, err := dbPath(ctx, conn)
		if err != nil {
			return false, err
		}
		if path != "" {
			w, err := q.watchFiles(path)
			q.watchErr.Store(&err)
			if err == nil {
				// Closing an inotify instance waits for the kernel to
				// retire its watches, ~10ms: not on the way to the work.
				defer func() { go w.close() }()
				changes = w.changed()
			}
		}
	}
	version, err := dataVersion(ctx, conn)
	if err != nil {
		return false, err
	}
	if ok, err := q.workDue(ctx, conn); err != nil || ok {
		return ok, err
	}
	// With the files watched, look only after a change and a few times
	// shortly after it; without, look every changeCheck.
	var look <-chan time.Time
	var recheck *time.Timer
	delay := firstRecheck
	if changes == nil {
		tick := time.NewTicker(q.changeCheck)
		defer tick.Stop()
		look = tick.C
	} else {
		recheck = time.NewTimer(time.Hour)
		recheck.Stop()
		defer recheck.Stop()
		look = recheck.C
	}
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-changes:
			delay = firstRecheck
		case <-look:
			if recheck != nil {
				delay *= 2
			}
		}
		if recheck != nil {
			if delay <= lastRecheck {
				recheck.Reset(delay)
			}
		}
		v, err := dataVersion(ctx, conn)
		if err != nil {
			return false, err
		}
		if v == version {
			continue
		}
		version = v
		ok, err := q.workDue(ctx, conn)
		if err != nil || ok {
			return ok, err
		}
	}
}
