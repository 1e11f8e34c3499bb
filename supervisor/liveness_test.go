package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// livenessEnv is a testEnv with a generation-C processor "replica" whose
// liveness check is on (every 5 s, 2 failures, 0.2 s timeout, ready_timeout
// 10 s), a clock the test moves, and health answers per port: "deaf" never
// answers, "sick" answers 503; other ports answer as testEnv's processors.
type livenessEnv struct {
	*testEnv
	now    time.Time
	mu     sync.Mutex
	health map[int]string
	probes map[int]int // health requests by port
	events []LivenessEvent
}

func newLivenessEnv(t *testing.T) *livenessEnv {
	t.Helper()
	e := &livenessEnv{testEnv: newTestEnv(t), now: time.Now(), health: map[int]string{}, probes: map[int]int{}}
	withGenerationC(e.testEnv, 1, "")
	p := e.m.Config.Processors["replica"]
	p.ReadyTimeout, p.LivenessInterval, p.LivenessFailures, p.LivenessTimeout = 10, 5, 2, 0.2
	e.m.Config.Processors["replica"] = p
	e.m.Now = func() time.Time { return e.now }
	e.m.Probe = func(ctx context.Context, port int, path string) (int, error) {
		e.mu.Lock()
		h := e.health[port]
		e.probes[port]++
		e.mu.Unlock()
		switch h {
		case "deaf":
			<-ctx.Done()
			return 0, ctx.Err()
		case "sick":
			return 503, nil
		}
		return e.probe(ctx, port, path)
	}
	return e
}

// startAged starts an instance and makes systemd's start of it age past
// ready_timeout.
func (e *livenessEnv) startAged(t *testing.T, id, processor string, port int) {
	t.Helper()
	e.start(t, StartRequest{ID: id, Processor: processor, APIPort: port})
	e.sd.mu.Lock()
	e.sd.unit("kato@" + id + ".service").ActiveSince = e.now.Add(-time.Minute)
	e.sd.mu.Unlock()
}

func (e *livenessEnv) set(port int, health string) {
	e.mu.Lock()
	e.health[port] = health
	e.mu.Unlock()
}

// run is one run of the check, after the clock moved by step.
func (e *livenessEnv) run(t *testing.T, step time.Duration) map[string]LivenessCheck {
	t.Helper()
	e.now = e.now.Add(step)
	rep, err := e.m.Liveness(context.Background(), func(ev LivenessEvent) { e.events = append(e.events, ev) })
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]LivenessCheck{}
	for _, c := range rep.Checks {
		out[c.ID] = c
	}
	return out
}

func (e *livenessEnv) restarts(unit string) int {
	e.sd.mu.Lock()
	defer e.sd.mu.Unlock()
	n := 0
	for _, c := range e.sd.calls {
		if c == "restart "+unit {
			n++
		}
	}
	return n
}

// TestLivenessRestartsAfterFailuresInARow: an instance that stops answering
// is restarted at its liveness_failures-th failed check in a row, not
// before; checks come no more often than liveness_interval; the restart is
// counted in the state file and logged with its reason; the count starts
// over after it; a healthy instance is never restarted.
func TestLivenessRestartsAfterFailuresInARow(t *testing.T) {
	e := newLivenessEnv(t)
	e.startAged(t, "r1", "replica", 8101)
	e.startAged(t, "r2", "replica", 8102)
	e.set(8101, "deaf")

	c := e.run(t, 0)
	if c["r1"].Outcome != "failed" || c["r1"].Failures != 1 || c["r2"].Outcome != "ok" {
		t.Fatalf("first run: %+v", c)
	}
	if !strings.Contains(c["r1"].Detail, "GET /health on port 8101 did not answer within 200ms") {
		t.Errorf("failure detail = %q", c["r1"].Detail)
	}
	// Too soon: neither is checked again.
	c = e.run(t, 2*time.Second)
	if c["r1"].Outcome != "waiting" || c["r1"].Failures != 1 || c["r2"].Outcome != "waiting" {
		t.Fatalf("run 2 s later: %+v", c)
	}
	if n := e.restarts("kato@r1.service"); n != 0 {
		t.Fatalf("restarted after 1 failure: %d restarts", n)
	}
	c = e.run(t, 3*time.Second)
	if c["r1"].Outcome != "restarted" || c["r2"].Outcome != "ok" {
		t.Fatalf("second failure: %+v", c)
	}
	if n := e.restarts("kato@r1.service"); n != 1 {
		t.Errorf("kato@r1.service restarted %d times, want 1", n)
	}
	if n := e.restarts("kato@r2.service"); n != 0 {
		t.Errorf("the healthy kato@r2.service restarted %d times", n)
	}
	st, err := e.m.ReadLivenessState()
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Instances["r1"]; r == nil || r.Restarts != 1 || r.Failures != 0 || !strings.Contains(r.LastReason, "2 health checks in a row failed") {
		t.Errorf("state of r1 after the restart: %+v", r)
	}
	var restarted []LivenessEvent
	for _, ev := range e.events {
		if ev.Restarted {
			restarted = append(restarted, ev)
		}
	}
	if len(restarted) != 1 || restarted[0].ID != "r1" || restarted[0].Restarts != 1 ||
		restarted[0].Message() != "liveness: restarted kato@r1.service: 2 health checks in a row failed (last: GET /health on port 8101 did not answer within 200ms); liveness restarts: 1" {
		t.Errorf("restart events: %+v", restarted)
	}

	// The new process is within ready_timeout: left alone, even deaf.
	e.sd.mu.Lock()
	e.sd.unit("kato@r1.service").ActiveSince = e.now
	e.sd.mu.Unlock()
	c = e.run(t, 5*time.Second)
	if c["r1"].Outcome != "starting" {
		t.Errorf("r1 right after its restart: %+v", c["r1"])
	}
	// Past it, the count starts from zero: one failure is not enough.
	c = e.run(t, 6*time.Second)
	if c["r1"].Outcome != "failed" || c["r1"].Failures != 1 {
		t.Errorf("r1's first check after the restart: %+v", c["r1"])
	}
	// And a success sets it back to zero.
	e.set(8101, "")
	c = e.run(t, 5*time.Second)
	if c["r1"].Outcome != "ok" || c["r1"].Failures != 0 {
		t.Errorf("r1 answering again: %+v", c["r1"])
	}
	e.set(8101, "sick")
	c = e.run(t, 5*time.Second)
	if c["r1"].Outcome != "failed" || c["r1"].Failures != 1 || !strings.Contains(c["r1"].Detail, "answered HTTP 503") {
		t.Errorf("a failure after a success counted from zero: %+v", c["r1"])
	}
	if n := e.restarts("kato@r1.service"); n != 1 {
		t.Errorf("kato@r1.service restarted %d times, want 1", n)
	}
	restarts, err := e.m.LivenessRestarts()
	if err != nil || restarts["r1"] != 1 || restarts["r2"] != 0 {
		t.Errorf("LivenessRestarts = %v, %v", restarts, err)
	}
	// status and the sample /metrics reads show them.
	status, err := e.m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sample, err := e.m.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range status.Instances {
		if want := restarts[i.ID]; i.LivenessRestarts != want {
			t.Errorf("status: %s has %d liveness restarts, want %d", i.ID, i.LivenessRestarts, want)
		}
	}
	for _, i := range sample.Instances {
		if want := restarts[i.ID]; i.LivenessRestarts != want {
			t.Errorf("sample: %s has %d liveness restarts, want %d", i.ID, i.LivenessRestarts, want)
		}
	}
	if len(status.Instances) != 2 || len(sample.Instances) != 2 {
		t.Errorf("%d instances in status, %d in the sample, want 2", len(status.Instances), len(sample.Instances))
	}
}

// TestLivenessLeavesStartingStoppedAndOffAlone: an instance within
// ready_timeout of its start, a stopped one, and one whose processor has
// the check off (generation B's default) are never checked or restarted,
// however long they fail; a count is dropped when the unit stops or is
// restarted by someone else.
func TestLivenessLeavesStartingStoppedAndOffAlone(t *testing.T) {
	e := newLivenessEnv(t)
	e.start(t, StartRequest{ID: "young", Processor: "replica", APIPort: 8101})
	e.sd.mu.Lock()
	e.sd.unit("kato@young.service").ActiveSince = e.now
	e.sd.mu.Unlock()
	e.startAged(t, "gone", "replica", 8102)
	e.startAged(t, "genb", "", 8103)
	e.startAged(t, "other", "replica", 8104)
	for _, port := range []int{8101, 8102, 8103, 8104} {
		e.set(port, "deaf")
	}
	e.mu.Lock()
	clear(e.probes) // start's own health requests
	e.mu.Unlock()
	c := e.run(t, 0)
	if c["young"].Outcome != "starting" || c["gone"].Outcome != "failed" || c["genb"].Outcome != "off" || c["other"].Outcome != "failed" {
		t.Fatalf("first run: %+v", c)
	}
	// gone stops; other is restarted by someone else: both counts go.
	e.sd.StopUnit(context.Background(), "kato@gone.service")
	e.mu.Lock()
	probesBefore := e.probes[8102]
	e.mu.Unlock()
	e.sd.mu.Lock()
	e.sd.unit("kato@other.service").ActiveSince = e.now.Add(-30 * time.Second)
	e.sd.mu.Unlock()
	c = e.run(t, 5*time.Second)
	if c["gone"].Outcome != "stopped" || c["other"].Outcome != "failed" || c["other"].Failures != 1 {
		t.Fatalf("second run: %+v", c)
	}
	e.run(t, 4*time.Second) // young stays within its 10 s
	e.mu.Lock()
	if e.probes[8101] != 0 || e.probes[8103] != 0 || e.probes[8102] != probesBefore {
		t.Errorf("health requests to the starting (%d), the off (%d) or the stopped instance (%d after it stopped)", e.probes[8101], e.probes[8103], e.probes[8102]-probesBefore)
	}
	e.mu.Unlock()
	for _, id := range []string{"young", "gone", "genb"} {
		if n := e.restarts("kato@" + id + ".service"); n != 0 {
			t.Errorf("kato@%s.service restarted %d times", id, n)
		}
	}
	if s, _ := e.sd.Unit(context.Background(), "kato@gone.service"); s.ActiveState != "inactive" {
		t.Errorf("the stopped instance is %s", s.ActiveState)
	}
}

// TestLivenessStateFile: the state is written atomically, readable by its
// owner alone, survives between runs, forgets removed instances, and a
// damaged file starts the counts over instead of stopping the check.
func TestLivenessStateFile(t *testing.T) {
	e := newLivenessEnv(t)
	e.startAged(t, "r1", "replica", 8101)
	e.set(8101, "deaf")
	e.run(t, 0)
	path := e.m.LivenessStatePath()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	var st LivenessState
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &st); err != nil || st.Instances["r1"] == nil || st.Instances["r1"].Failures != 1 {
		t.Fatalf("state after one failure: %s, %v", data, err)
	}
	// A second manager, as the next timer run is, reads the count.
	c := e.run(t, 5*time.Second)
	if c["r1"].Outcome != "restarted" {
		t.Fatalf("the second run did not see the first one's failure: %+v", c)
	}
	e.sd.mu.Lock()
	e.sd.unit("kato@r1.service").ActiveSince = e.now.Add(-time.Minute)
	e.sd.mu.Unlock()
	// Damaged: the check carries on from zero and says so.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.events = nil
	c = e.run(t, 5*time.Second)
	if c["r1"].Outcome != "failed" || c["r1"].Failures != 1 {
		t.Errorf("after a damaged state file: %+v", c)
	}
	if len(e.events) == 0 || !strings.Contains(e.events[0].Reason, "state file unreadable") {
		t.Errorf("no word of the damaged state file: %+v", e.events)
	}
	// A removed instance's record goes.
	if _, err := e.m.Stop(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	e.run(t, 5*time.Second)
	st2, err := e.m.ReadLivenessState()
	if err != nil || len(st2.Instances) != 0 {
		t.Errorf("state after r1's removal: %+v, %v", st2.Instances, err)
	}
	// Two runs at once: the second does nothing.
	release, err := e.m.lockLiveness()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := e.m.Liveness(context.Background(), nil); !errors.Is(err, ErrLivenessBusy) {
		t.Errorf("a run while another holds the lock: %v, want ErrLivenessBusy", err)
	}
}

// TestLivenessProbeReadsTheBody: over HTTP, generation C's 200 whose body
// says "unhealthy" is a failure, "healthy" is not, and a request that
// outlasts liveness_timeout is one that says so.
func TestLivenessProbeReadsTheBody(t *testing.T) {
	var body string
	var delay time.Duration
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	_, portText, _ := net.SplitHostPort(srv.Listener.Addr().String())
	var port int
	fmt.Sscan(portText, &port)
	m := &Manager{}
	su := &instanceSetup{proc: config.Processor{Ready: "GET /health", LivenessTimeout: 0.3}, readyPort: port}
	for _, tc := range []struct {
		body  string
		delay time.Duration
		want  string
	}{
		{`{"status": "healthy"}`, 0, ""},
		{`{"status": "degraded"}`, 0, ""},
		{`{"status": "unhealthy", "issues": ["redis"]}`, 0, `said "unhealthy"`},
		{`{"status": "healthy"}`, time.Second, "did not answer within 300ms"},
	} {
		body, delay = tc.body, tc.delay
		got := m.livenessProbe(context.Background(), su, "x")
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("body %s after %s: %q, want %q", tc.body, tc.delay, got, tc.want)
		}
	}
}
