package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
	"github.com/kato-manager/kato-manager/kgworker"
)

// runMainEnv makes the test binary run main instead of the tests, so that
// the tests can start kg-worker as a process.
const runMainEnv = "KG_WORKER_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// cleanEnv is the test's environment without anything that would steer
// the worker from outside the test.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "NOTIFY_SOCKET", name == "WATCHDOG_USEC", name == "WATCHDOG_PID",
			name == "KATO_CONFIG", name == "DB_PATH", strings.HasPrefix(name, "KG_"):
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, runMainEnv+"=1"), extra...)
}

func worker(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = env
	return cmd
}

func writeConfig(t *testing.T, dir, kg string) string {
	t.Helper()
	path := filepath.Join(dir, "kato.toml")
	if err := os.WriteFile(path, []byte("[kg]\n"+kg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInvocationErrors(t *testing.T) {
	dir := t.TempDir()
	badConfig := writeConfig(t, dir, "batch_size = 0\n")
	goodConfig := filepath.Join(dir, "missing.toml") // absent: defaults apply
	// With --user the worker reads $XDG_CONFIG_HOME/kato/kato.toml.
	userConfigHome := filepath.Join(dir, "config")
	if err := os.MkdirAll(filepath.Join(userConfigHome, "kato"), 0o755); err != nil {
		t.Fatal(err)
	}
	userConfig := writeConfig(t, filepath.Join(userConfigHome, "kato"), "batch_size = 0\n")
	for _, tc := range []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		want     string
	}{
		{"no worker id", nil, nil, exitUsage, "missing --worker-id"},
		{"negative worker id", []string{"--worker-id", "-1"}, nil, exitUsage, "invalid --worker-id -1: must be zero or more"},
		{"stray argument", []string{"--worker-id", "1", "extra"}, nil, exitUsage, `unexpected argument "extra"`},
		{"unknown flag", []string{"--worker-id", "1", "--workers", "2"}, nil, exitUsage, "unknown flag: --workers"},
		{"invalid config", []string{"--worker-id", "1", "--config", badConfig}, nil, exitFailed, "kg.batch_size"},
		{"invalid environment", []string{"--worker-id", "1", "--config", goodConfig}, []string{"KG_BATCH_SIZE=lots"},
			exitFailed, "KG_BATCH_SIZE"},
		{"config from KATO_CONFIG", []string{"--worker-id", "1"}, []string{"KATO_CONFIG=" + badConfig}, exitFailed, badConfig},
		{"unopenable database", []string{"--worker-id", "1", "--config", goodConfig},
			[]string{"DB_PATH=" + filepath.Join(dir, "no", "such", "dir", "kg.db")}, exitFailed, "open kg database"},
		{"version", []string{"--version"}, nil, exitOK, "kg-worker dev"},
		{"user scope without a home", []string{"--user", "--worker-id", "1"},
			[]string{"HOME=", "XDG_CONFIG_HOME=", "XDG_STATE_HOME=", "XDG_DATA_HOME="}, exitUsage, "invalid HOME"},
		{"user scope reads the user's config", []string{"--user", "--worker-id", "1"},
			[]string{"XDG_CONFIG_HOME=" + userConfigHome, "XDG_STATE_HOME=" + dir}, exitFailed, userConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := worker(cleanEnv(tc.env...), tc.args...).CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode || !strings.Contains(string(out), tc.want) {
				t.Errorf("exit %d with %q; want exit %d and output containing %q", code, out, tc.wantCode, tc.want)
			}
		})
	}
}

// notifications collects what the worker sends to NOTIFY_SOCKET.
type notifications struct {
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) (string, *notifications) {
	t.Helper()
	dir, err := os.MkdirTemp("", "kgw") // socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &notifications{}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return path, n
}

func (n *notifications) count(msg string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if m == msg {
			c++
		}
	}
	return c
}

func (n *notifications) last(prefix string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.msgs) - 1; i >= 0; i-- {
		if strings.HasPrefix(n.msgs[i], prefix) {
			return n.msgs[i]
		}
	}
	return ""
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkerProcess runs kg-worker as systemd would, with a notify socket
// and a watchdog, against the fake KG service.
func TestWorkerProcess(t *testing.T) {
	fake, srv, dir, dbPath, q := workerQueue(t, 6)
	ctx := context.Background()
	for c := int64(1); c <= 6; c++ {
		if _, err := q.Enqueue(ctx, c, 1); err != nil {
			t.Fatal(err)
		}
	}

	// db_path in the file is overridden by DB_PATH in the environment.
	config := writeConfig(t, dir, fmt.Sprintf("poll_interval = 0.1\nservice_url = %q\nbatch_size = 4\ndb_path = \"/nonexistent/kg.db\"\n", srv.URL))
	socket, notes := listenNotify(t)
	cmd := worker(cleanEnv("NOTIFY_SOCKET="+socket, "WATCHDOG_USEC=300000", "DB_PATH="+dbPath),
		"--worker-id", "3", "--config", config)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		<-exited
	})

	waitUntil(t, 10*time.Second, "READY=1", func() bool { return notes.count("READY=1") == 1 })
	waitUntil(t, 10*time.Second, "all items completed", func() bool {
		st, err := q.Stats(ctx)
		return err == nil && st.Completed == 6
	})
	for c, n := range fake.Ingested() {
		if n != 1 {
			t.Errorf("content %d ingested %d times", c, n)
		}
	}
	waitUntil(t, 5*time.Second, "final STATUS", func() bool {
		return notes.last("STATUS=") == "STATUS=processed 6 ok 6 failed 0 queue pending 0"
	})
	statusLine := regexp.MustCompile(`^STATUS=processed \d+ ok \d+ failed \d+ queue pending \d+$`)
	notes.mu.Lock()
	for _, m := range notes.msgs {
		if strings.HasPrefix(m, "STATUS=") && !statusLine.MatchString(m) {
			t.Errorf("malformed status %q", m)
		}
	}
	notes.mu.Unlock()

	// The watchdog is fed every 150ms, half of WATCHDOG_USEC.
	before := notes.count("WATCHDOG=1")
	time.Sleep(time.Second)
	if fed := notes.count("WATCHDOG=1") - before; fed < 4 {
		t.Errorf("watchdog fed %d times in 1s, want at least 4", fed)
	}

	// A stopped process stops feeding the watchdog.
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	before = notes.count("WATCHDOG=1")
	time.Sleep(700 * time.Millisecond)
	if fed := notes.count("WATCHDOG=1") - before; fed != 0 {
		t.Errorf("stopped worker fed the watchdog %d times", fed)
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "watchdog fed again after SIGCONT", func() bool { return notes.count("WATCHDOG=1") > before })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after SIGTERM\n%s", stderr.String())
	}
	if notes.count("STOPPING=1") != 1 {
		t.Errorf("STOPPING=1 sent %d times, want once", notes.count("STOPPING=1"))
	}
	st, err := q.Stats(ctx)
	if err != nil || st.Processing != 0 {
		t.Errorf("queue after exit: %+v, %v; want nothing in processing", st, err)
	}
	for _, want := range []string{"worker 3 ready", "stopped: processed 6 ok 6 failed 0 skipped 0"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestReportAgreesWithQueue: once the queue shows a burst of items done,
// the worker's report (what `kato-manager workers stats` adds up) counts
// them within reportLag, skipped ones too. The loop's own progress calls
// come every 10s here (no watchdog), and were all the report had: it said
// processed 0 while the queue showed every item done.
func TestReportAgreesWithQueue(t *testing.T) {
	_, srv, dir, dbPath, q := workerQueue(t, 6)
	ctx := context.Background()
	config := writeConfig(t, dir, fmt.Sprintf("poll_interval = 5.0\nservice_url = %q\nbatch_size = 8\n", srv.URL))
	cmd := worker(cleanEnv("DB_PATH="+dbPath), "--worker-id", "1", "--config", config)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	report := func() kgworker.Stats {
		reports, err := q.Reports(ctx)
		if err != nil || len(reports) != 1 {
			return kgworker.Stats{TotalProcessed: -1}
		}
		return reports[0].Stats
	}
	waitUntil(t, 10*time.Second, "the first report", func() bool { return report().TotalProcessed == 0 })
	for c := int64(1); c <= 6; c++ {
		if _, err := q.Enqueue(ctx, c, 1); err != nil {
			t.Fatal(err)
		}
	}
	// A document removed after it was queued is skipped.
	if _, err := q.Enqueue(ctx, 77, 1); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the queue to show every item done", func() bool {
		st, err := q.Stats(ctx)
		return err == nil && st.Completed == 6 && st.Skipped == 1
	})
	done := time.Now()
	waitUntil(t, 5*time.Second, "the report to count them", func() bool {
		st := report()
		return st.TotalProcessed == 7 && st.TotalSuccess == 6 && st.TotalSkipped == 1
	})
	if lag := time.Since(done); lag > reportLag+500*time.Millisecond {
		t.Errorf("the report counted the items %s after the queue showed them, want within %s", lag, reportLag)
	}
}

// workerQueue makes a queue database in a new directory dir, holding the
// stored documents 1 to n of one chunk each, none of them queued, and
// serves the KG service double.
func workerQueue(t *testing.T, n int) (fake *kgservicefake.Server, srv *httptest.Server, dir, dbPath string, q *kgworker.Queue) {
	t.Helper()
	fake = kgservicefake.New()
	srv = httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	dir = t.TempDir()
	dbPath = filepath.Join(dir, "kg.db")
	q, err := kgworker.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for c := 1; c <= n; c++ {
		if _, err := db.Exec("INSERT INTO crawled_content(id, url, markdown) VALUES (?, ?, ?)", c, fmt.Sprint("https://example.org/", c),
			strings.Repeat("markdown ", 10)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end) VALUES (?, 0, 'the first chunk', 0, 15)", c); err != nil {
			t.Fatal(err)
		}
	}
	return fake, srv, dir, dbPath, q
}
