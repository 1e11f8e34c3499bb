package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/front"
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

// TestRoundsGiveMedianAndRange checks that the front rows read each
// round on its own: the median of the rounds' figures, with their range,
// and totals that keep every round's latencies.
func TestRoundsGiveMedianAndRange(t *testing.T) {
	ms := time.Millisecond
	round := func(straight, front int, added time.Duration) []load {
		return []load{
			{elapsed: time.Second, lat: make([]time.Duration, straight)},
			{elapsed: time.Second, lat: make([]time.Duration, front), added: []time.Duration{added}},
		}
	}
	// A round the machine stalled in (the third) moves the range, not the
	// median.
	rounds := [][]load{round(100, 60, ms), round(100, 50, 2*ms), round(100, 5, 90*ms)}
	got := perRound(rounds, func(w []load) float64 { return w[1].rate() / w[0].rate() })
	if want := (spread{med: 0.5, lo: 0.05, hi: 0.6}); got != want {
		t.Errorf("front/straight over 3 rounds: %+v, want %+v", got, want)
	}
	rounds = append(rounds, round(100, 70, 3*ms))
	if got, want := perRound(rounds, func(w []load) float64 { return w[1].rate() / w[0].rate() }).med, 0.55; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("median of 4 rounds: %g, want %g (the mean of the middle two)", got, want)
	}
	sum := total(rounds)
	if len(sum[0].lat) != 400 || len(sum[1].lat) != 185 || len(sum[1].added) != 4 || sum[1].elapsed != 4*time.Second {
		t.Errorf("totals: %d and %d latencies, %d differences, %s; want 400, 185, 4, 4s",
			len(sum[0].lat), len(sum[1].lat), len(sum[1].added), sum[1].elapsed)
	}
}

// TestWithGlobalOverridesRendered checks that -front-haproxy-global's lines
// come after the rendered global settings: HAProxy keeps the last of two
// "nbthread" lines, so lines put first would change nothing.
func TestWithGlobalOverridesRendered(t *testing.T) {
	g := front.Group{Name: "g", Port: 8080, Ready: front.ReadyCheck{Path: "/health"},
		Members: []front.Member{{ID: "m1", Address: "127.0.0.1", Port: 9001}}}
	cfg, err := front.Render(g, "/run/kato-front/g/admin.sock")
	if err != nil {
		t.Fatal(err)
	}
	got := string(withGlobal(cfg, "nbthread 2;tune.bufsize 8192"))
	global, rest, ok := strings.Cut(got[strings.Index(got, "\nglobal\n"):], "\n\n")
	if !ok || !strings.Contains(rest, "defaults") {
		t.Fatalf("no global section followed by defaults in:\n%s", got)
	}
	if !strings.HasSuffix(global, "\n    nbthread 2\n    tune.bufsize 8192") || strings.Count(got, "nbthread 2") != 1 {
		t.Errorf("global section does not end with the added lines:\n%s", global)
	}
	if string(withGlobal(cfg, "")) != string(cfg) {
		t.Error("no lines to add changed the configuration")
	}
}
