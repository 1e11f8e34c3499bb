package front

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// These tests run Debian's HAProxy in front of processor doubles on
// loopback; packaging/deps.sh test installs it. They need no systemd.

var (
	fakeOnce sync.Once
	fakeBin  string
	fakeErr  error
)

// needHAProxy skips under -short and where HAProxy is missing, except in CI
// where a missing HAProxy is a failure.
func needHAProxy(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs HAProxy and processor doubles")
	}
	path, err := exec.LookPath("haproxy")
	if err != nil {
		path, err = exec.LookPath("/usr/sbin/haproxy")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy is not installed: run packaging/deps.sh test")
		}
		t.Skip("haproxy is not installed: run packaging/deps.sh test")
	}
	return path
}

// fakeProcessor builds internal/testkit/fakeprocessor once.
func fakeProcessor(t *testing.T) string {
	t.Helper()
	fakeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "front-fake-")
		if err != nil {
			fakeErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		fakeBin = filepath.Join(dir, "fakeprocessor")
		cmd := exec.Command("go", "build", "-o", fakeBin, "./internal/testkit/fakeprocessor")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			fakeErr = fmt.Errorf("build fakeprocessor: %v\n%s", err, out)
		}
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return fakeBin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// processor is a generation-B processor double on a port of its own.
type processor struct {
	t     *testing.T
	id    string
	port  int
	dir   string
	delay time.Duration // before it listens, as the real one takes 1.4-2.1s
	mu    sync.Mutex
	cmd   *exec.Cmd
}

func startProcessor(t *testing.T, id string) *processor {
	t.Helper()
	p := &processor{t: t, id: id, port: freePort(t), dir: t.TempDir()}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	if err := p.waitReady(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	return p
}

func (p *processor) member(weight int) Member {
	return Member{ID: p.id, Address: "127.0.0.1", Port: p.port, Weight: weight}
}

func (p *processor) start() error {
	cmd := exec.Command(fakeProcessor(p.t), "--generation", "b", "--delay", p.delay.String())
	cmd.Env = append(os.Environ(), "PROCESSOR_ID="+p.id, "PORT="+strconv.Itoa(p.port), "STATE_DIRECTORY="+p.dir)
	if err := cmd.Start(); err != nil {
		return err
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	return nil
}

// kill stops it as systemd stops generation B: SIGTERM (it stops serving
// and hangs), then SIGKILL.
func (p *processor) kill() {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(300 * time.Millisecond):
		cmd.Process.Kill()
		<-done
	}
}

func (p *processor) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("processor %s not ready within %s", p.id, within)
}

func (p *processor) restart() error {
	p.kill()
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady(15 * time.Second)
}

// processors restarts the test's processors, as the supervisor will
// through systemd.
type processors map[string]*processor

func (ps processors) RestartMember(_ context.Context, id string) error { return ps[id].restart() }

// haproxy is a front run directly, in master-worker mode as the unit runs
// it.
type haproxy struct {
	t      *testing.T
	bin    string
	cfg    string
	socket string
	cmd    *exec.Cmd
	log    *strings.Builder
}

func startFront(t *testing.T, g Group) *haproxy {
	t.Helper()
	h := &haproxy{t: t, bin: needHAProxy(t), log: &strings.Builder{}}
	dir := t.TempDir()
	h.cfg = filepath.Join(dir, "front.cfg")
	h.socket = filepath.Join(dir, "admin.sock")
	h.write(g)
	h.cmd = exec.Command(h.bin, "-W", "-db", "-f", h.cfg)
	h.cmd.Stdout, h.cmd.Stderr = &lockedWriter{w: h.log}, &lockedWriter{w: h.log}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.cmd.Process.Signal(syscall.SIGTERM)
		h.cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", h.log.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := NewClient(h.socket).Stats(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not open its admin socket:\n%s", h.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (h *haproxy) write(g Group) {
	h.t.Helper()
	cfg, err := Render(g, h.socket)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(h.cfg, cfg, 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func (h *haproxy) client() *Client { return NewClient(h.socket) }

// reload rewrites the configuration for g and reloads as the unit's
// ExecReload does (SIGUSR2 to the master), waiting for the new worker.
func (h *haproxy) reload(g Group) {
	h.t.Helper()
	before := h.workerPid()
	h.write(g)
	if err := h.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.workerPid() == before || h.workerPid() == "" {
		if time.Now().After(deadline) {
			h.t.Fatalf("haproxy did not reload:\n%s", h.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *haproxy) workerPid() string {
	out, err := h.client().Do(context.Background(), "show info")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Pid: "); ok {
			return v
		}
	}
	return ""
}

// waitStates waits until the front sees each member of want in its state.
func waitStates(t *testing.T, c *Client, want map[string]State) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := c.Stats(context.Background())
		ok := err == nil
		for id, st := range want {
			if m, found := s.Member(id); !found || m.State != st {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members not in states %v: %+v (%v)", want, s.Members, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func allUp(g Group) map[string]State {
	want := map[string]State{}
	for _, m := range g.Members {
		want[m.ID] = Up
	}
	return want
}

var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// engine sends one request through the front and returns the member that
// answered.
func engine(t *testing.T, port int, path string, header http.Header) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s through the front: %s", path, resp.Status)
	}
	return resp.Header.Get("X-Fake-Engine")
}

func group(balance string, members ...Member) Group {
	return Group{Name: "g", Address: "127.0.0.1", Balance: balance, Ready: ReadyCheck{Path: "/health", Body: HealthyBody}, CheckInterval: 100 * time.Millisecond, Members: members}
}

func TestFrontWeights(t *testing.T) {
	needHAProxy(t)
	a, b := startProcessor(t, "a"), startProcessor(t, "b")
	g := group(RoundRobin, a.member(90), b.member(10))
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))
	counts := map[string]int{}
	for range 1000 {
		counts[engine(t, g.Port, "/status", nil)]++
	}
	if counts["a"] < 850 || counts["a"] > 950 || counts["b"] < 50 || counts["b"] > 150 {
		t.Errorf("weights 90/10 over 1000 requests: got %v, want a 900±50, b 100±50", counts)
	}
	s, err := h.client().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Member("a"); m.Weight != 90 || m.State != Up {
		t.Errorf("member a in the stats: %+v, want weight 90, up", m)
	}
	if s.Requests < 1000 || s.Errors != 0 {
		t.Errorf("front counters: %d requests, %d errors; want >= 1000, 0", s.Requests, s.Errors)
	}
}

func TestFrontHashHeader(t *testing.T) {
	needHAProxy(t)
	g := group("hash:X-Session")
	for _, id := range []string{"a", "b", "c"} {
		g.Members = append(g.Members, startProcessor(t, id).member(0))
	}
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))
	used := map[string]bool{}
	for i := range 30 {
		session := http.Header{"X-Session": {"client-" + strconv.Itoa(i)}}
		first := engine(t, g.Port, "/status", session)
		used[first] = true
		for range 5 {
			if got := engine(t, g.Port, "/status", session); got != first {
				t.Fatalf("session %d went to %s, then to %s", i, first, got)
			}
		}
	}
	if len(used) < 2 {
		t.Errorf("30 sessions all went to %v: the header does not spread them", used)
	}
}

// pathMember is a stand-in of a generation-A gateway: it answers any path
// naming itself and the path it received, which keeps its /{id}/ prefix.
func pathMember(t *testing.T, id string) Member {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Fake-Engine", id)
		fmt.Fprintf(w, "%s %s", id, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	port, _ := strconv.Atoi(strings.TrimPrefix(srv.URL, "http://127.0.0.1:"))
	return Member{ID: id, Address: "127.0.0.1", Port: port}
}

func TestFrontPath(t *testing.T) {
	needHAProxy(t)
	g := group(Path, pathMember(t, "p1"), pathMember(t, "p2"), pathMember(t, "p3"))
	g.Ready = ReadyCheck{Path: "/{id}/ping"}
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))
	for _, id := range []string{"p1", "p2", "p3", "p2", "p1"} {
		resp, err := noKeepAlive.Get("http://127.0.0.1:" + strconv.Itoa(g.Port) + "/" + id + "/observe")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := id + " /" + id + "/observe"; string(body) != want {
			t.Errorf("GET /%s/observe answered %q, want %q", id, body, want)
		}
	}
	resp, err := noKeepAlive.Get("http://127.0.0.1:" + strconv.Itoa(g.Port) + "/p9/observe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /p9/observe, no such member: %s, want 404", resp.Status)
	}
}

// TestFrontReadyCheck: a member whose /health says unhealthy (with 200, as
// generation C does) and one that stops answering leave the rotation.
func TestFrontReadyCheck(t *testing.T) {
	needHAProxy(t)
	a, b := startProcessor(t, "a"), startProcessor(t, "b")
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Fake-Engine", "sick")
		fmt.Fprint(w, `{"status":"unhealthy","issues":["redis"]}`)
	}))
	defer sick.Close()
	port, _ := strconv.Atoi(strings.TrimPrefix(sick.URL, "http://127.0.0.1:"))
	g := group(RoundRobin, a.member(0), b.member(0), Member{ID: "sick", Address: "127.0.0.1", Port: port})
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), map[string]State{"a": Up, "b": Up, "sick": Down})
	for range 50 {
		if got := engine(t, g.Port, "/status", nil); got == "sick" {
			t.Fatal("a member answering unhealthy got a request")
		}
	}
	b.kill()
	waitStates(t, h.client(), map[string]State{"a": Up, "b": Down, "sick": Down})
	for range 20 {
		if got := engine(t, g.Port, "/status", nil); got != "a" {
			t.Fatalf("request answered by %q with only a up", got)
		}
	}
}

// load sends requests through the front at a steady rate until stopped and
// counts those that fail: POST /observe, which every generation answers.
type load struct {
	sent, failed atomic.Int64
	firstErr     atomic.Value
	stop         chan struct{}
	done         sync.WaitGroup
}

func startLoad(port, workers int, every time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				l.sent.Add(1)
				// A POST, as observe is: a client does not send it again by
				// itself when the connection closes under it.
				resp, err := client.Post("http://127.0.0.1:"+strconv.Itoa(port)+"/observe", "application/json", strings.NewReader(`{"strings": ["a"], "vectors": [], "emotives": {}}`))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = errors.New(resp.Status)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	return l
}

func (l *load) finish() (sent, failed int64) {
	close(l.stop)
	l.done.Wait()
	return l.sent.Load(), l.failed.Load()
}

func TestFrontReloadDropsNothing(t *testing.T) {
	needHAProxy(t)
	a, b, c := startProcessor(t, "a"), startProcessor(t, "b"), startProcessor(t, "c")
	g := group(LeastConn, a.member(0), b.member(0))
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))
	l := startLoad(g.Port, 4, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	g.Members = append(g.Members, c.member(0))
	h.reload(g)
	waitStates(t, h.client(), allUp(g))
	time.Sleep(300 * time.Millisecond)
	g.Members = g.Members[1:]
	h.reload(g)
	waitStates(t, h.client(), allUp(g))
	time.Sleep(300 * time.Millisecond)
	sent, failed := l.finish()
	if failed != 0 || sent < 100 {
		t.Errorf("two reloads under load: %d of %d requests failed (first: %v)", failed, sent, l.firstErr.Load())
	}
	t.Logf("two reloads under load: %d requests, %d failed", sent, failed)
}

// TestRollingRestart: under a steady load, a rolling restart of 3 members
// fails no request, where restarting them all at once fails some.
func TestRollingRestart(t *testing.T) {
	needHAProxy(t)
	ps := processors{}
	g := group(LeastConn)
	for _, id := range []string{"r1", "r2", "r3"} {
		p := startProcessor(t, id)
		p.delay = 2500 * time.Millisecond // it listens late, as the real one does
		ps[id] = p
		g.Members = append(g.Members, p.member(0))
	}
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))

	l := startLoad(g.Port, 4, 10*time.Millisecond)
	restarted, err := Roll(context.Background(), g, h.client(), ps, RollOptions{DrainTimeout: 5 * time.Second, ReadyTimeout: 20 * time.Second, Poll: 20 * time.Millisecond})
	sent, failed := l.finish()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(restarted, " ") != "r1 r2 r3" {
		t.Errorf("Roll restarted %v, want r1 r2 r3", restarted)
	}
	t.Logf("rolling restart of 3 members: %d requests, %d failed", sent, failed)
	if failed != 0 || sent < 200 {
		t.Errorf("rolling restart under load: %d of %d requests failed (first: %v)", failed, sent, l.firstErr.Load())
	}

	// The baseline: every member restarted at once, no drain.
	l = startLoad(g.Port, 4, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.restart() }()
	}
	wg.Wait()
	waitStates(t, h.client(), allUp(g))
	sent, failed = l.finish()
	t.Logf("plain restart of 3 members: %d requests, %d failed", sent, failed)
	if failed == 0 {
		t.Errorf("plain restart of all members under load: no request failed of %d; the comparison proves nothing", sent)
	}
}

// stuck never becomes ready again after a restart.
type stuck struct {
	processors
	id string
}

func (s stuck) RestartMember(ctx context.Context, id string) error {
	if id == s.id {
		s.processors[id].kill()
		return nil
	}
	return s.processors.RestartMember(ctx, id)
}

func TestRollStopsAtMemberNotReady(t *testing.T) {
	needHAProxy(t)
	ps := processors{}
	g := group(RoundRobin)
	for _, id := range []string{"r1", "r2", "r3"} {
		ps[id] = startProcessor(t, id)
		g.Members = append(g.Members, ps[id].member(0))
	}
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))
	l := startLoad(g.Port, 2, 10*time.Millisecond)
	restarted, err := Roll(context.Background(), g, h.client(), stuck{ps, "r2"}, RollOptions{ReadyTimeout: 2 * time.Second, Poll: 20 * time.Millisecond})
	sent, failed := l.finish()
	var re *RollError
	if !errors.As(err, &re) || re.Member != "r2" || !errors.Is(err, ErrNotReady) {
		t.Fatalf("Roll with r2 never ready: %v, want a RollError at r2 wrapping ErrNotReady", err)
	}
	if strings.Join(restarted, " ") != "r1" {
		t.Errorf("Roll restarted %v, want r1 only", restarted)
	}
	waitStates(t, h.client(), map[string]State{"r1": Up, "r2": Maintenance, "r3": Up})
	if failed != 0 {
		t.Errorf("a roll stopped at a member: %d of %d requests failed (first: %v)", failed, sent, l.firstErr.Load())
	}
}

// slowMember is a member whose every request takes a while, as an observe
// on a busy processor does, and whose restart ends the requests in flight,
// as the SIGKILL at the end of a bounded stop does.
type slowMember struct {
	t    *testing.T
	id   string
	port int
	mu   sync.Mutex
	srv  *http.Server
	busy atomic.Int64
}

func startSlowMember(t *testing.T, id string) *slowMember {
	s := &slowMember{t: t, id: id, port: freePort(t)}
	if err := s.listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.mu.Lock(); s.srv.Close(); s.mu.Unlock() })
	return s
}

func (s *slowMember) listen() error {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(s.port))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			s.busy.Add(1)
			defer s.busy.Add(-1)
			time.Sleep(150 * time.Millisecond)
		}
		w.Header().Set("X-Fake-Engine", s.id)
		fmt.Fprint(w, `{"status":"healthy"}`)
	})}
	go srv.Serve(ln)
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

func (s *slowMember) restart() error {
	s.t.Logf("%s: %d requests in flight at restart", s.id, s.busy.Load())
	s.mu.Lock()
	s.srv.Close()
	s.mu.Unlock()
	time.Sleep(500 * time.Millisecond)
	return s.listen()
}

type slowMembers map[string]*slowMember

func (ms slowMembers) RestartMember(_ context.Context, id string) error { return ms[id].restart() }

// TestRollingRestartDrains: with requests that take a while, restarting the
// members one at a time without draining them fails the requests in flight
// on each; Roll, which drains each first, fails none.
func TestRollingRestartDrains(t *testing.T) {
	needHAProxy(t)
	ms := slowMembers{}
	g := group(LeastConn)
	for _, id := range []string{"s1", "s2", "s3"} {
		ms[id] = startSlowMember(t, id)
		g.Members = append(g.Members, Member{ID: id, Address: "127.0.0.1", Port: ms[id].port})
	}
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))

	l := startLoad(g.Port, 8, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	for _, m := range g.Members {
		ms[m.ID].restart()
		waitStates(t, h.client(), allUp(g))
	}
	sent, failed := l.finish()
	t.Logf("one at a time without draining: %d requests, %d failed", sent, failed)
	if failed == 0 {
		t.Errorf("restarting members one at a time without draining failed none of %d requests; the comparison proves nothing", sent)
	}

	l = startLoad(g.Port, 8, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	if _, err := Roll(context.Background(), g, h.client(), ms, RollOptions{DrainTimeout: 5 * time.Second, ReadyTimeout: 20 * time.Second, Poll: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	sent, failed = l.finish()
	t.Logf("Roll: %d requests, %d failed", sent, failed)
	if failed != 0 {
		t.Errorf("Roll under load: %d of %d requests failed (first: %v)", failed, sent, l.firstErr.Load())
	}
}

// TestFrontMetricsAndWebsocket: the front serves HAProxy's Prometheus
// exporter on its metrics port, and an upgraded connection (generation C's
// /ws) passes through both ways.
func TestFrontMetricsAndWebsocket(t *testing.T) {
	needHAProxy(t)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			fmt.Fprint(w, `{"status":"healthy"}`)
			return
		}
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		// The accept value of RFC 6455's example key, which HAProxy checks.
		buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		buf.Flush()
		io.Copy(conn, buf) // echo whatever comes after the upgrade
	}))
	defer echo.Close()
	port, _ := strconv.Atoi(strings.TrimPrefix(echo.URL, "http://127.0.0.1:"))
	g := group(LeastConn, Member{ID: "ws", Address: "127.0.0.1", Port: port})
	g.Port, g.MetricsPort = freePort(t), freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))

	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(g.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	head := make([]byte, 0, 512)
	for !strings.Contains(string(head), "\r\n\r\n") {
		b := make([]byte, 1)
		if _, err := conn.Read(b); err != nil {
			t.Fatalf("upgrade through the front: %v after %q", err, head)
		}
		head = append(head, b...)
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 101") {
		t.Fatalf("upgrade through the front answered %q", head)
	}
	for _, msg := range []string{"first frame", "second frame"} {
		fmt.Fprint(conn, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != msg {
			t.Fatalf("echo through the upgraded connection: %q, %v; want %q", got, err, msg)
		}
	}

	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(g.MetricsPort) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`haproxy_server_status{proxy="members",server="ws",state="UP"} 1`, `haproxy_frontend_http_requests_total{proxy="front"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
