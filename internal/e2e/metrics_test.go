package e2e

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kato-manager/kato-manager/internal/testkit/promtest"
)

// scrapeMetrics fetches serve's /metrics inside the machine and parses it
// with the Prometheus text parser.
func (p *kgPool) scrapeMetrics(url string) map[string]*dto.MetricFamily {
	p.t.Helper()
	body, err := p.get(url)
	if err != nil {
		p.t.Fatal(err)
	}
	fams, err := promtest.Parse(strings.NewReader(body))
	if err != nil {
		p.t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// TestMetrics: /metrics on the real systemd says what systemd and the queue
// say: instances up and ready, their restarts and start time after a
// crash, a kill -9 and a systemctl restart and for an instance started
// later (serve follows systemd's signals, it does not read each unit per
// scrape), memory as the cgroup accounts it, a stopped instance down, the
// workers' processed counts adding up to the queue, the queue by status
// and its latency histograms.
func TestMetrics(t *testing.T) {
	const items = 30
	p := bootKGPool(t, "poll_interval = 1.0\n", 0)
	p.mustKM("start", "--id", "alpha", "--name", "Alpha", "--port", "8001")
	p.mustKM("start", "--id", "beta", "--name", "Beta", "--port", "8002")
	p.addContent(1, items)
	p.enqueue(1, items)
	p.startWorkers(2)
	p.waitDrained(time.Minute)
	p.must("systemd-run", "--unit=kato-manager-serve", "--", katoManager, "serve", "--listen", "127.0.0.1:9090", "--public-reads")
	const url = "http://127.0.0.1:9090/metrics"
	p.waitFor("kato-manager serve", 10*time.Second, func() bool {
		_, err := p.get(url)
		return err == nil
	})
	must := func(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
		t.Helper()
		v, ok := promtest.Value(fams, name, labels...)
		if !ok {
			t.Fatalf("no %s%v in /metrics", name, labels)
		}
		return v
	}
	alpha := []string{"id", "alpha", "name", "Alpha", "group", "", "processor", "default"}
	beta := []string{"id", "beta", "name", "Beta", "group", "", "processor", "default"}

	// The workers publish their counters about once a second.
	var fams map[string]*dto.MetricFamily
	p.waitFor("the workers' processed counts to add up to the queue", 20*time.Second, func() bool {
		fams = p.scrapeMetrics(url)
		sum := 0.0
		for w := 1; w <= 2; w++ {
			v, _ := promtest.Value(fams, "kg_worker_items_processed_total", "worker", strconv.Itoa(w))
			sum += v
		}
		return sum == items
	})
	for _, id := range []string{"alpha", "beta"} {
		labels := []string{"id", id}
		if must(fams, "kato_instance_up", labels...) != 1 || must(fams, "kato_instance_ready", labels...) != 1 || must(fams, "kato_instance_restarts_total", labels...) != 0 {
			t.Errorf("%s is not up, ready and unrestarted", id)
		}
		unit := "kato@" + id + ".service"
		// Where the machine's cgroup tree has no memory controller systemd
		// shows "[not set]" and the figure is the processes' RSS.
		if mem := must(fams, "kato_instance_memory_bytes", labels...); mem < 1<<20 || mem > 1<<30 {
			t.Errorf("%s memory %v bytes (systemd: %s)", id, mem, p.prop(unit, "MemoryCurrent"))
		}
		// systemctl shows whole seconds.
		if start := p.startTime(unit); math.Floor(must(fams, "kato_instance_start_time_seconds", labels...)) != start {
			t.Errorf("%s start time %v, systemd says %v", id, must(fams, "kato_instance_start_time_seconds", labels...), start)
		}
		if _, ok := promtest.Value(fams, "kato_instance_cpu_seconds_total", labels...); !ok {
			t.Errorf("no CPU time for %s", id)
		}
	}
	if _, ok := promtest.Value(fams, "kato_instance_up", alpha...); !ok {
		t.Errorf("alpha's labels are not %v", alpha)
	}
	for w := 1; w <= 2; w++ {
		label := strconv.Itoa(w)
		if must(fams, "kg_worker_up", "worker", label) != 1 || must(fams, "kg_worker_restarts_total", "worker", label) != 0 || must(fams, "kg_worker_items_failed_total", "worker", label) != 0 {
			t.Errorf("worker %d is not up and clean", w)
		}
	}
	if must(fams, "kg_queue_items", "status", "completed") != items || must(fams, "kg_queue_items", "status", "pending") != 0 {
		t.Errorf("queue items: completed %v pending %v", must(fams, "kg_queue_items", "status", "completed"), must(fams, "kg_queue_items", "status", "pending"))
	}
	if must(fams, "kg_queue_claim_to_done_seconds") != items || must(fams, "kg_queue_enqueue_to_pickup_seconds") != items {
		t.Errorf("latency histograms count %v and %v items", must(fams, "kg_queue_claim_to_done_seconds"), must(fams, "kg_queue_enqueue_to_pickup_seconds"))
	}
	if must(fams, "kg_service_healthy") != 1 || must(fams, "kg_service_consecutive_failures") != 0 {
		t.Error("the KG service is not reported healthy")
	}

	// A crashed processor is restarted by systemd: one restart, a new
	// start time; a stopped one is down.
	before := must(fams, "kato_instance_start_time_seconds", "id", "alpha")
	p.must("systemctl", "kill", "--kill-whom=main", "--signal=SIGABRT", "kato@alpha.service")
	p.waitFor("alpha to be restarted and listen again", 30*time.Second, func() bool {
		fams = p.scrapeMetrics(url)
		up, _ := promtest.Value(fams, "kato_instance_up", "id", "alpha")
		ready, _ := promtest.Value(fams, "kato_instance_ready", "id", "alpha")
		restarts, _ := promtest.Value(fams, "kato_instance_restarts_total", "id", "alpha")
		return up == 1 && ready == 1 && restarts == 1
	})
	if n := p.intProp("kato@alpha.service", "NRestarts"); n != 1 {
		t.Errorf("systemd counts %d restarts", n)
	}
	if after := must(fams, "kato_instance_start_time_seconds", "id", "alpha"); after <= before {
		t.Errorf("start time %v after the restart, %v before", after, before)
	}
	// The metrics follow systemd's signals, never a stale copy: after a
	// kill -9 (Restart= brings alpha back), a `systemctl restart`, and for
	// an instance started after serve, each matches what systemd says now.
	matchesSystemd := func(id string) func() bool {
		unit := "kato@" + id + ".service"
		return func() bool {
			fams = p.scrapeMetrics(url)
			up, _ := promtest.Value(fams, "kato_instance_up", "id", id)
			ready, _ := promtest.Value(fams, "kato_instance_ready", "id", id)
			restarts, _ := promtest.Value(fams, "kato_instance_restarts_total", "id", id)
			start, _ := promtest.Value(fams, "kato_instance_start_time_seconds", "id", id)
			return up == 1 && ready == 1 && p.prop(unit, "ActiveState") == "active" &&
				restarts == float64(p.intProp(unit, "NRestarts")) && math.Floor(start) == p.startTime(unit)
		}
	}
	before = must(fams, "kato_instance_start_time_seconds", "id", "alpha")
	p.must("sh", "-c", "kill -9 $(systemctl show -P MainPID kato@alpha.service)")
	p.waitFor("alpha's metrics to show systemd's restart after a kill -9", 30*time.Second, func() bool {
		return matchesSystemd("alpha")() && must(fams, "kato_instance_restarts_total", "id", "alpha") == 2
	})
	if after := must(fams, "kato_instance_start_time_seconds", "id", "alpha"); after <= before {
		t.Errorf("start time %v after the kill -9, %v before", after, before)
	}
	before = must(fams, "kato_instance_start_time_seconds", "id", "alpha")
	p.must("systemctl", "restart", "kato@alpha.service")
	p.waitFor("alpha's metrics to show the systemctl restart", 30*time.Second, func() bool {
		return matchesSystemd("alpha")() && must(fams, "kato_instance_start_time_seconds", "id", "alpha") > before
	})
	// gamma on a network of its own: ready means its processor listens
	// inside its namespace.
	p.mustKM("start", "--id", "gamma", "--name", "Gamma", "--port", "8003", "--network", "private")
	p.waitFor("the new gamma in the metrics as systemd has it", 30*time.Second, matchesSystemd("gamma"))
	gamma := []string{"id", "gamma", "name", "Gamma", "group", "", "processor", "default"}
	if mem := must(fams, "kato_instance_memory_bytes", gamma...); mem < 1<<20 || mem > 1<<30 {
		t.Errorf("gamma memory %v bytes (systemd: %s)", mem, p.prop("kato@gamma.service", "MemoryCurrent"))
	}
	// The memory is the cgroup's, as systemd accounts it where it does.
	if sd, err := strconv.ParseFloat(p.prop("kato@alpha.service", "MemoryCurrent"), 64); err == nil {
		if mem := must(fams, "kato_instance_memory_bytes", "id", "alpha"); math.Abs(mem-sd) > 8<<20 {
			t.Errorf("alpha memory %v bytes, systemd accounts %v", mem, sd)
		}
	}
	// serve held its subscription to systemd's signals all along.
	if log := p.must("journalctl", "-u", "kato-manager-serve", "--no-pager", "-o", "cat"); strings.Contains(log, "watch units") {
		t.Errorf("serve lost its watch of the units:\n%s", log)
	}

	p.must("systemctl", "stop", "kato@beta.service")
	fams = p.scrapeMetrics(url)
	if must(fams, "kato_instance_up", beta...) != 0 || must(fams, "kato_instance_ready", beta...) != 0 || must(fams, "kato_instance_memory_bytes", beta...) != 0 {
		t.Error("the stopped beta is not down")
	}
	if must(fams, "kato_manager_scrape_success", "source", "systemd") != 1 || must(fams, "kato_manager_scrape_success", "source", "queue") != 1 {
		t.Error("a source failed")
	}
}

// startTime is when systemd says the unit's main process started, in
// seconds since the epoch.
func (p *kgPool) startTime(unit string) float64 {
	p.t.Helper()
	out := strings.TrimSpace(p.must("systemctl", "show", "-P", "ExecMainStartTimestamp", "--timestamp=unix", unit))
	sec, err := strconv.ParseFloat(strings.TrimPrefix(out, "@"), 64)
	if err != nil {
		p.t.Fatalf("ExecMainStartTimestamp of %s: %q", unit, out)
	}
	return sec
}
