package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/kgworker"
)

// slowChildOp is how long each request takes in a child on slow.db.
const slowChildOp = 300 * time.Millisecond

// TestMain lets the test binary stand in for kato-manager when a command
// re-executes itself for its database work.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == queueDBCommand {
		// A database named slow.db or hung.db makes the helper slow, or
		// never answer, in every request but the first.
		queueOpHook = func(db, op string) {
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
		if grace, err := time.ParseDuration(os.Getenv(testGraceEnv)); err == nil {
			queueChildGrace = grace
		}
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// queueDirFor makes a directory tree like /var/lib/kato/kg: a root-owned,
// world-searchable parent and a queue directory owned by nobody, who plays
// the kato user.
func queueDirFor(t *testing.T) (configText, kgDir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test is what root does")
	}
	old, oldSocket := serviceUser, queueSocket
	serviceUser = "nobody"
	// No kato-queue.socket: the child is forked.
	queueSocket = filepath.Join(t.TempDir(), "no-queue.sock")
	t.Cleanup(func() { serviceUser, queueSocket = old, oldSocket })
	parent, err := os.MkdirTemp("", "kato-queue-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	kgDir = filepath.Join(parent, "kg")
	if err := os.Mkdir(kgDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(kgDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return "[kg]\ndb_path = \"" + filepath.Join(kgDir, "kg.db") + "\"\n", kgDir
}

func TestRootQueueWorkRunsAsServiceUser(t *testing.T) {
	queueTransports(t, rootQueueWorkRunsAsServiceUser)
}

func rootQueueWorkRunsAsServiceUser(t *testing.T, h *helpers, configText, kgDir string) {
	storeDocuments(t, filepath.Join(kgDir, "kg.db"), 7, 8)
	if code, _, stderr := runCLI(t, configText, "queue", "enqueue", "7", "8"); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := runCLI(t, configText, "queue", "stats", "--json")
	if code != 0 {
		t.Fatalf("stats: exit %d: %s", code, stderr)
	}
	var counts struct{ Pending, Total int }
	if err := json.Unmarshal([]byte(stdout), &counts); err != nil || counts.Pending != 2 || counts.Total != 2 {
		t.Fatalf("stats = %q (%v), want 2 pending", stdout, err)
	}
	code, stdout, stderr = runCLI(t, configText, "queue", "list", "--json")
	if code != 0 || !strings.Contains(stdout, `"content_id": 8`) {
		t.Fatalf("list: exit %d: %s %s", code, stdout, stderr)
	}
	// Every file of the database was made by the service user, none by root.
	entries, err := os.ReadDir(kgDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("queue directory: %v %v", entries, err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if st := info.Sys().(*syscall.Stat_t); st.Uid != 65534 {
			t.Errorf("%s is owned by uid %d, want the service user's 65534", e.Name(), st.Uid)
		}
	}
	if h.socket && h.started() != 3 {
		t.Errorf("%d helpers started through the socket, want one per command (3)", h.started())
	}
}

// TestRootFollowsNoPlantedLink is the finding that root created and
// chowned the target of a symlink the kato user planted at the database's
// path.
func TestRootFollowsNoPlantedLink(t *testing.T) {
	queueTransports(t, rootFollowsNoPlantedLink)
}

func rootFollowsNoPlantedLink(t *testing.T, h *helpers, configText, kgDir string) {
	secret := t.TempDir() // root's, 0700
	planted := filepath.Join(secret, "planted")
	if err := os.Symlink(planted, filepath.Join(kgDir, "kg.db")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"queue", "stats"},
		{"queue", "list"},
		{"queue", "enqueue", "1"},
		{"queue", "retry-failed"},
	} {
		code, _, stderr := runCLI(t, configText, args...)
		if code == 0 {
			t.Errorf("%q through a planted link succeeded", args)
		}
		if !strings.Contains(stderr, "kg.db") {
			t.Errorf("%q: stderr %q does not name the database", args, stderr)
		}
		if _, err := os.Lstat(planted); err == nil {
			t.Fatalf("%q: root created the link's target %s", args, planted)
		}
	}
}

func TestQueueChildRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	code, _, stderr := runCLI(t, "", queueDBCommand)
	if code != exitUsage || !strings.Contains(stderr, "must not run as root") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestEnsureQueueDirOnlyBelowRootOwnedDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "kg")
	if err := ensureQueueDir(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); st.Uid != 65534 || info.Mode().Perm() != 0o750 {
		t.Errorf("made %v owned by %d", info.Mode(), st.Uid)
	}
	// A parent another user can write: that user could swap the directory
	// for a link between mkdir and chown.
	open := t.TempDir()
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := ensureQueueDir(filepath.Join(open, "kg"), 65534, 65534); err == nil {
		t.Fatal("created a queue directory below a world-writable directory")
	}
}

// TestReopeningQueueReplacesADeadChild: serve keeps answering /stats after
// its database child died.
func TestReopeningQueueReplacesADeadChild(t *testing.T) {
	queueTransports(t, reopeningQueueReplacesADeadChild)
}

func reopeningQueueReplacesADeadChild(t *testing.T, h *helpers, _, kgDir string) {
	ctx := context.Background()
	dbPath := filepath.Join(kgDir, "kg.db")
	open := func() (queueDB, error) {
		return startQueueChild(ctx, queueRequest{Op: "open", DB: dbPath, MaxRetries: 3})
	}
	storeDocuments(t, dbPath, 9)
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	q := newReopeningQueue(first, open)
	defer q.Close()
	if _, err := q.EnqueueDocuments(ctx, 1, 9); err != nil {
		t.Fatal(err)
	}
	h.kill(t, first.(*queueChild))
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

func queueChildCannotBeEntered(t *testing.T, h *helpers, _, kgDir string) {
	c, err := startQueueChild(context.Background(), queueRequest{Op: "open", DB: filepath.Join(kgDir, "kg.db"), MaxRetries: 3})
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

func cancelledCallsKeepTheSharedChild(t *testing.T, h *helpers, _, kgDir string) {
	dbPath := filepath.Join(kgDir, "slow.db")
	open := func() (queueDB, error) {
		return startQueueChild(context.Background(), queueRequest{Op: "open", DB: dbPath, MaxRetries: 3})
	}
	storeDocuments(t, dbPath, 5)
	q := newReopeningQueue(nil, open)
	defer q.Close()
	if _, err := q.EnqueueDocuments(context.Background(), 1, 5); err != nil {
		t.Fatal(err)
	}
	child := q.q.(*queueChild)
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

func hungChildIsReplaced(t *testing.T, h *helpers, _, kgDir string) {
	old := queueCallDeadline
	queueCallDeadline = 500 * time.Millisecond
	t.Cleanup(func() { queueCallDeadline = old })
	dbPath := filepath.Join(kgDir, "hung.db")
	q := newReopeningQueue(nil, func() (queueDB, error) {
		return startQueueChild(context.Background(), queueRequest{Op: "open", DB: dbPath, MaxRetries: 3})
	})
	defer q.Close()
	// The caller waits longer than the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := q.Stats(ctx)
	if !errors.Is(err, errChildGone) || !strings.Contains(err.Error(), "no answer to stats within 500ms") || time.Since(start) > 5*time.Second {
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

// TestRootQueueOnPeerAuthPostgres is the finding that root's queue
// commands connected to a PostgreSQL socket URL as root: with peer
// authentication, the README's set-up, they failed while the workers, as
// kato, worked. They reach the database as the service user, with the URL
// the workers use.
func TestRootQueueOnPeerAuthPostgres(t *testing.T) {
	queueTransports(t, rootQueueOnPeerAuthPostgres)
}

func rootQueueOnPeerAuthPostgres(t *testing.T, h *helpers, configText, kgDir string) {
	srv := pgtest.StartWithAuth(t, "local all all peer")
	adminURL := srv.NewDB(t)
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	admin := srv.Admin(t)
	// nobody plays kato: its role is the one peer authentication lets in.
	if _, err := admin.Exec("CREATE ROLE nobody LOGIN"); err != nil {
		t.Fatal(err)
	}
	execSQL(t, adminURL, "ALTER SCHEMA "+q.Get("search_path")+" OWNER TO nobody")
	// No user in the URL, as the README's: each side connects as itself.
	configText += "db_url = \"postgres:///kgtest?" + q.Encode() + "\"\n"

	// A document PostgreSQL does not hold is refused, and nothing is queued.
	code, _, stderr := runCLI(t, configText, "queue", "enqueue", "3", "4")
	if code != exitUsage || !strings.Contains(stderr, "invalid CONTENT_ID 3: has no crawled_content row") {
		t.Fatalf("queue enqueue of unknown documents: exit %d, %q; want 2 and CONTENT_ID 3 named", code, stderr)
	}
	if n := pgtest.Count(t, adminURL, "SELECT count(*) FROM kg_processing_queue"); n != 0 {
		t.Fatalf("a refused enqueue queued %d items", n)
	}
	execSQL(t, adminURL, "INSERT INTO crawled_content(id, url) VALUES (3, 'https://example.com/3'), (4, 'https://example.com/4')")
	if code, stdout, stderr := runCLI(t, configText, "queue", "enqueue", "3", "4"); code != 0 {
		t.Fatalf("queue enqueue: exit %d: %s %s", code, stdout, stderr)
	}
	code, stdout, stderr := runCLI(t, configText, "queue", "list", "--json")
	if code != 0 || !strings.Contains(stdout, `"content_id": 4`) {
		t.Errorf("queue list: exit %d: %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, configText, "queue", "stats", "--json")
	var counts struct{ Pending, Total int }
	if code != 0 || json.Unmarshal([]byte(stdout), &counts) != nil || counts.Pending != 2 {
		t.Errorf("queue stats: exit %d: %s %s; want 2 pending", code, stdout, stderr)
	}
	if n := pgtest.Count(t, adminURL, "SELECT count(*) FROM kg_processing_queue"); n != 2 {
		t.Errorf("%d items in PostgreSQL, want 2", n)
	}
	if entries, _ := os.ReadDir(kgDir); len(entries) != 0 {
		t.Errorf("a SQLite file was made with kg.db_url set: %v", entries)
	}
	if h.socket && h.started() != 4 {
		t.Errorf("%d helpers started through the socket, want one per command (4)", h.started())
	}
}

// storeDocuments creates the queue database at path, as the service user
// (nobody) will find it, holding crawled_content rows with the given ids.
func storeDocuments(t *testing.T, path string, contentIDs ...int64) {
	t.Helper()
	q, err := kgworker.Open(context.Background(), path)
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
