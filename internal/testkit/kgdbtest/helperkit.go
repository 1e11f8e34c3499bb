package kgdbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
)

// The helper kit: what the tests of root's access to the KG database
// share, in kgdb (kgdb.Access, kgdb.Serve) and in kato-manager (its queue
// commands as root). A test binary stands in for kato-manager's helper
// command (kgdb.HelperCommand) in its TestMain, with Hook and HelperGrace;
// a test runs as root against a queue directory like /var/lib/kato/kg
// that nobody, who plays the kato user, owns (DBDir), with forked helpers
// and through a stand-in for kato-queue.socket (Transports).

// GraceEnv shortens the grace of a helper a test starts.
const GraceEnv = "KATO_TEST_QUEUE_GRACE"

// SlowOp is how long each request takes in a helper on slow.db.
const SlowOp = 300 * time.Millisecond

// Hook is the helper's hook in a test binary (kgdb.ServeOptions.Hook): a
// database named slow.db makes the helper slow (SlowOp), one named hung.db
// makes it never answer, in every request but the first.
func Hook(db, op string) {
	if op == "open" || op == "ping" {
		return
	}
	switch filepath.Base(db) {
	case "slow.db":
		time.Sleep(SlowOp)
	case "hung.db":
		time.Sleep(time.Hour)
	}
}

// HelperGrace is the grace GraceEnv gives a helper; ok is false when it
// gives none.
func HelperGrace() (grace time.Duration, ok bool) {
	grace, err := time.ParseDuration(os.Getenv(GraceEnv))
	return grace, err == nil
}

// Vars are the test binary's settings of root's access to the helper
// (kgdb.Access's User and Socket), which the kit sets for a test and puts
// back when it ends.
type Vars struct {
	User   *string
	Socket *string
}

// Helpers are the helpers a test's commands started, and how: forked
// children, or the instances a stand-in for kato-queue.socket started.
type Helpers struct {
	// Socket is whether they come through the stand-in socket.
	Socket bool
	mu     sync.Mutex
	procs  []*os.Process
	exited map[int]chan struct{}
}

// Transports runs test with forked helpers, then through a stand-in for
// kato-queue.socket (StandInSocket). Each run has its own queue directory
// (DBDir).
func Transports(t *testing.T, v Vars, test func(t *testing.T, h *Helpers, kgDir string)) {
	t.Run("fork", func(t *testing.T) {
		kgDir := DBDir(t, v)
		test(t, &Helpers{}, kgDir)
	})
	t.Run("socket", func(t *testing.T) {
		kgDir := DBDir(t, v)
		test(t, StandInSocket(t, v), kgDir)
	})
}

// StandInSocket listens where v.Socket then points, and does what systemd
// does with kato-queue.socket's Accept=yes: per connection, a helper (this
// test binary, as kgdb.HelperCommand) running as nobody with the
// connection as its stdin and stdout, in a session of its own, with a
// grace of 1s. The helpers are killed when the test ends.
func StandInSocket(t *testing.T, v Vars) *Helpers {
	t.Helper()
	h := &Helpers{Socket: true, exited: map[int]chan struct{}{}}
	dir, err := os.MkdirTemp("", "kato-queue-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "queue.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old := *v.Socket
	*v.Socket = path
	var wg sync.WaitGroup
	t.Cleanup(func() {
		*v.Socket = old
		ln.Close()
		h.mu.Lock()
		for _, p := range h.procs {
			p.Kill() //nolint:errcheck // it may have exited
		}
		h.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			f, err := conn.File()
			conn.Close()
			if err != nil {
				t.Error(err)
				return
			}
			// As kgdb.Access.Start forks: the test binary's directory is
			// root's alone.
			cmd := exec.Command("/proc/self/exe", kgdb.HelperCommand)
			cmd.Stdin, cmd.Stdout = f, f
			cmd.Env = []string{GraceEnv + "=1s"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Setsid: true}
			err = cmd.Start()
			f.Close()
			if err != nil {
				t.Error(err)
				continue
			}
			done := make(chan struct{})
			h.mu.Lock()
			h.procs = append(h.procs, cmd.Process)
			h.exited[cmd.Process.Pid] = done
			h.mu.Unlock()
			wg.Go(func() { cmd.Wait(); close(done) }) //nolint:errcheck // killed ones too
		}
	})
	return h
}

// Started is how many helpers the socket started.
func (h *Helpers) Started() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.procs)
}

// PID returns the process of the helper c talks to; through the socket,
// the last one started (c may be nil then).
func (h *Helpers) PID(t *testing.T, c *kgdb.Helper) int {
	t.Helper()
	if !h.Socket {
		return c.PID()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.procs) == 0 || (c != nil && c.PID() != 0) {
		t.Fatal("no helper was started through the socket")
	}
	return h.procs[len(h.procs)-1].Pid
}

// Kill kills the helper c talks to, as the OOM killer or an operator might.
func (h *Helpers) Kill(t *testing.T, c *kgdb.Helper) {
	t.Helper()
	if err := syscall.Kill(h.PID(t, c), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// WaitExit waits up to timeout for the socket's helper pid to exit.
func (h *Helpers) WaitExit(pid int, timeout time.Duration) error {
	h.mu.Lock()
	done := h.exited[pid]
	h.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return errors.New("the helper still runs")
	}
}

// DBDir makes a directory tree like /var/lib/kato/kg: a root-owned,
// world-searchable parent and a queue directory owned by nobody, who
// plays the kato user, and returns the queue directory. It sets v's user
// to nobody and its socket to a path where none listens, so that helpers
// are forked unless StandInSocket says otherwise. It skips a test not run
// as root: the test is what root does.
func DBDir(t *testing.T, v Vars) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test is what root does")
	}
	old, oldSocket := *v.User, *v.Socket
	*v.User = "nobody"
	*v.Socket = filepath.Join(t.TempDir(), "no-queue.sock")
	t.Cleanup(func() { *v.User, *v.Socket = old, oldSocket })
	parent, err := os.MkdirTemp("", "kato-queue-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	kgDir := filepath.Join(parent, "kg")
	if err := os.Mkdir(kgDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(kgDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return kgDir
}

// StoreDocuments creates the SQLite database at path, as the service user
// (nobody) will find it, holding crawled_content rows with the given ids.
func StoreDocuments(t *testing.T, path string, contentIDs ...int64) {
	t.Helper()
	q, err := kgdb.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range contentIDs {
		if _, err := db.Exec("INSERT INTO crawled_content(id, url) VALUES (?, ?)", c, fmt.Sprintf("https://example.com/%d", c)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	q.Close()
	files, _ := filepath.Glob(path + "*")
	for _, f := range files {
		if err := os.Chown(f, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
}
