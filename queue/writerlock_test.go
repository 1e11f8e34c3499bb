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
	if os.Geteuid() == 0 {
		// Root does not create the lock file: the database's owner does.
		if err := os.WriteFile(path+queue.WriterLockSuffix, nil, 0o600); err != nil {
			t.Fatal(err)
		}
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

// TestRootTrustsNoPlantedWriterLock: the database's directory belongs to
// its owner, who may put anything under the lock file's name. Root
// neither follows nor creates nor chowns a symbolic link planted there,
// and takes no turns on a hard link or on a file another user owns.
func TestRootTrustsNoPlantedWriterLock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own files as another user")
	}
	const owner, stranger = 65534, 12345
	ctx := context.Background()
	// setup makes a database owned by owner in a directory owned by owner,
	// lets plant put something under the lock file's name, and returns a
	// queue root opened on it with one write transaction done.
	setup := func(t *testing.T, plant func(lockPath string)) (dbPath string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "kg.db")
		db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if err := queue.Migrate(ctx, db, []queue.Migration{{Version: 1, Name: "queue", Apply: queue.CreateTable}}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{dir, path} {
			if err := os.Chown(p, owner, owner); err != nil {
				t.Fatal(err)
			}
		}
		plant(path + queue.WriterLockSuffix)
		q, err := queue.New(db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		if err := q.WithTx(ctx, func(tx *sql.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
		return path
	}
	rootFile := func(t *testing.T) string {
		target := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(target, []byte("root's\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return target
	}
	unchanged := func(t *testing.T, target string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(target, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s now belongs to %d:%d", target, st.Uid, st.Gid)
		}
		if data, _ := os.ReadFile(target); string(data) != "root's\n" {
			t.Errorf("%s now holds %q", target, data)
		}
	}
	// notLockedDuringTx: a write transaction takes no turn on name.
	notLockedDuringTx := func(t *testing.T, dbPath, name string) {
		t.Helper()
		db, err := sql.Open("sqlite3", "file:"+dbPath+"?_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		q, err := queue.New(db)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		err = q.WithTx(ctx, func(tx *sql.Tx) error {
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
				return errors.New("a write transaction took its turn on " + name)
			}
			return unix.Flock(int(f.Fd()), unix.LOCK_UN)
		})
		if err != nil {
			t.Error(err)
		}
	}

	t.Run("symlink to a file", func(t *testing.T) {
		target := rootFile(t)
		path := setup(t, func(lock string) {
			if err := os.Symlink(target, lock); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(lock, owner, owner); err != nil {
				t.Fatal(err)
			}
		})
		unchanged(t, target)
		notLockedDuringTx(t, path, target)
	})
	t.Run("symlink to no file", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "made")
		setup(t, func(lock string) {
			if err := os.Symlink(target, lock); err != nil {
				t.Fatal(err)
			}
		})
		if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("root created %s through a symbolic link: %v", target, err)
		}
	})
	t.Run("no file", func(t *testing.T) {
		path := setup(t, func(string) {})
		if _, err := os.Lstat(path + queue.WriterLockSuffix); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("root created the lock file: %v", err)
		}
	})
	t.Run("hard link", func(t *testing.T) {
		target := rootFile(t)
		path := setup(t, func(lock string) {
			if err := os.Link(target, lock); err != nil {
				t.Fatal(err)
			}
		})
		unchanged(t, target)
		notLockedDuringTx(t, path, target)
	})
	t.Run("another user's file", func(t *testing.T) {
		path := setup(t, func(lock string) {
			if err := os.WriteFile(lock, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(lock, stranger, stranger); err != nil {
				t.Fatal(err)
			}
		})
		var st unix.Stat_t
		if err := unix.Stat(path+queue.WriterLockSuffix, &st); err != nil || st.Uid != stranger {
			t.Errorf("the lock file's owner changed: %v %d", err, st.Uid)
		}
		notLockedDuringTx(t, path, path+queue.WriterLockSuffix)
	})
	t.Run("the owner's file", func(t *testing.T) {
		path := setup(t, func(lock string) {
			if err := os.WriteFile(lock, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(lock, owner, owner); err != nil {
				t.Fatal(err)
			}
		})
		db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		q, err := queue.New(db)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		f, err := os.Open(path + queue.WriterLockSuffix)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		err = q.WithTx(ctx, func(tx *sql.Tx) error {
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
				return errors.New("a write transaction took no turn on the owner's lock file")
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
}
