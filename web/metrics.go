package web

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/supervisor"
)

// fleetCollector is the Prometheus collector of one scrape of /metrics:
// it turns a snapshot (the fleet from one systemd listing and the caches,
// the queue from one overview), shared with the other scrapes and pages
// of the same second, into metrics.
type fleetCollector struct {
	snap *snapshot
	// host is this host's name, told apart from the other hosts whose
	// workers report to the same queue.
	host string
}

// metricsHandler serves /metrics from snaps: it waits for the snapshot
// with the request's context, then sends it encoded in the format the
// scraper asks for, gzipped if it accepts that; each encoding is made once
// per snapshot.
func metricsHandler(snaps *snapshots, host string, errLog promhttp.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap, err := snaps.get(r.Context(), defaultPageStatus)
		if err != nil {
			return // the client is gone
		}
		format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultAcceptedFormats()...)
		gz := acceptsGzip(r.Header.Get("Accept-Encoding"))
		body, err := snap.render(fmt.Sprintf("metrics %s gzip=%v", format, gz), func() ([]byte, error) {
			return encodeMetrics(&fleetCollector{snap: snap, host: host}, format, gz)
		})
		if err != nil {
			if errLog != nil {
				errLog.Println(err)
			}
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", string(format))
		w.Header().Set("Vary", "Accept-Encoding")
		if gz {
			w.Header().Set("Content-Encoding", "gzip")
		}
		w.Write(body) //nolint:errcheck // the client may be gone
	})
}

// encodeMetrics gathers c and encodes its metrics in format.
func encodeMetrics(c prometheus.Collector, format expfmt.Format, gz bool) ([]byte, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	fams, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	var out io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		out = zw
	}
	enc := expfmt.NewEncoder(out, format)
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			return nil, err
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		if err := c.Close(); err != nil {
			return nil, err
		}
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// acceptsGzip reports whether an Accept-Encoding header accepts gzip.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

var instanceLabels = []string{"id", "name", "group", "processor"}

var (
	descInstanceUp        = prometheus.NewDesc("kato_instance_up", "Whether the instance's unit is active and running (1) or not (0).", instanceLabels, nil)
	descInstanceReady     = prometheus.NewDesc("kato_instance_ready", "Whether the instance's main process listens on its API port.", instanceLabels, nil)
	descInstanceRestarts  = prometheus.NewDesc("kato_instance_restarts_total", "Automatic restarts of the instance by systemd (NRestarts; reset by a manual restart or reset-failed).", instanceLabels, nil)
	descInstanceLiveness  = prometheus.NewDesc("kato_instance_liveness_restarts_total", "Restarts of the instance by the liveness check (kato-liveness.timer), after liveness_failures failed health checks in a row.", []string{"id"}, nil)
	descInstanceMemory    = prometheus.NewDesc("kato_instance_memory_bytes", "Memory of the instance's cgroup (memory.current), 0 when stopped.", instanceLabels, nil)
	descInstanceCPU       = prometheus.NewDesc("kato_instance_cpu_seconds_total", "CPU time of the instance's cgroup since it started (usage_usec of cpu.stat).", instanceLabels, nil)
	descInstanceStartTime = prometheus.NewDesc("kato_instance_start_time_seconds", "When the instance's main process started, in seconds since the epoch; 0 when stopped.", instanceLabels, nil)

	descWorkerUp        = prometheus.NewDesc("kg_worker_up", "Whether the KG worker's unit is active and running; for a worker of another host (local=\"false\"), whether it still reports.", workerLabels, nil)
	descWorkerProcessed = prometheus.NewDesc("kg_worker_items_processed_total", "Items the worker's current process has finished, as it last reported.", workerLabels, nil)
	descWorkerFailed    = prometheus.NewDesc("kg_worker_items_failed_total", "Items the worker's current process has failed, as it last reported.", workerLabels, nil)
	descWorkerRestarts  = prometheus.NewDesc("kg_worker_restarts_total", "Automatic restarts of the worker by systemd (NRestarts); this host's workers only.", workerLabels, nil)

	descQueueItems    = prometheus.NewDesc("kg_queue_items", "Items in the KG queue by status.", []string{"status"}, nil)
	descQueuePickup   = prometheus.NewDesc("kg_queue_enqueue_to_pickup_seconds", "Time from enqueue to the latest claim, over the items claimed at least once.", nil, nil)
	descQueueDone     = prometheus.NewDesc("kg_queue_claim_to_done_seconds", "Time from claim to completion, over the completed items.", nil, nil)
	descServiceHealth = prometheus.NewDesc("kg_service_healthy", "Whether the KG service answered the first running worker's last health check.", nil, nil)
	descServiceFails  = prometheus.NewDesc("kg_service_consecutive_failures", "Consecutive failed health checks of the KG service, as the first running worker counts them.", nil, nil)

	descFrontUp       = prometheus.NewDesc("kato_front_up", "Whether the group's front (kato-front@GROUP.service) is active and its stats socket answers.", []string{"group"}, nil)
	descFrontRequests = prometheus.NewDesc("kato_front_requests_total", "HTTP requests the group's front received since it started.", []string{"group"}, nil)
	descFrontErrors   = prometheus.NewDesc("kato_front_errors_total", "Requests of the group's front that failed: bad requests and 5xx answers, members unreachable included.", []string{"group"}, nil)
	descMemberUp      = prometheus.NewDesc("kato_front_member_up", "1 for the state a member of the group's front is in (up, draining, down, maintenance), 0 for the others.", []string{"group", "member", "state"}, nil)
	descMemberSess    = prometheus.NewDesc("kato_front_member_sessions", "Connections open from the group's front to the member now.", []string{"group", "member"}, nil)
	descMemberReqs    = prometheus.NewDesc("kato_front_member_requests_total", "Requests the group's front sent to the member since it started.", []string{"group", "member"}, nil)

	descScrapeOK = prometheus.NewDesc("kato_manager_scrape_success", "Whether this scrape could read the source (systemd, queue).", []string{"source"}, nil)
)

// Describe implements prometheus.Collector.
func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInstanceUp, descInstanceReady, descInstanceRestarts, descInstanceLiveness, descInstanceMemory, descInstanceCPU, descInstanceStartTime,
		descWorkerUp, descWorkerProcessed, descWorkerFailed, descWorkerRestarts,
		descQueueItems, descQueuePickup, descQueueDone, descServiceHealth, descServiceFails, descScrapeOK,
		descFrontUp, descFrontRequests, descFrontErrors, descMemberUp, descMemberSess, descMemberReqs} {
		ch <- d
	}
}

func gauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector. A source that cannot be read
// leaves its metrics out and says so in kato_manager_scrape_success; the
// rest is still served.
func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	fleet, err := c.snap.Fleet, c.snap.FleetErr
	ch <- prometheus.MustNewConstMetric(descScrapeOK, prometheus.GaugeValue, gauge(err == nil), "systemd")
	if err == nil {
		for _, i := range fleet.Instances {
			l := []string{i.ID, i.Name, i.Group, i.Processor}
			var start float64
			if i.Up && !i.Since.IsZero() {
				start = float64(i.Since.UnixMicro()) / 1e6
			}
			ch <- prometheus.MustNewConstMetric(descInstanceUp, prometheus.GaugeValue, gauge(i.Up), l...)
			ch <- prometheus.MustNewConstMetric(descInstanceReady, prometheus.GaugeValue, gauge(i.Ready), l...)
			ch <- prometheus.MustNewConstMetric(descInstanceRestarts, prometheus.CounterValue, float64(i.Restarts), l...)
			ch <- prometheus.MustNewConstMetric(descInstanceLiveness, prometheus.CounterValue, float64(i.LivenessRestarts), i.ID)
			ch <- prometheus.MustNewConstMetric(descInstanceMemory, prometheus.GaugeValue, float64(i.MemoryBytes), l...)
			ch <- prometheus.MustNewConstMetric(descInstanceCPU, prometheus.CounterValue, i.CPUSeconds, l...)
			ch <- prometheus.MustNewConstMetric(descInstanceStartTime, prometheus.GaugeValue, start, l...)
		}
		collectFronts(ch, fleet.Fronts)
	}
	queueOK := c.snap.QueueErr == nil
	ch <- prometheus.MustNewConstMetric(descScrapeOK, prometheus.GaugeValue, gauge(queueOK), "queue")
	var reports []kgworker.Report
	if queueOK {
		reports = c.snap.Queue.Reports
	}
	if err == nil {
		c.collectWorkers(ch, fleet.Workers, reports)
	}
	if !queueOK {
		return
	}
	counts, lat := c.snap.Queue.Counts, c.snap.Queue.Latencies
	for status, n := range map[kgworker.Status]int{kgworker.StatusPending: counts.Pending, kgworker.StatusProcessing: counts.Processing,
		kgworker.StatusCompleted: counts.Completed, kgworker.StatusFailed: counts.Failed, kgworker.StatusSkipped: counts.Skipped} {
		ch <- prometheus.MustNewConstMetric(descQueueItems, prometheus.GaugeValue, float64(n), string(status))
	}
	ch <- constHistogram(descQueuePickup, lat.Pickup)
	ch <- constHistogram(descQueueDone, lat.Done)
}

// memberStates are the states kato_front_member_up has a series for.
var memberStates = []front.State{front.Up, front.Draining, front.Down, front.Maintenance}

// collectFronts emits each front's counters and its members' states; a
// front whose stats socket did not answer has kato_front_up 0 and no
// counters.
func collectFronts(ch chan<- prometheus.Metric, fronts []supervisor.FrontView) {
	for _, f := range fronts {
		ch <- prometheus.MustNewConstMetric(descFrontUp, prometheus.GaugeValue, gauge(f.ActiveState == "active" && f.Answering), f.Group)
		if !f.Answering {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descFrontRequests, prometheus.CounterValue, float64(f.Requests), f.Group)
		ch <- prometheus.MustNewConstMetric(descFrontErrors, prometheus.CounterValue, float64(f.Errors), f.Group)
		seen := map[string]bool{}
		for _, m := range f.Members {
			// With balance path a member is in one backend; elsewhere too:
			// the first row of an id stands for it.
			if seen[m.ID] {
				continue
			}
			seen[m.ID] = true
			for _, s := range memberStates {
				ch <- prometheus.MustNewConstMetric(descMemberUp, prometheus.GaugeValue, gauge(m.State == s), f.Group, m.ID, string(s))
			}
			ch <- prometheus.MustNewConstMetric(descMemberSess, prometheus.GaugeValue, float64(m.Sessions), f.Group, m.ID)
			ch <- prometheus.MustNewConstMetric(descMemberReqs, prometheus.CounterValue, float64(m.Requests), f.Group, m.ID)
		}
	}
}

// workerLabels are the labels of a worker's metrics: its host, whether that
// is this host, and its number there.
var workerLabels = []string{"host", "local", "worker"}

// collectWorkers emits the workers' metrics: this host's units, then the
// workers of other hosts that report to the same (PostgreSQL) queue. A
// report counts only for the process that wrote it (same pid), as in
// `workers stats`; the KG service's health is the first running worker's
// view of it.
func (c *fleetCollector) collectWorkers(ch chan<- prometheus.Metric, workers []supervisor.WorkerSample, reports []kgworker.Report) {
	byWorker, remote := supervisor.HostReports(reports, c.host)
	serviceSeen := false
	for _, w := range workers {
		if w.ActiveState == "inactive" {
			continue // stopped on purpose: not part of the pool
		}
		label := []string{c.host, "true", strconv.Itoa(w.WorkerID)}
		var stats kgworker.Stats
		if r, ok := byWorker[w.WorkerID]; ok && w.Up && uint32(r.PID) == w.PID {
			stats = r.Stats
			if !serviceSeen {
				serviceSeen = true
				ch <- prometheus.MustNewConstMetric(descServiceHealth, prometheus.GaugeValue, gauge(r.Service.IsHealthy))
				ch <- prometheus.MustNewConstMetric(descServiceFails, prometheus.GaugeValue, float64(r.Service.ConsecutiveFailures))
			}
		}
		ch <- prometheus.MustNewConstMetric(descWorkerUp, prometheus.GaugeValue, gauge(w.Up), label...)
		ch <- prometheus.MustNewConstMetric(descWorkerProcessed, prometheus.CounterValue, float64(stats.TotalProcessed), label...)
		ch <- prometheus.MustNewConstMetric(descWorkerFailed, prometheus.CounterValue, float64(stats.TotalFailed), label...)
		ch <- prometheus.MustNewConstMetric(descWorkerRestarts, prometheus.CounterValue, float64(w.Restarts), label...)
	}
	for _, w := range supervisor.RemoteWorkers(remote, time.Now()) {
		label := []string{w.Host, "false", strconv.Itoa(w.WorkerID)}
		ch <- prometheus.MustNewConstMetric(descWorkerUp, prometheus.GaugeValue, gauge(w.Running), label...)
		ch <- prometheus.MustNewConstMetric(descWorkerProcessed, prometheus.CounterValue, float64(w.Stats.TotalProcessed), label...)
		ch <- prometheus.MustNewConstMetric(descWorkerFailed, prometheus.CounterValue, float64(w.Stats.TotalFailed), label...)
	}
}

func constHistogram(d *prometheus.Desc, h queue.Histogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b] = h.Cumulative[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets)
}
