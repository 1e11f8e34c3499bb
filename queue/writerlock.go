package queue

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// WriterLockSuffix is added to a SQLite database's path to name the file
// whose lock the queue's write transactions take turns on (see WithTx).
const WriterLockSuffix = "-writer"

// writerLockWait bounds how long a write transaction waits for its turn
// before it goes ahead without one, to SQLite's own busy handling: the
// holder may be stuck, and a turn only orders writers, it protects nothing.
const writerLockWait = 5 * time.Second

// writerLock makes the write transactions on one SQLite file take turns:
// among this handle's connections, and among every handle and process that
// opened the same file through this package, by an exclusive flock on the
// file beside it. A writer that finds SQLite's write lock taken is put to
// sleep by SQLite's busy handler for 1, 2, 5, 10… ms whether the holder
// finishes sooner or not; waiting in the kernel for the holder's turn to
// end instead wakes it as soon as it does. SQLite's locks still guard
// every change: writers that do not take turns (another program, an old
// worker) are waited for by the busy timeout as before.
type writerLock struct {
	// turn is this handle's own queue: one of its transactions at a time
	// holds the file's lock, which belongs to the open file, not to a
	// goroutine.
	turn chan struct{}
	// file is the lock file, nil when it cannot be opened: then turns are
	// only taken within the handle.
	file *os.File
}

// newWriterLock returns the turns of db's write transactions. The lock
// file is opened for writing: only a user who may write it takes turns
// with the writers, so that a reader cannot hold them up. Without it (a
// database in memory, a directory or file this user may not write, a lock
// file not to be trusted) turns are taken within the handle only.
//
// The database's directory belongs to its owner, who may put anything
// there under the lock file's name. So the file is never followed through
// a symbolic link, and only a regular file with one link, owned by the
// database's owner or root, is used. Root never creates the file nor
// changes its owner: the owner's workers create it.
func newWriterLock(db *sql.DB) *writerLock {
	l := &writerLock{turn: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), writerLockWait)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return l
	}
	defer conn.Close()
	path, err := dbPath(ctx, conn)
	if err != nil || path == "" {
		return l
	}
	l.file = openWriterLockFile(path)
	return l
}

// openWriterLockFile opens the lock file beside the database at path, or
// returns nil when there is none to trust (see newWriterLock).
func openWriterLockFile(path string) *os.File {
	var db unix.Stat_t
	if unix.Stat(path, &db) != nil {
		return nil
	}
	flags := unix.O_RDWR | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	if os.Geteuid() != 0 {
		flags |= unix.O_CREAT
	}
	name := path + WriterLockSuffix
	fd, err := unix.Open(name, flags, 0o600)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 ||
		(st.Uid != db.Uid && st.Uid != 0) {
		unix.Close(fd) //nolint:errcheck // nothing was written
		return nil
	}
	return os.NewFile(uintptr(fd), name)
}

// lock waits for this transaction's turn and returns what ends it. It
// never fails: without a turn within writerLockWait or before ctx ends, the
// transaction goes ahead and SQLite's busy handling applies.
func (l *writerLock) lock(ctx context.Context) (unlock func()) {
	select {
	case l.turn <- struct{}{}:
	case <-ctx.Done():
		return func() {}
	}
	release := func() { <-l.turn }
	if l.file == nil {
		return release
	}
	fd := int(l.file.Fd())
	unlockFile := func() {
		unix.Flock(fd, unix.LOCK_UN) //nolint:errcheck // closing the file would release it too
		release()
	}
	err := flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return unlockFile
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return release
	}
	got := make(chan error, 1)
	go func() { got <- flock(fd, unix.LOCK_EX) }()
	timer := time.NewTimer(writerLockWait)
	defer timer.Stop()
	select {
	case err := <-got:
		if err != nil {
			return release
		}
		return unlockFile
	case <-ctx.Done():
	case <-timer.C:
	}
	// Give up the wait, not the turn: the kernel grants the lock later,
	// and then it is handed straight back.
	go func() {
		if <-got == nil {
			unlockFile()
			return
		}
		release()
	}()
	return func() {}
}

// flock is unix.Flock, tried again when a signal interrupts it.
func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// close waits for the turn in progress and closes the lock file. A turn
// still waited for in the kernel after writerLockWait keeps the file open:
// its descriptor must not be reused under it.
func (l *writerLock) close() {
	if l.file == nil {
		return
	}
	timer := time.NewTimer(writerLockWait)
	defer timer.Stop()
	select {
	case l.turn <- struct{}{}:
	case <-timer.C:
		return
	}
	l.file.Close()
	l.file = nil
	<-l.turn
}
