package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestOpenLoadTakesTurns checks that the open loop sends each way its
// share of the requests, in turn, and times every one.
func TestOpenLoadTakesTurns(t *testing.T) {
	var ports []int
	var hits [3]atomic.Int64
	for i := range hits {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hits[i].Add(1)
			w.Write([]byte(`{"status":"okay"}`))
		}))
		t.Cleanup(srv.Close)
		ports = append(ports, srv.Listener.Addr().(*net.TCPAddr).Port)
	}
	loads := openLoad(ports, 300, time.Second)
	for i, l := range loads {
		if got := hits[i].Load(); got != 100 || len(l.lat) != 100 || l.failed != 0 {
			t.Errorf("way %d: %d requests received, %d answers timed, %d failed; want 100, 100, 0", i, got, len(l.lat), l.failed)
		}
		if want := min(i, 1) * 100; len(l.added) != want {
			t.Errorf("way %d: %d latencies beside the first way's, want %d", i, len(l.added), want)
		}
	}
}

// TestTreesCPUCountsDescendants checks that a proxy's CPU includes its
// workers', children of the process the bench started.
func TestTreesCPUCountsDescendants(t *testing.T) {
	// The parent waits; its child spins until killed.
	cmd := exec.Command("/bin/sh", "-c", "sh -c 'while :; do :; done' & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	roots := []int{cmd.Process.Pid}
	deadline := time.Now().Add(30 * time.Second)
	for treesCPU(roots) < 100*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("CPU of process %d and its spinning child: %s after 30 s, want at least 100ms", roots[0], treesCPU(roots))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := treesCPU(nil); got != 0 {
		t.Errorf("CPU of no process: %s, want 0", got)
	}
}
