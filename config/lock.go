package config

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sys/unix"
)

// DefaultLockTimeout is how long a registry lock is waited for when
// RegistryFile.LockTimeout is zero: longer than any start waits for its
// processor, so that a queue of operations drains instead of failing.
const DefaultLockTimeout = 2 * time.Minute

// ErrLockTimeout is wrapped by the error returned when a registry lock is
// not free within the lock timeout. The message names the holder.
var ErrLockTimeout = errors.New("registry lock not free")

// LockOperations takes the operation lock, which serialises every command
// that changes instances (start, stop, restart, gc): each reads the registry
// and systemd only once it holds the lock, so a repair never works from a
// picture taken before another operation finished. Read-only commands take
// no lock. release gives the lock back; a process that dies releases it too.
func (f *RegistryFile) LockOperations(ctx context.Context) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
		return nil, fmt.Errorf("create registry directory: %w", err)
	}
	lock, err := f.lock(ctx, f.Path+".op.lock")
	if err != nil {
		return nil, err
	}
	return func() { lock.Close() }, nil
}

// lock opens the lock file at path and takes an exclusive lock on it, waiting
// at most the lock timeout and reporting the holder to OnLockWait once.
func (f *RegistryFile) lock(ctx context.Context, path string) (*os.File, error) {
	lock, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	timeout := f.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	waited := false
	_, err = backoff.Retry(ctx, func() (struct{}, error) {
		err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil && !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(lockBackOff()), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(error, time.Duration) {
		if !waited && f.OnLockWait != nil {
			f.OnLockWait(path, lockHolder(lock))
		}
		waited = true
	}))
	switch {
	case err == nil:
		return lock, nil
	case ctx.Err() != nil:
		holder := lockHolder(lock)
		lock.Close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: %s is held by %s; gave up after %s (wait for it to finish, or stop it)", ErrLockTimeout, path, holder, timeout)
		}
		return nil, fmt.Errorf("lock %s held by %s: %w", path, holder, ctx.Err())
	default:
		lock.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
}

// lockBackOff is the wait between tries for a held lock: 5ms, doubling up
// to 200ms, without jitter.
func lockBackOff() backoff.BackOff {
	return &backoff.ExponentialBackOff{InitialInterval: 5 * time.Millisecond, Multiplier: 2, MaxInterval: 200 * time.Millisecond}
}

// openLockFile opens or creates a lock file that only its owner can open, so
// that no other user can hold it: mode 0600, never through a symbolic link,
// and only a regular file owned by this process's user. A lock file left by
// an older version with a wider mode is narrowed.
func openLockFile(path string) (*os.File, error) {
	lock, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(lock.Fd()), &st); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	switch {
	case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
		lock.Close()
		return nil, fmt.Errorf("open lock %s: not a regular file; remove it", path)
	case int(st.Uid) != os.Geteuid():
		lock.Close()
		return nil, fmt.Errorf("open lock %s: owned by uid %d, not by uid %d; remove it", path, st.Uid, os.Geteuid())
	case st.Mode&0o777 != 0o600:
		if err := lock.Chmod(0o600); err != nil {
			lock.Close()
			return nil, fmt.Errorf("open lock %s: %w", path, err)
		}
	}
	return lock, nil
}

// lockHolder names the process holding a lock on the file lock is open on,
// from /proc/locks: "pid 123 (kato-manager start --id a)".
func lockHolder(lock *os.File) string {
	const unknown = "another process"
	var st syscall.Stat_t
	if err := syscall.Fstat(int(lock.Fd()), &st); err != nil {
		return unknown
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return unknown
	}
	pid := holderPID(data, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, os.Getpid())
	if pid == 0 {
		return unknown
	}
	desc := "pid " + strconv.Itoa(pid)
	if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(cmd) > 0 {
		desc += " (" + strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))) + ")"
	}
	return desc
}

// holderPID finds in the text of /proc/locks the pid holding (not waiting
// for) a lock on the inode ino of device major:minor, other than self. On an
// overlay, /proc/locks names the device of the layer below; then a lock on
// the same inode number, if only one process holds such, is taken.
func holderPID(locks []byte, major, minor uint32, ino uint64, self int) int {
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	suffix := ":" + strconv.FormatUint(ino, 10)
	byInode := map[int]bool{}
	sc := bufio.NewScanner(bytes.NewReader(locks))
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have
		// "->" after the number.
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] == "->" {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil || pid <= 0 || pid == self {
			continue
		}
		if fields[5] == want {
			return pid
		}
		if strings.HasSuffix(fields[5], suffix) {
			byInode[pid] = true
		}
	}
	if len(byInode) == 1 {
		for pid := range byInode {
			return pid
		}
	}
	return 0
}
