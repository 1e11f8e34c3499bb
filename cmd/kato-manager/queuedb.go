package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/units"
)

// queueDB is the queue work the commands do. The queue database lives in a
// directory the kato user owns, so root never opens it itself: a command
// run as root does its database work in a helper running as kato
// (queueChild), which can reach only what kato can: an instance of
// kato-queue@.service, which systemd starts for each connection to
// kato-queue.socket, or, where that socket is not installed, a child
// process. Anyone else opens the database directly, with its own rights.
type queueDB = kgdb.Store

// queueDBCommand is the hidden command the child runs: the same binary,
// re-executed as the kato user.
const queueDBCommand = "__queue-db"

// serviceUser is who does root's database work; tests change it.
var serviceUser = config.ServiceUser

// queueSocket is where kato-queue.socket listens; tests change it.
var queueSocket = units.QueueSocketPath

// openQueueDB opens the queue database of cfg for this process: directly,
// or as the kato user when running as root in a scope whose workers run as
// kato (the system's; in the user scope the database is the user's own).
// A PostgreSQL queue (kg.db_url) is reached as kato too: the server knows
// the workers' user, and a socket URL with peer authentication lets in only
// that user. The URL, resolved with root's own libpq settings (PGPASSWORD,
// PGSERVICE, ~/.pgpass), goes to the helper in its first request.
func openQueueDB(ctx context.Context, cfg *config.Config, paths config.Paths, readOnly bool) (queueDB, error) {
	if os.Geteuid() != 0 || paths.FileOwner == "" {
		return openLocal(ctx, cfg.KG.Database(), cfg.KG.MaxRetries, readOnly, paths.MakeStateDir)
	}
	open := queueRequest{Op: "open", MaxRetries: cfg.KG.MaxRetries, ReadOnly: readOnly}
	if cfg.KG.DBURL == "" {
		open.DB = cfg.KG.DBPath
	} else {
		dbURL, err := queue.ResolveURL(cfg.KG.DBURL, serviceUser)
		if err != nil {
			return nil, fmt.Errorf("kg.db_url: %w", err)
		}
		open.URL = dbURL
	}
	return startQueueChild(ctx, open)
}

// copyAsServiceUser runs kgworker.CopyToPostgres in a helper running as
// the service user, which reads the SQLite file as the workers do: root
// opening it could leave companion files the workers cannot write. The URL,
// which may hold a password, goes in a request, never on a command line.
func copyAsServiceUser(ctx context.Context, dbPath, to string) (*kgworker.CopyReport, error) {
	c, err := startQueueChild(ctx, queueRequest{Op: "open", DB: dbPath, CopyOnly: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.deadline = 0 // a large queue takes its time; the operator's ^C ends it
	raw, err := c.call(ctx, queueRequest{Op: "copy-to", To: to})
	if err != nil {
		return nil, err
	}
	var report *kgworker.CopyReport
	if err := json.Unmarshal(raw, &report); err != nil {
		return nil, fmt.Errorf("queue access as %s: %w", serviceUser, err)
	}
	return report, nil
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

// openLocal is openKGQueue as a queueDB.
func openLocal(ctx context.Context, dbPath string, maxRetries int, readOnly, makeDir bool) (queueDB, error) {
	q, err := openKGQueue(ctx, dbPath, maxRetries, readOnly, makeDir)
	if err != nil {
		return nil, err
	}
	return kgdb.NewLocal(q), nil
}

// queueChild is a helper running as the service user that does the
// database work of a root command over a connection: one JSON request per
// line in, one JSON response per line out. The helper is an instance of
// kato-queue@.service on a connection to kato-queue.socket (conn), or a
// child process on pipes (cmd). Calls are serialised; a caller that gives
// up (its context ends) leaves the helper to the others.
type queueChild struct {
	kgdb.Client // the operations, each a call

	cmd  *exec.Cmd     // the child, when forked
	conn *net.UnixConn // the connection to kato-queue.socket, otherwise
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

// queueChildGrace is how long Close waits for an idle helper to close its
// database and exit before it kills it or hangs up, and how long a helper
// whose input ended takes at most to exit; tests shorten it.
var queueChildGrace = 10 * time.Second

// queueRequest is one request to the helper: an operation of kgdb's table
// and its arguments, or the helper's own "open", "ping" and "copy-to".
type queueRequest struct {
	Op   string     `json:"op"`
	Args *kgdb.Args `json:"args,omitempty"`
	To   string     `json:"to,omitempty"`
	// The database an "open" request, always the first, opens: the
	// SQLite file DB or the PostgreSQL database URL, with the queue's
	// settings. CopyOnly opens nothing: queue migrate copies DB
	// elsewhere, and must not migrate it by opening it as a queue.
	DB         string `json:"db,omitempty"`
	URL        string `json:"url,omitempty"`
	MaxRetries int    `json:"max_retries,omitempty"`
	ReadOnly   bool   `json:"read_only,omitempty"`
	CopyOnly   bool   `json:"copy_only,omitempty"`
}

// queueResponse is the helper's answer: a result, or an error that keeps
// its kind (and its type, for bad input and a missing record).
type queueResponse struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *kgdb.WireError `json:"error,omitempty"`
}

// startQueueChild starts a helper and sends it open, the "open" request
// that names the database: an error opening the database is reported here,
// as with a direct open.
//
// Where kato-queue.socket is installed (queueSocket exists), the helper is
// the kato-queue@.service instance systemd starts, as the service user, for
// a connection to it: root needs no right to become another user, and the
// helper is in none of root's sessions or process trees. Elsewhere (a
// source install before install-units) it is a child process (forkQueueChild).
func startQueueChild(ctx context.Context, open queueRequest) (*queueChild, error) {
	if open.Op != "open" {
		return nil, fmt.Errorf("queue access: the first request is %q, not open", open.Op)
	}
	var c *queueChild
	var err error
	if info, statErr := os.Lstat(queueSocket); statErr == nil {
		// The first request may carry a password: only root's socket
		// gets it.
		st, ok := info.Sys().(*syscall.Stat_t)
		if info.Mode().Type() != os.ModeSocket || !ok || st.Uid != 0 {
			return nil, fmt.Errorf("queue access: %s is not a socket of root's; remove it and run `systemctl restart %s`", queueSocket, units.QueueSocket)
		}
		c, err = dialQueueHelper(ctx)
	} else {
		c, err = forkQueueChild(open.DB)
	}
	if err != nil {
		return nil, err
	}
	if _, err := c.call(ctx, open); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialQueueHelper connects to kato-queue.socket.
func dialQueueHelper(ctx context.Context) (*queueChild, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", queueSocket)
	if err != nil {
		return nil, fmt.Errorf("queue access as %s through %s: %w (is %s running? systemctl start %s)",
			serviceUser, queueSocket, err, units.QueueSocket, units.QueueSocket)
	}
	uc := conn.(*net.UnixConn)
	c := &queueChild{conn: uc, in: uc, out: bufio.NewReader(uc), turn: make(chan struct{}, 1), deadline: queueCallDeadline}
	c.Client = kgdb.Client{Caller: c}
	return c, nil
}

// forkQueueChild starts the child for the SQLite database at dbPath, or
// for none when dbPath is "". The database's directory is made for the
// service user first if it is missing and its parent belongs to root
// alone, so that no other user can put anything in its place between the
// mkdir and the chown. (Through the socket, kato-queue@.service's
// StateDirectory= makes /var/lib/kato/kg.)
//
// The child holds nothing of root's terminal or session: its stdin and
// stdout are the request pipes, its stderr a pipe this process copies to
// its own, and it runs in a session of its own (setsid), with no
// controlling terminal to push input into (TIOCSTI). It makes itself
// non-dumpable first thing (serveQueueDB), so that no process of the same
// user can ptrace it or open its memory.
func forkQueueChild(dbPath string) (*queueChild, error) {
	u, err := user.Lookup(serviceUser)
	if err != nil {
		return nil, fmt.Errorf("queue database %s is worked on as user %s: %w (run `kato-manager install-units`)", dbPath, serviceUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", serviceUser, err)
	}
	if dbPath != "" {
		if err := ensureQueueDir(filepath.Dir(dbPath), int(uid), int(gid)); err != nil {
			return nil, err
		}
	}
	// The forked child runs this very binary again: /proc/self/exe reaches
	// it even when the service user could not look it up by its path.
	cmd := exec.Command("/proc/self/exe", queueDBCommand)
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
		if errors.Is(err, syscall.EPERM) {
			// kato-manager.service may not become kato: it needs the socket.
			return nil, fmt.Errorf("start queue access as %s: %w (start %s: systemctl start %s)", serviceUser, err, units.QueueSocket, units.QueueSocket)
		}
		return nil, fmt.Errorf("start queue access as %s: %w", serviceUser, err)
	}
	c := &queueChild{cmd: cmd, in: in, out: bufio.NewReader(out), wait: make(chan error, 1),
		turn: make(chan struct{}, 1), deadline: queueCallDeadline}
	c.Client = kgdb.Client{Caller: c}
	go func() { c.wait <- cmd.Wait() }()
	return c, nil
}

// kill ends the helper at once: the child is killed; the socket's helper
// sees its connection close, and exits (serveQueueDB).
func (c *queueChild) kill() {
	if c.cmd != nil {
		c.cmd.Process.Kill() //nolint:errcheck // it may have exited
		return
	}
	c.conn.Close()
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
		os.Remove(dir) //nolint:errcheck // root's own, just made, empty
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
				c.kill()
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
		if a.resp.Error != nil {
			return nil, a.resp.Error.Err()
		}
		return a.resp.Result, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("queue access as %s: %w", serviceUser, ctx.Err())
	}
}

// errChildGone marks a call after which the child cannot be used again;
// its kind is unavailable.
var errChildGone error = childGone{}

type childGone struct{}

func (childGone) Error() string        { return "queue child gone" }
func (childGone) Is(target error) bool { return target == config.ErrUnavailable }

// reopeningQueue is a queueDB for a long-running command (serve): a child
// that died, or was killed for hanging, is replaced on the next call. Calls
// run concurrently; a child serialises them itself.
type reopeningQueue struct {
	kgdb.Client
	mu   sync.Mutex
	open func() (queueDB, error)
	q    queueDB
}

// newReopeningQueue returns a reopeningQueue on first (nil: none yet),
// opening a new one with open when it is gone.
func newReopeningQueue(first queueDB, open func() (queueDB, error)) *reopeningQueue {
	r := &reopeningQueue{q: first, open: open}
	r.Client = kgdb.Client{Caller: r}
	return r
}

// Call runs an operation on the current child, or a new one.
func (r *reopeningQueue) Call(ctx context.Context, name string, args kgdb.Args, result any) error {
	return r.do(func(q queueDB) error {
		c, ok := q.(kgdb.Caller)
		if !ok {
			return fmt.Errorf("queue access: %T runs no operation of the table", q)
		}
		return c.Call(ctx, name, args, result)
	})
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

// Call runs an operation of kgdb's table in the child.
func (c *queueChild) Call(ctx context.Context, name string, args kgdb.Args, result any) error {
	raw, err := c.call(ctx, queueRequest{Op: name, Args: &args})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return fmt.Errorf("queue access as %s: %w", serviceUser, err)
	}
	return nil
}

// Close ends the child: it closes the database when its input ends. A
// child still busy with a call nobody waits for any more (the command was
// interrupted) is killed: nothing else uses it.
func (c *queueChild) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *queueChild) close() error {
	idle := false
	select {
	case c.turn <- struct{}{}:
		idle = true
	default:
	}
	if c.cmd == nil {
		return c.closeConn(idle)
	}
	c.in.Close()
	var err error
	if idle {
		select {
		case err = <-c.wait:
		case <-time.After(queueChildGrace):
			c.kill()
			err = <-c.wait
		}
	} else {
		c.kill()
		err = <-c.wait
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && !exit.Exited() {
		return nil // killed: hung, or interrupted
	}
	return err
}

// closeConn ends the connection to the socket's helper: an idle one is
// told there is no more (the write side shut), and given queueChildGrace
// to close its database and hang up; a busy one is hung up on.
func (c *queueChild) closeConn(idle bool) error {
	if !idle {
		return c.conn.Close()
	}
	if err := c.conn.CloseWrite(); err == nil {
		c.conn.SetReadDeadline(time.Now().Add(queueChildGrace)) //nolint:errcheck // a socket takes it
		io.Copy(io.Discard, c.out)                              //nolint:errcheck // until the helper hangs up
	}
	return c.conn.Close()
}

// queueDBCommand is the hidden command of the helper side.
func (a *app) queueDBCommand() *cobra.Command {
	cmd := command(queueDBCommand, "do the queue work of root's commands as the service user", func(*pflag.FlagSet) struct{} { return struct{}{} }, a.serveQueueDB)
	cmd.Hidden = true
	return cmd
}

// queueOpHook, when set, runs before each request the helper serves, with
// the database it opened; tests use it to make the helper slow.
var queueOpHook func(db, op string)

// serveQueueDB is the helper side: `kato-manager __queue-db`, run as the
// service user by kato-queue@.service on a connection, or by
// forkQueueChild on pipes. The first request opens the database.
//
// Once its input ends (the other side hung up, or gave up on a call that
// hangs), the request in progress is cancelled, and the helper exits
// within queueChildGrace whether or not it returns: nothing else would end
// a helper of the socket's.
func (a *app) serveQueueDB(ctx context.Context, fs *pflag.FlagSet, _ struct{}) error {
	// First: while dumpable, any process of the service user (a processor
	// among them) could ptrace this one or write into /proc/PID/mem.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("%s: make the process non-dumpable: %w", queueDBCommand, err)
	}
	if fs.NArg() > 0 {
		return usagef("%s takes no arguments", queueDBCommand)
	}
	if os.Geteuid() == 0 {
		return usagef("%s does the queue work of root's commands and must not run as root", queueDBCommand)
	}
	var q *kgworker.Queue
	defer func() {
		if q != nil {
			q.Close()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		in := bufio.NewScanner(a.stdin)
		in.Buffer(make([]byte, 64<<10), 16<<20)
		for in.Scan() {
			select {
			case lines <- bytes.Clone(in.Bytes()):
			case <-ctx.Done():
				return
			}
		}
		readErr <- in.Err()
		cancel()
		time.AfterFunc(queueChildGrace, func() { os.Exit(1) })
	}()
	var open queueRequest
	opened := false
	enc := json.NewEncoder(a.stdout)
	for line := range lines {
		var req queueRequest
		var result any
		err := json.Unmarshal(line, &req)
		if err == nil && queueOpHook != nil {
			queueOpHook(open.DB, req.Op)
		}
		switch {
		case err != nil:
		case !opened && req.Op != "open":
			err = fmt.Errorf("queue operation %q before the database is open", req.Op)
		case req.Op == "open" && opened:
			err = errors.New("queue database opened twice")
		case req.Op == "open":
			opened, open = true, req
			result, q, err = openForRoot(ctx, req)
		case req.Op == "ping":
			result = true
		case req.Op == "copy-to" && open.CopyOnly:
			result, err = kgworker.CopyToPostgres(ctx, open.DB, req.To)
		case open.CopyOnly:
			err = fmt.Errorf("queue operation %q in a copy-only helper", req.Op)
		case q == nil:
			err = fmt.Errorf("queue operation %q before the database is open", req.Op)
		default:
			var args kgdb.Args
			if req.Args != nil {
				args = *req.Args
			}
			result, err = kgdb.Serve(ctx, q, req.Op, args)
		}
		var resp queueResponse
		if err == nil {
			resp.Result, err = json.Marshal(result)
		}
		resp.Error = kgdb.EncodeError(err)
		if err := enc.Encode(resp); err != nil {
			return err
		}
		if req.Op == "open" && err != nil {
			return nil // told; nothing more to do
		}
	}
	select {
	case err := <-readErr:
		return err
	default:
		return nil
	}
}

// openForRoot opens the database an "open" request names, or checks it is
// there for a copy.
func openForRoot(ctx context.Context, req queueRequest) (bool, *kgworker.Queue, error) {
	switch {
	case req.DB != "" && req.URL != "":
		return false, nil, errors.New("open names both a SQLite file and a PostgreSQL URL")
	case req.CopyOnly && req.DB == "":
		return false, nil, errors.New("a copy names no SQLite file")
	case req.CopyOnly:
		return true, nil, nil
	case req.DB == "" && req.URL == "":
		return false, nil, errors.New("open names no database")
	}
	db := req.DB
	if db == "" {
		db = req.URL
	}
	q, err := openKGQueue(ctx, db, req.MaxRetries, req.ReadOnly, false)
	if err != nil {
		return false, nil, err
	}
	return true, q, nil
}
