package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/promtest"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// TestLiveness runs kato-liveness.timer, as install-units enables it, on a
// real systemd: a generation-C instance whose /health stops answering (the
// double's POST /fake/hang), and a generation-B one whose processor turns
// the check on, are restarted within liveness_interval ×
// liveness_failures and some slack, and the restart shows in status, the
// journal (the timer's unit and the instance's) and /metrics; a healthy
// instance is never restarted; a stopped one is left stopped; the counts
// live in a root-only state file.
func TestLiveness(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.Config + `
[processors.c]
command = ["/opt/kato-test/fakeprocessor", "--generation", "c"]
generation = "c"
ready_timeout = 8.0
stop_timeout = 2.0
liveness_interval = 5.0
liveness_failures = 2
liveness_timeout = 1.0

[processors.blive]
command = ["/opt/kato-test/fakeprocessor"]
generation = "b"
ready_timeout = 8.0
stop_timeout = 1.0
liveness_interval = 5.0
liveness_failures = 2
liveness_timeout = 1.0
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m.mustKM("install-units")
	if s := m.activeState("kato-liveness.timer"); s != "active" {
		t.Fatalf("kato-liveness.timer after install-units is %s, want active", s)
	}
	if e := strings.TrimSpace(m.exec("systemctl", "is-enabled", "kato-liveness.timer").stdout); e != "enabled" {
		t.Errorf("kato-liveness.timer is %q, want enabled", e)
	}
	m.mustKM("start", "--processor", "c", "--id", "hangs", "--port", "8101")
	m.mustKM("start", "--processor", "c", "--id", "healthy", "--port", "8102")
	m.mustKM("start", "--processor", "c", "--id", "stopped", "--port", "8103")
	m.mustKM("start", "--id", "genb", "--port", "8104")                          // generation B: the check is off
	m.mustKM("start", "--processor", "blive", "--id", "blive", "--port", "8105") // generation B with the check on
	m.must("systemctl", "stop", "kato@stopped.service")
	healthyPID, hangsPID, genbPID, blivePID := m.mainPID("kato@healthy.service"), m.mainPID("kato@hangs.service"), m.mainPID("kato@genb.service"), m.mainPID("kato@blive.service")

	// Past ready_timeout, the instances are checked; hangs stops
	// answering.
	time.Sleep(9 * time.Second)
	m.post("http://127.0.0.1:8101/fake/hang", "")
	m.post("http://127.0.0.1:8105/fake/hang", "")
	hung := time.Now()
	if _, err := m.get("http://127.0.0.1:8101/health"); err == nil {
		t.Fatal("/health of hangs still answers after /fake/hang: the control of this test is broken")
	}
	// 2 failures 5 s apart: the second comes 5 to 11 s after the hang,
	// and the restart waits for the stop (2 s); slack for the timer and
	// a loaded machine.
	m.waitFor("liveness to restart hangs and blive", 30*time.Second, func() bool {
		pid, bpid := m.mainPID("kato@hangs.service"), m.mainPID("kato@blive.service")
		return pid != hangsPID && pid != "0" && pid != "" && bpid != blivePID && bpid != "0" && bpid != ""
	})
	took := time.Since(hung)
	t.Logf("hangs restarted %s after it stopped answering", took.Truncate(time.Second))
	if took < 5*time.Second {
		t.Errorf("hangs restarted %s after it hung: sooner than 2 checks 5 s apart", took)
	}
	m.waitFor("hangs to answer again", 20*time.Second, func() bool {
		body, err := m.get("http://127.0.0.1:8101/health")
		return err == nil && strings.Contains(body, `"healthy"`)
	})

	// The journal: the timer's unit and the instance's say why.
	for _, unit := range []string{"kato-liveness.service", "kato@hangs.service"} {
		log := m.must("journalctl", "-u", unit, "--no-pager", "-o", "cat")
		if !strings.Contains(log, "liveness: restarted kato@hangs.service: 2 health checks in a row failed (last: GET /health on port 8101 did not answer within 1s)") {
			t.Errorf("journal of %s lacks the restart and its reason:\n%s", unit, log)
		}
	}
	if log := m.must("journalctl", "-u", "kato@blive.service", "--no-pager", "-o", "cat"); !strings.Contains(log, "liveness: restarted kato@blive.service") {
		t.Errorf("journal of kato@blive.service lacks its restart:\n%s", log)
	}
	// systemd's own info lines of every run (LogLevelMax=notice) stay out.
	if log := m.must("journalctl", "-u", "kato-liveness.service", "--no-pager", "-o", "cat"); strings.Contains(log, "Deactivated successfully") || strings.Contains(log, "Finished") {
		t.Errorf("the liveness journal holds systemd's lines of every run:\n%s", log)
	}
	if log := m.must("journalctl", "-u", "kato-liveness.service", "--no-pager", "-o", "cat"); strings.Contains(log, "healthy") || strings.Contains(log, "genb") {
		t.Errorf("the liveness journal speaks of an instance that was never restarted:\n%s", log)
	}

	// Through several more checks: the restarted one is healthy again
	// and its count started over; the healthy one, generation B's and the
	// stopped one are left as they were.
	time.Sleep(12 * time.Second)
	if pid := m.mainPID("kato@healthy.service"); pid != healthyPID {
		t.Errorf("the healthy instance was restarted: pid %s, was %s", pid, healthyPID)
	}
	if pid := m.mainPID("kato@genb.service"); pid != genbPID {
		t.Errorf("the generation-B instance (liveness off) was restarted: pid %s, was %s", pid, genbPID)
	}
	if s := m.activeState("kato@stopped.service"); s != "inactive" {
		t.Errorf("the stopped instance is %s, want inactive", s)
	}
	st := m.statusJSON()
	want := map[string]uint64{"hangs": 1, "healthy": 0, "stopped": 0, "genb": 0, "blive": 1}
	for _, i := range st.Instances {
		if i.LivenessRestarts != want[i.ID] {
			t.Errorf("status: %s has %d liveness restarts, want %d", i.ID, i.LivenessRestarts, want[i.ID])
		}
	}
	if out := m.km("status").stdout; !strings.Contains(out, "LIVENESS") {
		t.Errorf("status shows no liveness column:\n%s", out)
	}
	if mode := strings.TrimSpace(m.must("stat", "-c", "%a %U", "/var/lib/kato/liveness.json")); mode != "600 root" {
		t.Errorf("/var/lib/kato/liveness.json is %s, want 600 root", mode)
	}

	// /metrics.
	m.must("systemd-run", "--unit=kato-manager-serve", "--", testbed.KatoManager, "serve", "--listen", "127.0.0.1:9090", "--public-reads")
	const url = "http://127.0.0.1:9090/metrics"
	var body string
	m.waitFor("kato-manager serve", 10*time.Second, func() bool {
		var err error
		body, err = m.get(url)
		return err == nil
	})
	fams, err := promtest.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range want {
		if v, ok := promtest.Value(fams, "kato_instance_liveness_restarts_total", "id", id); !ok || v != float64(n) {
			t.Errorf("kato_instance_liveness_restarts_total{id=%q} = %v (%v), want %d", id, v, ok, n)
		}
	}
	m.mustKM("stop", "--all")
}
