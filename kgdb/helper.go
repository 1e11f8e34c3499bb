package kgdb

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

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
	"golang.org/x/sys/unix"
)

// Helper is a helper running as the service user that does the
// database work of a root command over a connection: one JSON request per
// line in, one JSON response per line out. The helper is an instance of
// kato-queue@.service on a connection to kato-queue.socket (conn), or a
// child process on pipes (cmd). Calls are serialised; a caller that gives
// up (its context ends) leaves the helper to the others.
type Helper struct {
	Client // the operations, each a call

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
	// user is who the helper runs as, for messages; grace as Access's.
	user  string
	grace time.Duration

	closeOnce sync.Once
	closeErr  error
}

// DefaultCallDeadline is how long a call may take before its helper is
// taken for hung and killed. No request of the queue commands or of serve
// comes near it.
const DefaultCallDeadline = 5 * time.Minute

// DefaultGrace is how long Close waits for an idle helper to close its
// database and exit before it kills it or hangs up, and how long a helper
// whose input ended takes at most to exit.
const DefaultGrace = 10 * time.Second

// HelperCommand is the hidden command of kato-manager that serves as the
// helper (Serve): the same binary, re-executed as the service user, or run
// by kato-queue@.service.
const HelperCommand = "__queue-db"

// Access is how root reaches the database: through a helper running as
// User, an instance of kato-queue@.service behind Socket where it is
// installed, else a child process.
type Access struct {
	// User is the service user the helper runs as.
	User string
	// Socket is where kato-queue.socket listens.
	Socket string
	// CallDeadline bounds one call (DefaultCallDeadline when zero); Grace
	// is the helper's time to close (DefaultGrace when zero).
	CallDeadline, Grace time.Duration
}

// Request is one request to the helper: an operation of the table
// and its arguments, or the helper's own "open" and "copy-to" (which
// runs in a helper that opened no database: the source must not be migrated).
type Request struct {
	Op   string `json:"op"`
	Args *Args  `json:"args,omitempty"`
	To   string `json:"to,omitempty"`
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

// response is the helper's answer: a result, or an error that keeps
// its kind (and its type, for bad input and a missing record).
type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *WireError      `json:"error,omitempty"`
}

// Start starts a helper and sends it open, the "open" request
// that names the database: an error opening the database is reported here,
// as with a direct open.
//
// Where kato-queue.socket is installed (a.Socket exists), the helper is
// the kato-queue@.service instance systemd starts, as the service user, for
// a connection to it: root needs no right to become another user, and the
// helper is in none of root's sessions or process trees. Elsewhere (a
// source install before install-units) it is a child process (fork).
func (a Access) Start(ctx context.Context, open Request) (*Helper, error) {
	if open.Op != "open" {
		return nil, fmt.Errorf("queue access: the first request is %q, not open", open.Op)
	}
	var c *Helper
	var err error
	if info, statErr := os.Lstat(a.Socket); statErr == nil {
		// The first request may carry a password: only root's socket
		// gets it.
		st, ok := info.Sys().(*syscall.Stat_t)
		if info.Mode().Type() != os.ModeSocket || !ok || st.Uid != 0 {
			return nil, fmt.Errorf("queue access: %s is not a socket of root's; remove it and run `systemctl restart %s`", a.Socket, units.QueueSocket)
		}
		c, err = a.dial(ctx)
	} else {
		c, err = a.fork(open.DB)
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

// dial connects to kato-queue.socket.
func (a Access) dial(ctx context.Context) (*Helper, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", a.Socket)
	if err != nil {
		return nil, fmt.Errorf("queue access as %s through %s: %w (is %s running? systemctl start %s)",
			a.User, a.Socket, err, units.QueueSocket, units.QueueSocket)
	}
	uc := conn.(*net.UnixConn)
	c := &Helper{conn: uc, in: uc, out: bufio.NewReader(uc), turn: make(chan struct{}, 1), deadline: a.callDeadline(), user: a.User, grace: a.grace()}
	c.Client = Client{Caller: c}
	return c, nil
}

// fork starts the child for the SQLite database at dbPath, or
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
// non-dumpable first thing (Serve), so that no process of the same
// user can ptrace it or open its memory.
func (a Access) fork(dbPath string) (*Helper, error) {
	u, err := user.Lookup(a.User)
	if err != nil {
		return nil, fmt.Errorf("queue database %s is worked on as user %s: %w (run `kato-manager install-units`)", dbPath, a.User, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", a.User, err)
	}
	if dbPath != "" {
		if err := a.ensureDir(filepath.Dir(dbPath), int(uid), int(gid)); err != nil {
			return nil, err
		}
	}
	// The forked child runs this very binary again: /proc/self/exe reaches
	// it even when the service user could not look it up by its path.
	cmd := exec.Command("/proc/self/exe", HelperCommand)
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
			return nil, fmt.Errorf("start queue access as %s: %w (start %s: systemctl start %s)", a.User, err, units.QueueSocket, units.QueueSocket)
		}
		return nil, fmt.Errorf("start queue access as %s: %w", a.User, err)
	}
	c := &Helper{cmd: cmd, in: in, out: bufio.NewReader(out), wait: make(chan error, 1),
		turn: make(chan struct{}, 1), deadline: a.callDeadline(), user: a.User, grace: a.grace()}
	c.Client = Client{Caller: c}
	go func() { c.wait <- cmd.Wait() }()
	return c, nil
}

// callDeadline and grace are a's, or their defaults.
func (a Access) callDeadline() time.Duration {
	if a.CallDeadline == 0 {
		return DefaultCallDeadline
	}
	return a.CallDeadline
}

func (a Access) grace() time.Duration {
	if a.Grace == 0 {
		return DefaultGrace
	}
	return a.Grace
}

// PID returns the process id of a forked helper; 0 for one reached through
// the socket.
func (c *Helper) PID() int {
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// kill ends the helper at once: the child is killed; the socket's helper
// sees its connection close, and exits (Serve).
func (c *Helper) kill() {
	if c.cmd != nil {
		c.cmd.Process.Kill() //nolint:errcheck // it may have exited
		return
	}
	c.conn.Close()
}

// ensureDir creates dir for uid:gid when it is missing. It does so only
// below a directory that root owns and nobody else can write; anywhere else
// the administrator creates it.
func (a Access) ensureDir(dir string, uid, gid int) error {
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
		return fmt.Errorf("queue directory %s does not exist and %s is not a directory only root can write: create it for user %s", dir, parent, a.User)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		return fmt.Errorf("create queue directory: %w", err)
	}
	// Only root can write parent, so dir is still the directory just made.
	if err := os.Lchown(dir, uid, gid); err != nil {
		os.Remove(dir) //nolint:errcheck // root's own, just made, empty
		return fmt.Errorf("give queue directory %s to %s: %w", dir, a.User, err)
	}
	return nil
}

// call sends one request and reads its response. A caller whose context
// ends while it waits for its turn leaves without touching the child; one
// whose request is already written leaves its answer to be read and
// dropped. Only a child that does not answer within c.deadline, or whose
// pipe fails, is given up (ErrHelperGone).
func (c *Helper) call(ctx context.Context, req Request) (json.RawMessage, error) {
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("queue access as %s: %w", c.user, ctx.Err())
	}
	if broken := c.broken.Load(); broken != nil {
		<-c.turn
		return nil, *broken
	}
	type answer struct {
		resp response
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
			a.err = fmt.Errorf("queue access as %s: %w: no answer to %s within %s, killed", c.user, ErrHelperGone, req.Op, c.deadline)
		} else if a.err != nil {
			a.err = fmt.Errorf("queue access as %s: %w: %w", c.user, ErrHelperGone, a.err)
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
		return nil, fmt.Errorf("queue access as %s: %w", c.user, ctx.Err())
	}
}

// ErrHelperGone marks a call after which the child cannot be used again;
// its kind is unavailable.
var ErrHelperGone error = helperGone{}

type helperGone struct{}

func (helperGone) Error() string        { return "queue child gone" }
func (helperGone) Is(target error) bool { return target == config.ErrUnavailable }

// Reopening is a Store for a long-running command (serve): a child
// that died, or was killed for hanging, is replaced on the next call. Calls
// run concurrently; a child serialises them itself.
type Reopening struct {
	Client
	mu   sync.Mutex
	open func() (Store, error)
	q    Store
}

// NewReopening returns a Reopening on first (nil: none yet),
// opening a new one with open when it is gone.
func NewReopening(first Store, open func() (Store, error)) *Reopening {
	r := &Reopening{q: first, open: open}
	r.Client = Client{Caller: r}
	return r
}

// Call runs an operation on the current child, or a new one.
func (r *Reopening) Call(ctx context.Context, name string, args Args, result any) error {
	return r.do(func(q Store) error {
		c, ok := q.(Caller)
		if !ok {
			return fmt.Errorf("queue access: %T runs no operation of the table", q)
		}
		return c.Call(ctx, name, args, result)
	})
}

func (r *Reopening) do(fn func(Store) error) error {
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
	if errors.Is(err, ErrHelperGone) {
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

func (r *Reopening) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.q == nil {
		return nil
	}
	err := r.q.Close()
	r.q = nil
	return err
}

// Call runs an operation of the table in the helper.
func (c *Helper) Call(ctx context.Context, name string, args Args, result any) error {
	raw, err := c.call(ctx, Request{Op: name, Args: &args})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return fmt.Errorf("queue access as %s: %w", c.user, err)
	}
	return nil
}

// Close ends the child: it closes the database when its input ends. A
// child still busy with a call nobody waits for any more (the command was
// interrupted) is killed: nothing else uses it.
func (c *Helper) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Helper) close() error {
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
		case <-time.After(c.grace):
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
// told there is no more (the write side shut), and given c.grace
// to close its database and hang up; a busy one is hung up on.
func (c *Helper) closeConn(idle bool) error {
	if !idle {
		return c.conn.Close()
	}
	if err := c.conn.CloseWrite(); err == nil {
		c.conn.SetReadDeadline(time.Now().Add(c.grace)) //nolint:errcheck // a socket takes it
		io.Copy(io.Discard, c.out)                      //nolint:errcheck // until the helper hangs up
	}
	return c.conn.Close()
}

// Copy runs CopyToPostgres in a helper running as the service user, which
// reads the SQLite file as the workers do: root opening it could leave
// companion files the workers cannot write. The URL, which may hold a
// password, goes in a request, never on a command line.
func (a Access) Copy(ctx context.Context, dbPath, to string) (*CopyReport, error) {
	c, err := a.Start(ctx, Request{Op: "open", DB: dbPath, CopyOnly: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.deadline = 0 // a large queue takes its time; the operator's ^C ends it
	raw, err := c.call(ctx, Request{Op: "copy-to", To: to})
	if err != nil {
		return nil, err
	}
	var report *CopyReport
	if err := json.Unmarshal(raw, &report); err != nil {
		return nil, fmt.Errorf("queue access as %s: %w", a.User, err)
	}
	return report, nil
}

// ServeOptions change Serve's defaults.
type ServeOptions struct {
	// Grace is how long the helper takes at most to exit once its input
	// ended (DefaultGrace when zero).
	Grace time.Duration
	// Hook, when set, runs before each request, with the database the
	// helper opened; tests use it to make the helper slow.
	Hook func(db, op string)
}

// Serve is the helper side: `kato-manager __queue-db`, run as the service
// user by kato-queue@.service on a connection, or by Access.Start on pipes,
// reading requests from in and answering on out. The first request opens
// the database.
//
// Once its input ends (the other side hung up, or gave up on a call that
// hangs), the request in progress is cancelled, and the helper exits
// within the grace whether or not it returns: nothing else would end
// a helper of the socket's.
func Serve(ctx context.Context, in io.Reader, out io.Writer, opts ServeOptions) error {
	// First: while dumpable, any process of the service user (a processor
	// among them) could ptrace this one or write into /proc/PID/mem.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("%s: make the process non-dumpable: %w", HelperCommand, err)
	}
	if os.Geteuid() == 0 {
		return &config.FieldError{Field: "user", Value: "root", Rule: HelperCommand + " does the queue work of root's commands and must not run as root"}
	}
	grace := opts.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	var q *DB
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
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			select {
			case lines <- bytes.Clone(sc.Bytes()):
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
		cancel()
		time.AfterFunc(grace, func() { os.Exit(1) })
	}()
	var open Request
	opened := false
	enc := json.NewEncoder(out)
	for line := range lines {
		var req Request
		var result any
		err := json.Unmarshal(line, &req)
		if err == nil && opts.Hook != nil {
			opts.Hook(open.DB, req.Op)
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
		case req.Op == "copy-to" && open.CopyOnly:
			result, err = CopyToPostgres(ctx, open.DB, req.To)
		case open.CopyOnly:
			err = fmt.Errorf("queue operation %q in a copy-only helper", req.Op)
		case q == nil:
			err = fmt.Errorf("queue operation %q before the database is open", req.Op)
		default:
			var args Args
			if req.Args != nil {
				args = *req.Args
			}
			result, err = serveOp(ctx, q, req.Op, args)
		}
		var resp response
		if err == nil {
			resp.Result, err = json.Marshal(result)
		}
		resp.Error = EncodeError(err)
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
func openForRoot(ctx context.Context, req Request) (bool, *DB, error) {
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
	q, err := OpenFor(ctx, db, req.MaxRetries, req.ReadOnly, false)
	if err != nil {
		return false, nil, err
	}
	return true, q, nil
}

// OpenFor opens the database at dbPath (a file or a postgres:// URL) in this
// process: read-only commands take no write lock, so they never wait for,
// or hold up, the workers.
func OpenFor(ctx context.Context, dbPath string, maxRetries int, readOnly, makeDir bool) (*DB, error) {
	open := Open
	if readOnly {
		open = OpenReadOnly
	}
	return open(ctx, dbPath, WithMaxRetries(maxRetries), WithMakeDir(makeDir))
}
