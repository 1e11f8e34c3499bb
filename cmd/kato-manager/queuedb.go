package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
)

// queueDB is the queue work the commands do. The queue database lives in a
// directory the kato user owns, so root never opens it itself: a command
// run as root does its database work in a child process running as kato
// (queueChild), which can reach only what kato can. Anyone else opens the
// database directly, with its own rights.
type queueDB interface {
	Enqueue(ctx context.Context, contentID int64, priority int) (int64, error)
	List(ctx context.Context, status kgworker.Status, limit int) ([]kgworker.Item, error)
	RetryFailed(ctx context.Context, ids ...int64) (int, error)
	Stats(ctx context.Context) (kgworker.Counts, error)
	Reports(ctx context.Context) ([]kgworker.Report, error)
	Latencies(ctx context.Context) (queue.Latencies, error)
	SetPriority(ctx context.Context, priority int, ids ...int64) (int, error)
	Delete(ctx context.Context, ids ...int64) (int, error)
	Requeue(ctx context.Context, priority int, contentIDs ...int64) (int, error)
	RequeueAll(ctx context.Context, priority int) (int, error)
	Clear(ctx context.Context, status kgworker.Status) (int, error)
	Documents(ctx context.Context, search string, limit int) ([]kgworker.DocumentSummary, error)
	Document(ctx context.Context, id int64) (*kgworker.DocumentDetail, error)
	Close() error
}

// queueDBCommand is the hidden command the child runs: the same binary,
// re-executed as the kato user.
const queueDBCommand = "__queue-db"

// serviceUser is who does root's database work; tests change it.
var serviceUser = config.ServiceUser

// openQueueDB opens the queue database of cfg for this process: directly,
// or as the kato user when running as root in a scope whose workers run as
// kato (the system's; in the user scope the database is the user's own).
// A PostgreSQL queue (kg.db_url) is reached as kato too: the server knows
// the workers' user, and a socket URL with peer authentication lets in only
// that user. The URL, resolved with root's own libpq settings (PGPASSWORD,
// PGSERVICE, ~/.pgpass), goes to the child over the pipe.
func openQueueDB(ctx context.Context, cfg *config.Config, paths config.Paths, readOnly bool) (queueDB, error) {
	if os.Geteuid() != 0 || paths.FileOwner == "" {
		return openKGQueue(ctx, cfg.KG.Database(), cfg.KG.MaxRetries, readOnly, paths.MakeStateDir)
	}
	flags := []string{"--max-retries", strconv.Itoa(cfg.KG.MaxRetries), "--read-only=" + strconv.FormatBool(readOnly)}
	if cfg.KG.DBURL == "" {
		return startQueueChild(ctx, cfg.KG.DBPath, queueRequest{Op: "ping"}, flags...)
	}
	dbURL, err := queue.ResolveURL(cfg.KG.DBURL, serviceUser)
	if err != nil {
		return nil, fmt.Errorf("kg.db_url: %w", err)
	}
	return startQueueChild(ctx, "", queueRequest{Op: "open", URL: dbURL}, flags...)
}

// copyAsServiceUser runs kgworker.CopyToPostgres in a child running as
// the service user, which reads the SQLite file as the workers do: root
// opening it could leave companion files the workers cannot write. The URL,
// which may hold a password, goes over the pipe, never on a command line.
func copyAsServiceUser(ctx context.Context, dbPath, to string) (*kgworker.CopyReport, error) {
	c, err := startQueueChild(ctx, dbPath, queueRequest{Op: "ping"}, "--copy-only")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.deadline = 0 // a large queue takes its time; the operator's ^C ends it
	return callInto[*kgworker.CopyReport](ctx, c, queueRequest{Op: "copy-to", To: to})
}

// openKGQueue opens the database itself: read-only commands take no write
// lock, so they never wait for, or hold up, the workers.
func openKGQueue(ctx context.Context, dbPath string, maxRetries int, readOnly, makeDir bool) (*kgworker.Queue, error) {
	open := kgworker.Open
	if readOnly {
		open = kgworker.OpenReadOnly
	}
	return open(ctx, dbPath, kgworker.WithMaxRetries(maxRetries), kgworker.WithMakeDir(makeDir))
}

// queueChild is a child process, running as the service user, that does
// the database work of a root command over a pipe: one JSON request per
// line in, one JSON response per line out. Calls are serialised; a caller
// that gives up (its context ends) leaves the child to the others.
type queueChild struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	wait chan error
	// turn is held from a request's write until its answer is read, by
	// whoever reads it: the caller, or, once the caller gave up, a reader
	// that drops the answer so the pipe stays in step for the next call.
	turn chan struct{}
	// broken is the reason the pipe can no longer be used, once it is.
	broken atomic.Pointer[error]
	// deadline bounds one call: a child that has not answered by then is
	// taken for hung and killed. Zero: no bound.
	deadline time.Duration

	closeOnce sync.Once
	closeErr  error
}

// queueCallDeadline is how long a call may take before its child is taken
// for hung and killed; tests shorten it. No request of the queue commands
// or of serve comes near it.
var queueCallDeadline = 5 * time.Minute

// queueChildGrace is how long Close waits for an idle child to close its
// database and exit before it kills it.
const queueChildGrace = 10 * time.Second

type queueRequest struct {
	Op        string          `json:"op"`
	ContentID int64           `json:"content_id,omitempty"`
	Priority  int             `json:"priority,omitempty"`
	Status    kgworker.Status `json:"status,omitempty"`
	Limit     int             `json:"limit,omitempty"`
	IDs       []int64         `json:"ids,omitempty"`
	Search    string          `json:"search,omitempty"`
	To        string          `json:"to,omitempty"`
	// URL is the PostgreSQL database of an "open" request.
	URL string `json:"url,omitempty"`
}

type queueResponse struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	// Input is set when the error is the operator's bad input, so that
	// the command exits 2 as when it opens the database itself.
	Input *queue.InputError `json:"input_error,omitempty"`
}

// startQueueChild starts the child for the SQLite database at dbPath, or
// for none when dbPath is "", with the child's flags args, and sends it the
// request first (ping, or open a PostgreSQL database): an error opening the
// database is reported here, as with a direct open. The database's
// directory is made for the service user first if it is missing and its
// parent belongs to root alone, so that no other user can put anything in
// its place between the mkdir and the chown.
//
// The child holds nothing of root's terminal or session: its stdin and
// stdout are the request pipes, its stderr a pipe this process copies to
// its own, and it runs in a session of its own (setsid), with no
// controlling terminal to push input into (TIOCSTI). It makes itself
// non-dumpable first thing (serveQueueDB), so that no process of the same
// user can ptrace it or open its memory.
func startQueueChild(ctx context.Context, dbPath string, first queueRequest, args ...string) (*queueChild, error) {
	u, err := user.Lookup(serviceUser)
	if err != nil {
		return nil, fmt.Errorf("queue database %s is worked on as user %s: %w (run `kato-manager install-units`)", dbPath, serviceUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", serviceUser, err)
	}
	argv := []string{queueDBCommand}
	if dbPath != "" {
		if err := ensureQueueDir(filepath.Dir(dbPath), int(uid), int(gid)); err != nil {
			return nil, err
		}
		argv = append(argv, "--db", dbPath)
	}
	// The forked child runs this very binary again: /proc/self/exe reaches
	// it even when the service user could not look it up by its path.
	cmd := exec.Command("/proc/self/exe", append(argv, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"}
	// Not os.Stderr itself: exec would hand the child that file, root's
	// terminal perhaps. Any other writer gets a pipe that exec copies from.
	cmd.Stderr = struct{ io.Writer }{os.Stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}},
		Pdeathsig:  syscall.SIGKILL,
		Setsid:     true,
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start queue access as %s: %w", serviceUser, err)
	}
	c := &queueChild{cmd: cmd, in: in, out: bufio.NewReader(out), wait: make(chan error, 1),
		turn: make(chan struct{}, 1), deadline: queueCallDeadline}
	go func() { c.wait <- cmd.Wait() }()
	if _, err := c.call(ctx, first); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ensureQueueDir creates dir for uid:gid when it is missing. It does so only
// below a directory that root owns and nobody else can write; anywhere else
// the administrator creates it.
func ensureQueueDir(dir string, uid, gid int) error {
	if _, err := os.Lstat(dir); err == nil || !errors.Is(err, os.ErrNotExist) {
		return nil // the child finds out whether it can use it
	}
	parent := filepath.Dir(dir)
	info, err := os.Lstat(parent)
	if err != nil {
		return fmt.Errorf("queue directory %s: %w", dir, err)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || !info.IsDir() || st.Uid != 0 || info.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("queue directory %s does not exist and %s is not a directory only root can write: create it for user %s", dir, parent, serviceUser)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		return fmt.Errorf("create queue directory: %w", err)
	}
	// Only root can write parent, so dir is still the directory just made.
	if err := os.Lchown(dir, uid, gid); err != nil {
		return fmt.Errorf("give queue directory %s to %s: %w", dir, serviceUser, err)
	}
	return nil
}

// call sends one request and reads its response. A caller whose context
// ends while it waits for its turn leaves without touching the child; one
// whose request is already written leaves its answer to be read and
// dropped. Only a child that does not answer within c.deadline, or whose
// pipe fails, is given up (errChildGone).
func (c *queueChild) call(ctx context.Context, req queueRequest) (json.RawMessage, error) {
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("queue access as %s: %w", serviceUser, ctx.Err())
	}
	if broken := c.broken.Load(); broken != nil {
		<-c.turn
		return nil, *broken
	}
	type answer struct {
		resp queueResponse
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		defer func() { <-c.turn }()
		var hung atomic.Bool
		if c.deadline > 0 {
			timer := time.AfterFunc(c.deadline, func() {
				hung.Store(true)
				c.cmd.Process.Kill() //nolint:errcheck // it may have exited
			})
			defer timer.Stop()
		}
		var a answer
		if _, a.err = c.in.Write(append(line, '\n')); a.err == nil {
			var data []byte
			if data, a.err = c.out.ReadBytes('\n'); a.err == nil {
				a.err = json.Unmarshal(data, &a.resp)
			}
		}
		if a.err != nil && hung.Load() {
			a.err = fmt.Errorf("queue access as %s: %w: no answer to %s within %s, killed", serviceUser, errChildGone, req.Op, c.deadline)
		} else if a.err != nil {
			a.err = fmt.Errorf("queue access as %s: %w: %w", serviceUser, errChildGone, a.err)
			c.broken.Store(&a.err)
		}
		got <- a
	}()
	select {
	case a := <-got:
		if a.err != nil {
			return nil, a.err
		}
		if a.resp.Input != nil {
			return nil, a.resp.Input
		}
		if a.resp.Error != "" {
			return nil, errors.New(a.resp.Error)
		}
		return a.resp.Result, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("queue access as %s: %w", serviceUser, ctx.Err())
	}
}

// errChildGone marks a call after which the child cannot be used again.
var errChildGone = errors.New("queue child gone")

// reopeningQueue is a queueDB for a long-running command (serve): a child
// that died, or was killed for hanging, is replaced on the next call. Calls
// run concurrently; a child serialises them itself.
type reopeningQueue struct {
	mu   sync.Mutex
	open func() (queueDB, error)
	q    queueDB
}

func (r *reopeningQueue) do(fn func(queueDB) error) error {
	r.mu.Lock()
	if r.q == nil {
		q, err := r.open()
		if err != nil {
			r.mu.Unlock()
			return err
		}
		r.q = q
	}
	q := r.q
	r.mu.Unlock()
	err := fn(q)
	if errors.Is(err, errChildGone) {
		r.mu.Lock()
		if r.q == q {
			r.q = nil
		} else {
			q = nil // another call replaced it already
		}
		r.mu.Unlock()
		if q != nil {
			q.Close()
		}
	}
	return err
}

func (r *reopeningQueue) Enqueue(ctx context.Context, contentID int64, priority int) (id int64, err error) {
	err = r.do(func(q queueDB) error { id, err = q.Enqueue(ctx, contentID, priority); return err })
	return id, err
}

func (r *reopeningQueue) List(ctx context.Context, status kgworker.Status, limit int) (items []kgworker.Item, err error) {
	err = r.do(func(q queueDB) error { items, err = q.List(ctx, status, limit); return err })
	return items, err
}

func (r *reopeningQueue) RetryFailed(ctx context.Context, ids ...int64) (n int, err error) {
	err = r.do(func(q queueDB) error { n, err = q.RetryFailed(ctx, ids...); return err })
	return n, err
}

func (r *reopeningQueue) Stats(ctx context.Context) (c kgworker.Counts, err error) {
	err = r.do(func(q queueDB) error { c, err = q.Stats(ctx); return err })
	return c, err
}

func (r *reopeningQueue) Reports(ctx context.Context) (reports []kgworker.Report, err error) {
	err = r.do(func(q queueDB) error { reports, err = q.Reports(ctx); return err })
	return reports, err
}

func (r *reopeningQueue) Latencies(ctx context.Context) (l queue.Latencies, err error) {
	err = r.do(func(q queueDB) error { l, err = q.Latencies(ctx); return err })
	return l, err
}

func (r *reopeningQueue) SetPriority(ctx context.Context, priority int, ids ...int64) (n int, err error) {
	err = r.do(func(q queueDB) error { n, err = q.SetPriority(ctx, priority, ids...); return err })
	return n, err
}

func (r *reopeningQueue) Delete(ctx context.Context, ids ...int64) (n int, err error) {
	err = r.do(func(q queueDB) error { n, err = q.Delete(ctx, ids...); return err })
	return n, err
}

func (r *reopeningQueue) Requeue(ctx context.Context, priority int, contentIDs ...int64) (n int, err error) {
	err = r.do(func(q queueDB) error { n, err = q.Requeue(ctx, priority, contentIDs...); return err })
	return n, err
}

func (r *reopeningQueue) RequeueAll(ctx context.Context, priority int) (n int, err error) {
	err = r.do(func(q queueDB) error { n, err = q.RequeueAll(ctx, priority); return err })
	return n, err
}

func (r *reopeningQueue) Clear(ctx context.Context, status kgworker.Status) (n int, err error) {
	err = r.do(func(q queueDB) error { n, err = q.Clear(ctx, status); return err })
	return n, err
}

func (r *reopeningQueue) Documents(ctx context.Context, search string, limit int) (docs []kgworker.DocumentSummary, err error) {
	err = r.do(func(q queueDB) error { docs, err = q.Documents(ctx, search, limit); return err })
	return docs, err
}

func (r *reopeningQueue) Document(ctx context.Context, id int64) (doc *kgworker.DocumentDetail, err error) {
	err = r.do(func(q queueDB) error { doc, err = q.Document(ctx, id); return err })
	return doc, err
}

func (r *reopeningQueue) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.q == nil {
		return nil
	}
	err := r.q.Close()
	r.q = nil
	return err
}

func callInto[T any](ctx context.Context, c *queueChild, req queueRequest) (T, error) {
	var v T
	raw, err := c.call(ctx, req)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("queue access as %s: %w", serviceUser, err)
	}
	return v, nil
}

func (c *queueChild) Enqueue(ctx context.Context, contentID int64, priority int) (int64, error) {
	return callInto[int64](ctx, c, queueRequest{Op: "enqueue", ContentID: contentID, Priority: priority})
}

func (c *queueChild) List(ctx context.Context, status kgworker.Status, limit int) ([]kgworker.Item, error) {
	return callInto[[]kgworker.Item](ctx, c, queueRequest{Op: "list", Status: status, Limit: limit})
}

func (c *queueChild) RetryFailed(ctx context.Context, ids ...int64) (int, error) {
	return callInto[int](ctx, c, queueRequest{Op: "retry-failed", IDs: ids})
}

func (c *queueChild) Stats(ctx context.Context) (kgworker.Counts, error) {
	return callInto[kgworker.Counts](ctx, c, queueRequest{Op: "stats"})
}

func (c *queueChild) Reports(ctx context.Context) ([]kgworker.Report, error) {
	return callInto[[]kgworker.Report](ctx, c, queueRequest{Op: "reports"})
}

func (c *queueChild) Latencies(ctx context.Context) (queue.Latencies, error) {
	return callInto[queue.Latencies](ctx, c, queueRequest{Op: "latencies"})
}

func (c *queueChild) SetPriority(ctx context.Context, priority int, ids ...int64) (int, error) {
	return callInto[int](ctx, c, queueRequest{Op: "priority", Priority: priority, IDs: ids})
}

func (c *queueChild) Delete(ctx context.Context, ids ...int64) (int, error) {
	return callInto[int](ctx, c, queueRequest{Op: "delete", IDs: ids})
}

func (c *queueChild) Requeue(ctx context.Context, priority int, contentIDs ...int64) (int, error) {
	return callInto[int](ctx, c, queueRequest{Op: "requeue", Priority: priority, IDs: contentIDs})
}

func (c *queueChild) RequeueAll(ctx context.Context, priority int) (int, error) {
	return callInto[int](ctx, c, queueRequest{Op: "requeue-all", Priority: priority})
}

func (c *queueChild) Clear(ctx context.Context, status kgworker.Status) (int, error) {
	return callInto[int](ctx, c, queueRequest{Op: "clear", Status: status})
}

func (c *queueChild) Documents(ctx context.Context, search string, limit int) ([]kgworker.DocumentSummary, error) {
	return callInto[[]kgworker.DocumentSummary](ctx, c, queueRequest{Op: "documents", Search: search, Limit: limit})
}

func (c *queueChild) Document(ctx context.Context, id int64) (*kgworker.DocumentDetail, error) {
	return callInto[*kgworker.DocumentDetail](ctx, c, queueRequest{Op: "document", ContentID: id})
}

// Close ends the child: it closes the database when its input ends. A
// child still busy with a call nobody waits for any more (the command was
// interrupted) is killed: nothing else uses it.
func (c *queueChild) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *queueChild) close() error {
	c.in.Close()
	idle := false
	select {
	case c.turn <- struct{}{}:
		idle = true
	default:
	}
	var err error
	if idle {
		select {
		case err = <-c.wait:
		case <-time.After(queueChildGrace):
			c.cmd.Process.Kill() //nolint:errcheck // it may have exited
			err = <-c.wait
		}
	} else {
		c.cmd.Process.Kill() //nolint:errcheck // it may have exited
		err = <-c.wait
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && !exit.Exited() {
		return nil // killed: hung, or interrupted
	}
	return err
}

// queueDBCommand is the hidden command of the child side.
func (a *app) queueDBCommand() *cobra.Command {
	cmd := command(queueDBCommand, "do the queue work of root's commands as the service user", queueDBFlags, a.serveQueueDB)
	cmd.Hidden = true
	return cmd
}

// queueDBOptions are the child's flags.
type queueDBOptions struct {
	dbPath     *string
	maxRetries *int
	readOnly   *bool
	copyOnly   *bool
}

func queueDBFlags(fs *pflag.FlagSet) queueDBOptions {
	return queueDBOptions{
		dbPath:     fs.String("db", "", "queue database"),
		maxRetries: fs.Int("max-retries", 3, "kg.max_retries"),
		readOnly:   fs.Bool("read-only", false, "open the database read-only"),
		copyOnly:   fs.Bool("copy-only", false, "open nothing; only copy the database elsewhere (queue migrate)"),
	}
}

// queueOpHook, when set, runs before each request the child serves; tests
// use it to make the child slow.
var queueOpHook func(op string)

// serveQueueDB is the child side: `kato-manager __queue-db --db PATH
// --max-retries N`, run as the service user by startQueueChild. Without
// --db the first request opens a PostgreSQL database whose URL it carries.
func (a *app) serveQueueDB(ctx context.Context, fs *pflag.FlagSet, o queueDBOptions) error {
	// First: while dumpable, any process of the service user (a processor
	// among them) could ptrace this one or write into /proc/PID/mem.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("%s: make the process non-dumpable: %w", queueDBCommand, err)
	}
	if fs.NArg() > 0 {
		return usagef("%s takes no arguments", queueDBCommand)
	}
	dbPath, maxRetries := o.dbPath, o.maxRetries
	if os.Geteuid() == 0 {
		return usagef("%s does the queue work of root's commands and must not run as root", queueDBCommand)
	}
	var q *kgworker.Queue
	defer func() {
		if q != nil {
			q.Close()
		}
	}()
	var openErr error
	if !*o.copyOnly && *dbPath != "" {
		// queue migrate's copy must not open the file as a queue, which
		// would migrate it.
		q, openErr = openKGQueue(ctx, *dbPath, *maxRetries, *o.readOnly, false)
	}
	in := bufio.NewScanner(a.stdin)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	enc := json.NewEncoder(a.stdout)
	for in.Scan() {
		var req queueRequest
		var result any
		err := json.Unmarshal(in.Bytes(), &req)
		if err == nil && queueOpHook != nil {
			queueOpHook(req.Op)
		}
		switch {
		case err != nil:
		case openErr != nil:
			err = openErr
		case req.Op == "ping":
			result = true
		case req.Op == "copy-to":
			result, err = kgworker.CopyToPostgres(ctx, *dbPath, req.To)
		case *o.copyOnly:
			err = fmt.Errorf("queue operation %q in a copy-only child", req.Op)
		case req.Op == "open" && q == nil && *dbPath == "":
			if q, err = openKGQueue(ctx, req.URL, *maxRetries, *o.readOnly, false); err != nil {
				q = nil
			}
			result = true
		case q == nil:
			err = fmt.Errorf("queue operation %q before the database is open", req.Op)
		case req.Op == "enqueue":
			result, err = q.Enqueue(ctx, req.ContentID, req.Priority)
		case req.Op == "list":
			result, err = q.List(ctx, req.Status, req.Limit)
		case req.Op == "retry-failed":
			result, err = q.RetryFailed(ctx, req.IDs...)
		case req.Op == "stats":
			result, err = q.Stats(ctx)
		case req.Op == "reports":
			result, err = q.Reports(ctx)
		case req.Op == "latencies":
			result, err = q.Latencies(ctx)
		case req.Op == "overview":
			result, err = readOverview(ctx, q, req.Status, req.Limit)
		case req.Op == "priority":
			result, err = q.SetPriority(ctx, req.Priority, req.IDs...)
		case req.Op == "delete":
			result, err = q.Delete(ctx, req.IDs...)
		case req.Op == "requeue":
			result, err = q.Requeue(ctx, req.Priority, req.IDs...)
		case req.Op == "requeue-all":
			result, err = q.RequeueAll(ctx, req.Priority)
		case req.Op == "clear":
			result, err = q.Clear(ctx, req.Status)
		case req.Op == "documents":
			result, err = q.Documents(ctx, req.Search, req.Limit)
		case req.Op == "document":
			result, err = q.Document(ctx, req.ContentID)
		default:
			err = fmt.Errorf("unknown queue operation %q", req.Op)
		}
		var resp queueResponse
		var input *queue.InputError
		if errors.As(err, &input) {
			resp.Input = input
		}
		if err != nil {
			resp.Error = err.Error()
		} else if resp.Result, err = json.Marshal(result); err != nil {
			resp.Error = err.Error()
		}
		if err := enc.Encode(resp); err != nil {
			return err
		}
	}
	return in.Err()
}
