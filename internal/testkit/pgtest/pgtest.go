// Package pgtest starts a throwaway PostgreSQL cluster for a test: initdb
// into a temporary directory, the server listening only on a unix socket
// in that directory (no TCP), trust authentication, stopped and removed
// when the test ends. It uses the binaries of Debian's postgresql package
// (/usr/lib/postgresql/VERSION/bin), found on any machine that has it, an
// sdharness machine's overlay of / included.
//
// Run as root, the cluster belongs to the postgres user (PostgreSQL refuses
// to run as root); otherwise to the caller. When PostgreSQL is missing the
// test is skipped, or fails under CI=true; -short skips it.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver of Admin
)

// Server is a running throwaway cluster.
type Server struct {
	// Dir holds the data directory and the server's socket.
	Dir string
	// User is the database superuser, the cluster's owner.
	User   string
	port   int
	dbs    atomic.Int64
	cmd    *exec.Cmd
	exited chan struct{}
}

// binDir returns the newest /usr/lib/postgresql/*/bin holding initdb.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		return "", errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; apt-get install postgresql)")
	}
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[j]))))
		return vi > vj
	})
	return filepath.Dir(dirs[0]), nil
}

// unavailable skips t, or fails it under CI=true, where PostgreSQL must be
// there.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL unavailable under CI=true: "+format, args...)
	}
	t.Skipf("PostgreSQL unavailable: "+format, args...)
}

// Launch starts a cluster outside a test (the benchmark's); Close stops
// it.
func Launch() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	return start(bin)
}

// Close stops the cluster and removes it.
func (s *Server) Close() { s.stop() }

// Start starts a cluster for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWithAuth(t)
}

// StartWithAuth is Start with client authentication (pg_hba.conf lines)
// for a test of peer or password authentication. The cluster's owner keeps
// trust over the socket, so the test's own SQL (Admin, Count, NewDB) works
// as with Start.
func StartWithAuth(t testing.TB, hba ...string) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no PostgreSQL cluster")
	}
	bin, err := binDir()
	if err != nil {
		unavailable(t, "%v", err)
	}
	s, err := start(bin, hba...)
	if err != nil {
		unavailable(t, "%v", err)
	}
	t.Cleanup(s.stop)
	return s
}

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
)

// Shared is Start for a cluster that every test of the package shares
// (each takes its own database of it with NewDB): started by the first test
// that asks, stopped by Main when the tests end.
func Shared(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no PostgreSQL cluster")
	}
	sharedOnce.Do(func() {
		var bin string
		if bin, sharedErr = binDir(); sharedErr == nil {
			shared, sharedErr = start(bin)
		}
	})
	if sharedErr != nil {
		unavailable(t, "%v", sharedErr)
	}
	return shared
}

// Main runs the tests of a package that uses Shared and then stops the
// shared cluster: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

var nextPort atomic.Int64

func start(bin string, hba ...string) (*Server, error) {
	// Not t.TempDir: its parents are root's alone, and the server runs as
	// postgres when the test runs as root.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	// Any local user may reach the socket, as a test's child process
	// running as another user (the kato user's stand-in) must.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var cred *syscall.Credential
	owner := ""
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, the cluster needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		owner = "postgres"
	} else {
		u, err := user.Current()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		owner = u.Username
	}
	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
		return cmd
	}
	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-U", owner, "--auth=trust", "--encoding=UTF8", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	if hba != nil {
		rules := "local all " + owner + " trust\n" + strings.Join(hba, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(rules), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	// The port only names the socket file: no TCP listener is opened.
	port := 50000 + int(nextPort.Add(1)) + os.Getpid()%10000
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logFile.Close()
	// The server is this process's child, killed with it (Pdeathsig), so a
	// test binary that dies leaves no cluster behind.
	srv := run("postgres", "-D", data, "-k", dir, "-p", strconv.Itoa(port), "-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200")
	srv.Stdout, srv.Stderr = logFile, logFile
	srv.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := srv.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { srv.Wait(); close(exited) }() //nolint:errcheck // stop reads the log
	s := &Server{Dir: dir, User: owner, port: port, cmd: srv, exited: exited}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			_, err = conn.Exec(context.Background(), "CREATE DATABASE "+testDatabase)
			conn.Close(context.Background())
			if err != nil {
				s.stop()
				return nil, fmt.Errorf("create database %s: %w", testDatabase, err)
			}
			return s, nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile.Name())
			os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres exited: %s", log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("postgres did not accept connections within 60s: %v", err)
		}
	}
}

// stop shuts the server down at once (SIGQUIT, PostgreSQL's immediate
// shutdown) and removes the cluster.
func (s *Server) stop() {
	s.cmd.Process.Signal(syscall.SIGQUIT) //nolint:errcheck // it may be gone
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill() //nolint:errcheck // it may be gone
		<-s.exited
	}
	os.RemoveAll(s.Dir)
}

// URL is the postgres:// URL of database name on the cluster, over its
// socket.
func (s *Server) URL(name string) string {
	q := url.Values{"host": {s.Dir}, "port": {strconv.Itoa(s.port)}}
	return (&url.URL{Scheme: "postgres", User: url.User(s.User), Path: "/" + name, RawQuery: q.Encode()}).String()
}

// Admin opens the cluster's postgres database for t's own SQL.
func (s *Server) Admin(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// NewDB makes an empty database for t and returns its URL. It is a schema
// of its own in the cluster's test database, named in the URL's
// search_path: creating a schema takes a millisecond, a database a third of
// a second. Whatever t creates is found in its schema only; the cluster is
// removed when the tests end.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	u, err := s.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// NewDatabase is NewDB outside a test.
func (s *Server) NewDatabase() (string, error) {
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL(testDatabase))
	if err != nil {
		return "", fmt.Errorf("connect to the test cluster: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", fmt.Errorf("create schema %s: %w", name, err)
	}
	u, _ := url.Parse(s.URL(testDatabase))
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// testDatabase is the database of the cluster where NewDB makes schemas.
const testDatabase = "kgtest"

// Count runs a count query on the database at dbURL.
func Count(t testing.TB, dbURL, query string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", strings.TrimSpace(query), err)
	}
	return n
}
