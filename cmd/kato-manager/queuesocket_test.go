package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// testGraceEnv shortens queueChildGrace in a helper a test starts.
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
func queueTransports(t *testing.T, test func(t *testing.T, h *helpers, configText, kgDir string)) {
	t.Run("fork", func(t *testing.T) {
		configText, kgDir := queueDirFor(t)
		test(t, &helpers{}, configText, kgDir)
	})
	t.Run("socket", func(t *testing.T) {
		configText, kgDir := queueDirFor(t)
		test(t, standInSocket(t), configText, kgDir)
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
	old := queueSocket
	queueSocket = path
	var wg sync.WaitGroup
	t.Cleanup(func() {
		queueSocket = old
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
			// As forkQueueChild: the test binary's directory is root's alone.
			cmd := exec.Command("/proc/self/exe", queueDBCommand)
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

// started is how many helpers the socket started.
func (h *helpers) started() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.procs)
}

// TestQueueSocketOnlyRoots: the first request may carry a PostgreSQL
// password, so root sends it only to a socket of root's at queueSocket,
// never to one another user made, nor to a file in its place.
func TestQueueSocketOnlyRoots(t *testing.T) {
	configText, _ := queueDirFor(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		make func(path string) error
	}{
		{"another user's socket", func(path string) error {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
			return os.Lchown(path, 65534, 65534)
		}},
		{"a file", func(path string) error { return os.WriteFile(path, nil, 0o600) }},
		{"a link to root's socket", func(path string) error {
			target := filepath.Join(dir, "roots.sock")
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: target, Net: "unix"})
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
			return os.Symlink(target, path)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".sock")
			if err := tc.make(path); err != nil {
				t.Fatal(err)
			}
			old := queueSocket
			queueSocket = path
			t.Cleanup(func() { queueSocket = old })
			code, _, stderr := runCLI(t, configText, "queue", "stats")
			if code == 0 || !strings.Contains(stderr, path+" is not a socket of root's") {
				t.Errorf("queue stats with %s at the socket's path: exit %d, %q", tc.name, code, stderr)
			}
		})
	}
}
