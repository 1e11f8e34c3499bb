package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kato-manager/kato-manager/queue"
)

// TestWriteTransactionsTakeTurns: a write transaction holds the lock file
// beside the SQLite database for as long as it runs, and one that finds
// the file locked, by any process, waits for it before it begins.
func TestWriteTransactionsTakeTurns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := queue.Migrate(context.Background(), db, []queue.Migration{{Version: 1, Name: "queue", Apply: queue.CreateTable}}); err != nil {
		t.Fatal(err)
	}
	q, err := queue.New(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	ctx := context.Background()

	// Another process's view of the lock file: an open file of its own.
	var other *os.File
	err = q.WithTx(ctx, func(tx *sql.Tx) error {
		var err error
		if other, err = os.OpenFile(path+queue.WriterLockSuffix, os.O_RDWR, 0); err != nil {
			return err
		}
		if err := unix.Flock(int(other.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			return errors.New("the lock file is free while a write transaction runs")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })

	if err := unix.Flock(int(other.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("the lock file is still locked after the transaction: %v", err)
	}
	began := make(chan time.Time, 1)
	go func() {
		q.WithTx(ctx, func(tx *sql.Tx) error { began <- time.Now(); return nil }) //nolint:errcheck
	}()
	const held = 300 * time.Millisecond
	time.Sleep(held)
	unlocked := time.Now()
	if err := unix.Flock(int(other.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-began:
		if at.Before(unlocked) {
			t.Errorf("a write transaction began %s before the lock file was free", unlocked.Sub(at))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no write transaction began after the lock file was free")
	}
}
