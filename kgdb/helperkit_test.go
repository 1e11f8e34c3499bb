package kgdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/queue"
	"golang.org/x/sys/unix"
)

// slowChildOp is how long each request takes in a child on slow.db.
const slowChildOp = 300 * time.Millisecond

// The helper's settings in this test binary; tests change them.
var (
	testUser     = "nobody"
	testSocket   = ""
	testDeadline = DefaultCallDeadline
	testGrace    = DefaultGrace
)

// testAccess is root's access as the tests set it.
func testAccess() Access {
	return Access{User: testUser, Socket: testSocket, CallDeadline: testDeadline, Grace: testGrace}
}

// TestMain lets the test binary stand in for kato-manager's helper command
// when Access.Start re-executes it: it then serves as the helper.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HelperCommand {
		// A database named slow.db or hung.db makes the helper slow, or
		// never answer, in every request but the first.
		hook := func(db, op string) {
			if op == "open" || op == "ping" {
				return
			}
			switch filepath.Base(db) {
			case "slow.db":
				time.Sleep(slowChildOp)
			case "hung.db":
				time.Sleep(time.Hour)
			}
		}
		grace, _ := time.ParseDuration(os.Getenv(testGraceEnv))
		if err := Serve(context.Background(), os.Stdin, os.Stdout, ServeOptions{Grace: grace, Hook: hook}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	pgtest.Main(m)
}

// testGraceEnv shortens the grace of a helper a test starts.
const testGraceEnv = "KATO_TEST_QUEUE_GRACE"

// helpers are the queue helpers a test's commands started, and how: forked
// children, or the instances a stand-in for kato-queue.socket started.
type helpers struct {
	socket bool
	mu     sync.Mutex
	procs  []*os.Process
	exited map[int]chan struct{}
}

// queueTransports runs test with forked children, then through a stand-in
// for kato-queue.socket that does what systemd does with Accept=yes: per
// connection, a helper running as the service user with the connection as
// its stdin and stdout, in a session of its own. Each run has its own
// queue directory (queueDirFor).
func queueTransports(t *testing.T, test func(t *testing.T, h *helpers, kgDir string)) {
	t.Run("fork", func(t *testing.T) {
		kgDir := dbDirFor(t)
		test(t, &helpers{}, kgDir)
	})
	t.Run("socket", func(t *testing.T) {
		kgDir := dbDirFor(t)
		test(t, standInSocket(t), kgDir)
	})
}

func standInSocket(t *testing.T) *helpers {
	t.Helper()
	h := &helpers{socket: true, exited: map[int]chan struct{}{}}
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
	old := testSocket
	testSocket = path
	var wg sync.WaitGroup
	t.Cleanup(func() {
		testSocket = old
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
			// As Access.Start forks: the test binary's directory is root's alone.
			cmd := exec.Command("/proc/self/exe", HelperCommand)
			cmd.Stdin, cmd.Stdout = f, f
			cmd.Env = []string{testGraceEnv + "=1s"}
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

// pid returns the process of the helper c talks to; through the socket, the
// last one started (c may be nil then).
func (h *helpers) pid(t *testing.T, c *Helper) int {
	t.Helper()
	if !h.socket {
		return c.PID()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.procs) == 0 || (c != nil && c.PID() != 0) {
		t.Fatal("no helper was started through the socket")
	}
	return h.procs[len(h.procs)-1].Pid
}

// kill kills the helper c talks to, as the OOM killer or an operator might.
func (h *helpers) kill(t *testing.T, c *Helper) {
	t.Helper()
	if err := syscall.Kill(h.pid(t, c), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits up to timeout for the socket's helper pid to exit.
func (h *helpers) waitExit(pid int, timeout time.Duration) error {
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

// dbDirFor makes a directory tree like /var/lib/kato/kg: a root-owned,
// world-searchable parent and a queue directory owned by nobody, who plays
// the kato user.
func dbDirFor(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test is what root does")
	}
	old, oldSocket := testUser, testSocket
	testUser = "nobody"
	// No kato-queue.socket: the child is forked.
	testSocket = filepath.Join(t.TempDir(), "no-queue.sock")
	t.Cleanup(func() { testUser, testSocket = old, oldSocket })
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

// storeDocuments creates the queue database at path, as the service user
// (nobody) will find it, holding crawled_content rows with the given ids.
func storeDocuments(t *testing.T, path string, contentIDs ...int64) {
	t.Helper()
	q, err := Open(context.Background(), path)
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

// TestReopeningQueueReplacesADeadChild: serve keeps answering /stats after
// its database child died.
func TestReopeningQueueReplacesADeadChild(t *testing.T) {
	queueTransports(t, reopeningQueueReplacesADeadChild)
}

func reopeningQueueReplacesADeadChild(t *testing.T, h *helpers, kgDir string) {
	ctx := context.Background()
	dbPath := filepath.Join(kgDir, "kg.db")
	open := func() (Store, error) {
		return testAccess().Start(ctx, Request{Op: "open", DB: dbPath, MaxRetries: 3})
	}
	storeDocuments(t, dbPath, 9)
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	q := NewReopening(first, open)
	defer q.Close()
	if _, err := q.EnqueueDocuments(ctx, 1, 9); err != nil {
		t.Fatal(err)
	}
	h.kill(t, first.(*Helper))
	if _, err := q.Stats(ctx); err == nil {
		t.Fatal("a call to a killed child succeeded")
	}
	c, err := q.Stats(ctx)
	if err != nil || c.Pending != 1 {
		t.Fatalf("after the child died: %+v, %v", c, err)
	}
}

// procStat returns the fields of /proc/PID/stat after the command name:
// [0] is the state, [3] the session id, [4] the controlling terminal.
func procStat(t *testing.T, pid int) []string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// TestQueueChildCannotBeEntered is the finding that root's database child
// kept root's terminal as its stderr and shared root's session, and that a
// process of the same user could open its /proc/PID/mem: the child must
// have a session of its own, no controlling terminal, none of root's files
// as its stdio, and be closed to ptrace by its own user.
func TestQueueChildCannotBeEntered(t *testing.T) {
	queueTransports(t, queueChildCannotBeEntered)
}

func queueChildCannotBeEntered(t *testing.T, h *helpers, kgDir string) {
	c, err := testAccess().Start(context.Background(), Request{Op: "open", DB: filepath.Join(kgDir, "kg.db"), MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pid := h.pid(t, c)

	stat := procStat(t, pid)
	ownSid, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	if stat[3] == fmt.Sprint(ownSid) || stat[3] != fmt.Sprint(pid) {
		t.Errorf("the child's session is %s, want one of its own (%d), not root's (%d)", stat[3], pid, ownSid)
	}
	if stat[4] != "0" {
		t.Errorf("the child's controlling terminal is %s, want none (0)", stat[4])
	}
	for fd := 0; fd <= 2; fd++ {
		theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
		if err != nil {
			t.Fatal(err)
		}
		ours, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		kind := "pipe:"
		if h.socket && fd < 2 {
			kind = "socket:" // the connection; stderr goes to the journal
		}
		if h.socket && fd == 2 {
			continue
		}
		if !strings.HasPrefix(theirs, kind) || theirs == ours {
			t.Errorf("the child's fd %d is %s (ours is %s), want a %s of its own", fd, theirs, ours, strings.TrimSuffix(kind, ":"))
		}
	}

	// Not dumpable: its /proc files belong to root, and another process of
	// its user can open neither its memory nor its environment.
	for _, name := range []string{"mem", "environ"} {
		path := fmt.Sprintf("/proc/%d/%s", pid, name)
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 {
			t.Errorf("%s belongs to uid %d: the child is dumpable", path, st.Uid)
		}
		peer := exec.Command("dd", "if="+path, "of=/dev/null", "bs=1", "count=1", "status=none")
		peer.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := peer.CombinedOutput()
		if err == nil {
			t.Errorf("a process of the child's user opened %s: %s", path, out)
		} else if !strings.Contains(string(out), "ermission denied") {
			t.Errorf("opening %s as the child's user: %v %s, want permission denied", path, err, out)
		}
	}
}

// TestCancelledCallsKeepTheSharedChild is the finding that under serve a
// request whose client gave up killed the shared database child, and the
// requests queued behind it each started and killed another: 50 clients
// with 2 s timeouts spawned 211 children, and the next request took 248 s.
// Callers that give up, waiting for their turn or for their answer, leave
// the child running and in step; the next call is answered at once.
func TestCancelledCallsKeepTheSharedChild(t *testing.T) {
	queueTransports(t, cancelledCallsKeepTheSharedChild)
}

func cancelledCallsKeepTheSharedChild(t *testing.T, h *helpers, kgDir string) {
	dbPath := filepath.Join(kgDir, "slow.db")
	open := func() (Store, error) {
		return testAccess().Start(context.Background(), Request{Op: "open", DB: dbPath, MaxRetries: 3})
	}
	storeDocuments(t, dbPath, 5)
	q := NewReopening(nil, open)
	defer q.Close()
	if _, err := q.EnqueueDocuments(context.Background(), 1, 5); err != nil {
		t.Fatal(err)
	}
	child := q.q.(*Helper)
	pid := h.pid(t, child)

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := q.Stats(ctx)
			if took := time.Since(start); took > 2*time.Second {
				err = fmt.Errorf("a call with a 100ms context returned after %s (%v)", took, err)
			} else if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("a cancelled call: %w, want the context's error", err)
			} else {
				err = nil
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if q.q != child || syscall.Kill(pid, 0) != nil {
		t.Fatalf("the shared child (pid %d) was replaced or killed by callers that gave up", pid)
	}
	// Another operation than the abandoned ones: an answer left over from
	// them would not be a list.
	start := time.Now()
	items, err := q.List(context.Background(), "", 10)
	if err != nil || len(items) != 1 || items[0].ContentID != 5 {
		t.Fatalf("the next call: %+v, %v; want the one item of content 5", items, err)
	}
	// At most the one answer still owed to a caller that left, then this
	// call's own.
	if took := time.Since(start); took > 3*slowChildOp+time.Second {
		t.Errorf("the next call took %s", took)
	}
	if q.q != child {
		t.Error("the next call replaced the child")
	}
}

// TestHungChildIsReplaced: a child that does not answer within the call
// deadline is killed, the call fails, and the next call has a new child.
func TestHungChildIsReplaced(t *testing.T) {
	queueTransports(t, hungChildIsReplaced)
}

func hungChildIsReplaced(t *testing.T, h *helpers, kgDir string) {
	old := testDeadline
	testDeadline = 500 * time.Millisecond
	t.Cleanup(func() { testDeadline = old })
	dbPath := filepath.Join(kgDir, "hung.db")
	q := NewReopening(nil, func() (Store, error) {
		return testAccess().Start(context.Background(), Request{Op: "open", DB: dbPath, MaxRetries: 3})
	})
	defer q.Close()
	// The caller waits longer than the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := q.Stats(ctx)
	if !errors.Is(err, ErrHelperGone) || !strings.Contains(err.Error(), "no answer to stats within 500ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("a call to a hung child: %v after %s, want the child given up after the deadline", err, time.Since(start))
	}
	if q.q != nil {
		t.Error("the hung child is still the one in use")
	}
	if h.socket {
		// Hung up on, the socket's helper exits within its grace (1s
		// here), though its request never returns.
		if err := h.waitExit(h.pid(t, nil), 3*time.Second); err != nil {
			t.Errorf("the hung helper, hung up on: %v", err)
		}
	}
}

// TestOverviewIsOneRequestToTheChild: what a page or a scrape reads of the
// queue (counts, the workers' reports, latencies, the items listed) is one
// request to root's database child, through serve's reopening queue.
func TestOverviewIsOneRequestToTheChild(t *testing.T) {
	kgDir := dbDirFor(t)
	ctx := context.Background()
	dbPath := filepath.Join(kgDir, "kg.db")
	open := func() (Store, error) {
		return testAccess().Start(ctx, Request{Op: "open", DB: dbPath, MaxRetries: 3})
	}
	storeDocuments(t, dbPath, 7, 8)
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	q := NewReopening(first, open)
	defer q.Close()
	if _, err := q.EnqueueDocuments(ctx, 1, 7, 8); err != nil {
		t.Fatal(err)
	}
	child := first.(*Helper)
	w := &countingWriter{WriteCloser: child.in}
	child.in = w
	o, err := q.Overview(ctx, queue.StatusPending, 50)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.writes.Load(); got != 1 {
		t.Errorf("the overview took %d requests to the child, want 1", got)
	}
	if o.Counts.Pending != 2 || len(o.Items) != 2 || o.Items[0].Status != queue.StatusPending {
		t.Errorf("overview: counts %+v, items %+v; want the 2 pending items", o.Counts, o.Items)
	}
}

// countingWriter counts the requests written to a child.
type countingWriter struct {
	io.WriteCloser
	writes atomic.Int32
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.WriteCloser.Write(p)
}

// TestQueueErrorsKeepTheirKindAsRoot: errors from the service user's child
// come back with their type and kind: a missing document is a
// *config.NotFoundError (404, exit 2), bad input a *config.FieldError, as
// when the database is opened in process.
func TestQueueErrorsKeepTheirKindAsRoot(t *testing.T) {
	kgDir := dbDirFor(t)
	dbPath := filepath.Join(kgDir, "kg.db")
	storeDocuments(t, dbPath, 7)
	ctx := context.Background()
	c, err := testAccess().Start(ctx, Request{Op: "open", DB: dbPath, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	db, err := OpenFor(ctx, dbPath, 3, false, false)
	local := NewLocal(db)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	for name, q := range map[string]Store{"child": c, "in process": local} {
		_, err := q.Document(ctx, 99)
		var nf *config.NotFoundError
		if !errors.As(err, &nf) || nf.Field != "CONTENT_ID" || nf.Value != "99" || err.Error() != "invalid CONTENT_ID 99: no such document" {
			t.Errorf("%s: Document(99) = %v (%T), want a *config.NotFoundError naming CONTENT_ID 99", name, err, err)
		}
		if k := config.ErrorKindOf(err); k != config.KindNotFound || k.HTTPStatus() != 404 || k.ExitCode() != 2 {
			t.Errorf("%s: Document(99) kind %s", name, k)
		}
		_, err = q.SetPriority(ctx, 1, 99)
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Field != "ITEM_ID" || fe.Value != "99" || fe.Rule != "no such queue item" {
			t.Errorf("%s: SetPriority(1, 99) = %v (%T), want a *config.FieldError naming ITEM_ID 99", name, err, err)
		}
		if k := config.ErrorKindOf(err); k != config.KindInput || k.HTTPStatus() != 400 || k.ExitCode() != 2 {
			t.Errorf("%s: SetPriority(1, 99) kind %s", name, k)
		}
	}
}

// TestPingIsAnOperation: ping is an operation of the table, answered by
// the database in process and through the helper alike.
func TestPingIsAnOperation(t *testing.T) {
	kgDir := dbDirFor(t)
	dbPath := filepath.Join(kgDir, "kg.db")
	storeDocuments(t, dbPath)
	ctx := context.Background()
	c, err := testAccess().Start(ctx, Request{Op: "open", DB: dbPath, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	db, err := OpenFor(ctx, dbPath, 3, true, false)
	if err != nil {
		t.Fatal(err)
	}
	local := NewLocal(db)
	defer local.Close()
	if _, ok := ops["ping"]; !ok {
		t.Fatal("ping is not an operation of the table")
	}
	for name, q := range map[string]interface{ Ping(context.Context) error }{"helper": c, "in process": local} {
		if err := q.Ping(ctx); err != nil {
			t.Errorf("%s: Ping = %v", name, err)
		}
	}
}
