package queue

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// openFile makes a SQLite queue in a file of its own and returns it and a
// second database handle on the same file, standing for another program.
func openFile(t *testing.T, opts ...Option) (*Queue, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "q.db")
	dsn := "file:" + path + "?_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	if err := Migrate(ctx, db, []Migration{
		{Version: 1, Name: "queue", Apply: CreateTable},
		{Version: 2, Name: "leases", Apply: AddLeaseColumns},
	}); err != nil {
		t.Fatal(err)
	}
	q, err := New(db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return q, other
}

// fakeChanges is a file watch the test signals by hand.
type fakeChanges chan struct{}

func (f fakeChanges) changed() <-chan struct{} { return f }
func (f fakeChanges) close() error             { return nil }

func enqueueRaw(db *sql.DB) error {
	_, err := db.Exec(`INSERT INTO kg_processing_queue(content_id, status) VALUES (1, 'pending')`)
	return err
}

// TestWaitForWorkWithoutFileWatch: where the kernel cannot watch the
// files (here: its limit of watches reached), a waiter still notices a
// commit of another connection, by looking every change check interval.
func TestWaitForWorkWithoutFileWatch(t *testing.T) {
	q, other := openFile(t, WithChangeCheck(20*time.Millisecond))
	tried := 0
	q.watchFiles = func(string) (fileChanges, error) {
		tried++
		return nil, syscall.ENOSPC
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		if err := enqueueRaw(other); err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	ok, err := q.WaitForWork(context.Background(), 10*time.Second)
	took := time.Since(start)
	if err != nil || !ok || took > 2*time.Second {
		t.Fatalf("WaitForWork = %v, %v after %s; want true within 2s", ok, err, took)
	}
	if tried != 1 {
		t.Errorf("file watch tried %d times, want 1", tried)
	}
	if err := q.FileWatchErr(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("FileWatchErr() = %v, want %v", err, syscall.ENOSPC)
	}
}

// TestWaitForWorkLooksAgainAfterAnEarlyChange: the kernel reports the
// write of a commit's last frame a moment before the commit is visible; a
// waiter that looked once, too early, and then saw no further change must
// still wake, well before its fallback and its timeout.
func TestWaitForWorkLooksAgainAfterAnEarlyChange(t *testing.T) {
	q, other := openFile(t, WithChangeCheck(time.Hour))
	changes := make(fakeChanges, 1)
	watching := make(chan struct{})
	q.watchFiles = func(string) (fileChanges, error) {
		close(watching)
		return changes, nil
	}
	go func() {
		<-watching
		time.Sleep(50 * time.Millisecond)
		changes <- struct{}{}
		time.Sleep(4 * time.Millisecond)
		if err := enqueueRaw(other); err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	ok, err := q.WaitForWork(context.Background(), 10*time.Second)
	took := time.Since(start)
	if err != nil || !ok || took > time.Second {
		t.Fatalf("WaitForWork = %v, %v after %s; want true within 1s", ok, err, took)
	}
}

// TestWaitForWorkWatchesTheFiles: with the files watched and the fallback
// an hour away, a commit of another connection wakes the waiter at once,
// and a waiter with nothing to do waits out its timeout.
func TestWaitForWorkWatchesTheFiles(t *testing.T) {
	q, other := openFile(t, WithChangeCheck(time.Hour))
	start := time.Now()
	ok, err := q.WaitForWork(context.Background(), 300*time.Millisecond)
	if err := q.FileWatchErr(); err != nil {
		t.Errorf("FileWatchErr() = %v, want nil", err)
	}
	if took := time.Since(start); err != nil || ok || took < 300*time.Millisecond {
		t.Fatalf("idle WaitForWork = %v, %v after %s; want false after 300ms", ok, err, took)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		if err := enqueueRaw(other); err != nil {
			t.Error(err)
		}
	}()
	start = time.Now()
	ok, err = q.WaitForWork(context.Background(), 10*time.Second)
	took := time.Since(start)
	if err != nil || !ok || took > time.Second {
		t.Fatalf("WaitForWork = %v, %v after %s; want true within 1s", ok, err, took)
	}
}
