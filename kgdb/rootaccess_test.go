package kgdb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/testkit/kgdbtest"
	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/queue"
)

// The helper's settings in this test binary; tests change them.
var (
	testUser     = "nobody"
	testSocket   = ""
	testDeadline = kgdb.DefaultCallDeadline
	testGrace    = kgdb.DefaultGrace
)

// vars are the settings the helper kit changes.
var vars = kgdbtest.Vars{User: &testUser, Socket: &testSocket}

// testAccess is root's access as the tests set it.
func testAccess() kgdb.Access {
	return kgdb.Access{User: testUser, Socket: testSocket, CallDeadline: testDeadline, Grace: testGrace}
}

// TestMain lets the test binary stand in for kato-manager's helper command
// when Access.Start re-executes it: it then serves as the helper.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == kgdb.HelperCommand {
		grace, _ := kgdbtest.HelperGrace()
		if err := kgdb.Serve(context.Background(), os.Stdin, os.Stdout, kgdb.ServeOptions{Grace: grace, Hook: kgdbtest.Hook}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	pgtest.Main(m)
}

// TestReopeningQueueReplacesADeadChild: serve keeps answering /stats after
// its database child died.
func TestReopeningQueueReplacesADeadChild(t *testing.T) {
	kgdbtest.Transports(t, vars, reopeningQueueReplacesADeadChild)
}

func reopeningQueueReplacesADeadChild(t *testing.T, h *kgdbtest.Helpers, kgDir string) {
	ctx := context.Background()
	dbPath := filepath.Join(kgDir, "kg.db")
	open := func() (kgdb.Store, error) {
		return testAccess().Start(ctx, kgdb.Request{Op: "open", DB: dbPath, MaxRetries: 3})
	}
	kgdbtest.StoreDocuments(t, dbPath, 9)
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	q := kgdb.NewReopening(first, open)
	defer q.Close()
	if _, err := q.EnqueueDocuments(ctx, 1, 9); err != nil {
		t.Fatal(err)
	}
	h.Kill(t, first.(*kgdb.Helper))
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
	kgdbtest.Transports(t, vars, queueChildCannotBeEntered)
}

func queueChildCannotBeEntered(t *testing.T, h *kgdbtest.Helpers, kgDir string) {
	c, err := testAccess().Start(context.Background(), kgdb.Request{Op: "open", DB: filepath.Join(kgDir, "kg.db"), MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pid := h.PID(t, c)

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
		if h.Socket && fd < 2 {
			kind = "socket:" // the connection; stderr goes to the journal
		}
		if h.Socket && fd == 2 {
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
	kgdbtest.Transports(t, vars, cancelledCallsKeepTheSharedChild)
}

func cancelledCallsKeepTheSharedChild(t *testing.T, h *kgdbtest.Helpers, kgDir string) {
	dbPath := filepath.Join(kgDir, "slow.db")
	open := func() (kgdb.Store, error) {
		return testAccess().Start(context.Background(), kgdb.Request{Op: "open", DB: dbPath, MaxRetries: 3})
	}
	kgdbtest.StoreDocuments(t, dbPath, 5)
	q := kgdb.NewReopening(nil, open)
	defer q.Close()
	if _, err := q.EnqueueDocuments(context.Background(), 1, 5); err != nil {
		t.Fatal(err)
	}
	child := kgdb.ReopeningStore(q).(*kgdb.Helper)
	pid := h.PID(t, child)

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
	if kgdb.ReopeningStore(q) != child || syscall.Kill(pid, 0) != nil {
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
	if took := time.Since(start); took > 3*kgdbtest.SlowOp+time.Second {
		t.Errorf("the next call took %s", took)
	}
	if kgdb.ReopeningStore(q) != child {
		t.Error("the next call replaced the child")
	}
}

// TestHungChildIsReplaced: a child that does not answer within the call
// deadline is killed, the call fails, and the next call has a new child.
func TestHungChildIsReplaced(t *testing.T) {
	kgdbtest.Transports(t, vars, hungChildIsReplaced)
}

func hungChildIsReplaced(t *testing.T, h *kgdbtest.Helpers, kgDir string) {
	old := testDeadline
	testDeadline = 500 * time.Millisecond
	t.Cleanup(func() { testDeadline = old })
	dbPath := filepath.Join(kgDir, "hung.db")
	q := kgdb.NewReopening(nil, func() (kgdb.Store, error) {
		return testAccess().Start(context.Background(), kgdb.Request{Op: "open", DB: dbPath, MaxRetries: 3})
	})
	defer q.Close()
	// The caller waits longer than the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := q.Stats(ctx)
	if !errors.Is(err, kgdb.ErrHelperGone) || !strings.Contains(err.Error(), "no answer to stats within 500ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("a call to a hung child: %v after %s, want the child given up after the deadline", err, time.Since(start))
	}
	if kgdb.ReopeningStore(q) != nil {
		t.Error("the hung child is still the one in use")
	}
	if h.Socket {
		// Hung up on, the socket's helper exits within its grace (1s
		// here), though its request never returns.
		if err := h.WaitExit(h.PID(t, nil), 3*time.Second); err != nil {
			t.Errorf("the hung helper, hung up on: %v", err)
		}
	}
}

// TestOverviewIsOneRequestToTheChild: what a page or a scrape reads of the
// queue (counts, the workers' reports, latencies, the items listed) is one
// request to root's database child, through serve's reopening queue.
func TestOverviewIsOneRequestToTheChild(t *testing.T) {
	kgDir := kgdbtest.DBDir(t, vars)
	ctx := context.Background()
	dbPath := filepath.Join(kgDir, "kg.db")
	open := func() (kgdb.Store, error) {
		return testAccess().Start(ctx, kgdb.Request{Op: "open", DB: dbPath, MaxRetries: 3})
	}
	kgdbtest.StoreDocuments(t, dbPath, 7, 8)
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	q := kgdb.NewReopening(first, open)
	defer q.Close()
	if _, err := q.EnqueueDocuments(ctx, 1, 7, 8); err != nil {
		t.Fatal(err)
	}
	child := first.(*kgdb.Helper)
	w := &countingWriter{}
	kgdb.WrapHelperInput(child, func(in io.WriteCloser) io.WriteCloser { w.WriteCloser = in; return w })
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
	kgDir := kgdbtest.DBDir(t, vars)
	dbPath := filepath.Join(kgDir, "kg.db")
	kgdbtest.StoreDocuments(t, dbPath, 7)
	ctx := context.Background()
	c, err := testAccess().Start(ctx, kgdb.Request{Op: "open", DB: dbPath, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	db, err := kgdb.OpenFor(ctx, dbPath, 3, false, false)
	local := kgdb.NewLocal(db)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	for name, q := range map[string]kgdb.Store{"child": c, "in process": local} {
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
	kgDir := kgdbtest.DBDir(t, vars)
	dbPath := filepath.Join(kgDir, "kg.db")
	kgdbtest.StoreDocuments(t, dbPath)
	ctx := context.Background()
	c, err := testAccess().Start(ctx, kgdb.Request{Op: "open", DB: dbPath, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	db, err := kgdb.OpenFor(ctx, dbPath, 3, true, false)
	if err != nil {
		t.Fatal(err)
	}
	local := kgdb.NewLocal(db)
	defer local.Close()
	if !kgdb.HasOp("ping") {
		t.Fatal("ping is not an operation of the table")
	}
	for name, q := range map[string]interface{ Ping(context.Context) error }{"helper": c, "in process": local} {
		if err := q.Ping(ctx); err != nil {
			t.Errorf("%s: Ping = %v", name, err)
		}
	}
}

// TestOpenConfigured: as root in the system's scope (a file owner set),
// the database is opened through the helper as the service user, and the
// files it makes are that user's; otherwise in process.
func TestOpenConfigured(t *testing.T) {
	kgDir := kgdbtest.DBDir(t, vars)
	ctx := context.Background()
	kg := &config.KG{DBPath: filepath.Join(kgDir, "kg.db"), MaxRetries: 3}
	kgdbtest.StoreDocuments(t, kg.DBPath, 7)
	q, err := testAccess().OpenConfigured(ctx, kg, config.Paths{FileOwner: "kato"}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, ok := q.(*kgdb.Helper); !ok {
		t.Fatalf("as root in the system's scope: a %T, want the helper", q)
	}
	if _, err := q.EnqueueDocuments(ctx, 1, 7); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(kgDir)
	for _, e := range entries {
		info, _ := e.Info()
		if st := info.Sys().(*syscall.Stat_t); st.Uid != 65534 {
			t.Errorf("%s is owned by uid %d, want the service user's", e.Name(), st.Uid)
		}
	}
	local, err := testAccess().OpenConfigured(ctx, kg, config.Paths{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if _, ok := local.(*kgdb.Helper); ok {
		t.Fatal("in the user's scope the database was opened through the helper")
	}
	if c, err := local.Stats(ctx); err != nil || c.Pending != 1 {
		t.Errorf("in process: %+v, %v; want the item queued through the helper", c, err)
	}
}
