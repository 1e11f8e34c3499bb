package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// loadSpec is one load run of serve: clients each asking the paths in turn
// for the duration, on keep-alive connections, with a client timeout.
type loadSpec struct {
	URL      string
	Paths    []string
	Clients  int
	Duration time.Duration
	Timeout  time.Duration
	PID      int // serve's, for its RSS
}

// loadResult is what a load run measured.
type loadResult struct {
	// Alone are the latencies of one client on its own, before the load.
	Alone []time.Duration
	// Loaded are the latencies of the answered requests under load.
	Loaded      []time.Duration
	Answers     int
	Errors      int            // transport errors and timeouts
	Statuses    map[string]int // status codes other than 200
	RSSBefore   uint64
	RSSPeak     uint64
	RSSAfter    uint64 // 5 s after the load
	RSSAfterMin uint64 // 30 s after the load
	// RSSAfterAgain is 5 s after a second load like the first: no more
	// than RSSAfter if nothing grows from load to load.
	RSSAfterAgain uint64
	AnswersAgain  int
	ErrorsAgain   int
}

// loadClient runs in the machine, as `bench -load-client SPEC`: the
// load's loopback is the machine's. It prints a loadResult as JSON.
func loadClient(specJSON string) {
	var s loadSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		fail(fmt.Errorf("-load-client %q: %w", specJSON, err))
	}
	tr := &http.Transport{MaxIdleConns: s.Clients + 1, MaxIdleConnsPerHost: s.Clients + 1}
	client := &http.Client{Transport: tr, Timeout: s.Timeout}
	once := func(path string) (time.Duration, int, error) {
		start := time.Now()
		resp, err := client.Get(s.URL + path)
		if err != nil {
			return 0, 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), resp.StatusCode, err
	}
	r := loadResult{Statuses: map[string]int{}, RSSBefore: rss(s.PID)}
	// One client alone, as long as a fifth of the load, not less than 40
	// requests.
	for i := 0; i < 40 || time.Duration(len(r.Alone))*median(r.Alone) < s.Duration/5; i++ {
		d, code, err := once(s.Paths[i%len(s.Paths)])
		if err != nil || code != http.StatusOK {
			fail(fmt.Errorf("one client alone: %d, %v", code, err))
		}
		r.Alone = append(r.Alone, d)
	}
	var mu sync.Mutex
	run := func(loaded *[]time.Duration, answers, errs *int) {
		stop := time.Now().Add(s.Duration)
		done := make(chan struct{})
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					v := rss(s.PID)
					mu.Lock()
					r.RSSPeak = max(r.RSSPeak, v)
					mu.Unlock()
				}
			}
		}()
		var wg sync.WaitGroup
		for c := range s.Clients {
			wg.Go(func() {
				for i := c; time.Now().Before(stop); i++ {
					d, code, err := once(s.Paths[i%len(s.Paths)])
					mu.Lock()
					switch {
					case err != nil:
						*errs++
					case code != http.StatusOK:
						r.Statuses[strconv.Itoa(code)]++
					default:
						*answers++
						*loaded = append(*loaded, d)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(done)
		tr.CloseIdleConnections()
	}
	run(&r.Loaded, &r.Answers, &r.Errors)
	time.Sleep(5 * time.Second)
	r.RSSAfter = rss(s.PID)
	time.Sleep(25 * time.Second)
	r.RSSAfterMin = rss(s.PID)
	var again []time.Duration
	run(&again, &r.AnswersAgain, &r.ErrorsAgain)
	time.Sleep(5 * time.Second)
	r.RSSAfterAgain = rss(s.PID)
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fail(err)
	}
}

// rss is a process's resident set in bytes, from /proc/PID/status.
func rss(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fail(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				fail(fmt.Errorf("VmRSS of %d: %q", pid, v))
			}
			return kb << 10
		}
	}
	fail(fmt.Errorf("no VmRSS for process %d", pid))
	return 0
}

// pct is percentile in percent, 0 for no samples.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return percentile(ds, p)
}

// serveLoad measures serve under load in the machine: instances running,
// workers working through a queue of items, then clients at once on
// /metrics and / for the duration, beside one client alone in the same
// run. The load comes from this program, copied into the machine.
func (b *bench) serveLoad(instances, workers, items, clients int, duration time.Duration) []row {
	km := testbed.KatoManager
	conf := testbed.Config + "\n[kg]\ndb_path = \"/var/lib/kato/kg/kg.db\"\n"
	if err := b.m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		fail(err)
	}
	defer func() {
		if err := b.m.WriteFile("/etc/kato/kato.toml", []byte(testbed.Config), 0o644); err != nil {
			fail(err)
		}
	}()
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	if err := b.m.CopyFile(self, "/usr/local/bin/kato-bench", 0o755); err != nil {
		fail(err)
	}
	// The KG service double answers in 200ms, so that the workers are
	// busy through the load.
	b.sh(fmt.Sprintf(`%[1]s install-units >/dev/null
		%[1]s queue stats >/dev/null
		systemd-run --unit=bench-kgservice -- %[2]s --listen 127.0.0.1:8088 --latency-ms 200 >/dev/null
		sqlite3 -cmd '.timeout 10000' /var/lib/kato/kg/kg.db "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %[3]d)
			INSERT INTO crawled_content(id, url, title, markdown, metadata)
			SELECT i, 'https://example.com/' || i, 'Document ' || i, '# Document ' || i || char(10) || 'Body of document ' || i || ', long enough.', '{}' FROM n;
			INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count)
			SELECT id, 0, 'Chunk of document ' || id, 0, 99, 4 FROM crawled_content;"
		%[1]s queue enqueue $(seq %[3]d) >/dev/null
		%[1]s workers scale %[4]d >/dev/null
		for i in %[5]s; do %[1]s start --id $i >/dev/null; done
		systemd-run --unit=bench-load-serve -- %[1]s serve --listen 127.0.0.1:9098 --public-reads >/dev/null
		for i in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:9098/metrics && exit 0; sleep 0.1; done; exit 1`,
		km, testbed.KGServiceFake, items, workers, ids("w", instances)))
	pidText, _, err := b.m.Run(b.ctx, "systemctl", "show", "-P", "MainPID", "bench-load-serve")
	if err != nil {
		fail(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(pidText))
	if err != nil || pid == 0 {
		fail(fmt.Errorf("serve's main pid: %q", pidText))
	}
	spec, _ := json.Marshal(loadSpec{URL: "http://127.0.0.1:9098", Paths: []string{"/metrics", "/"}, Clients: clients,
		Duration: duration, Timeout: 5 * time.Second, PID: pid})
	out, _, err := b.m.Run(b.ctx, "/usr/local/bin/kato-bench", "-load-client", string(spec))
	if err != nil {
		fail(err)
	}
	var r loadResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		fail(fmt.Errorf("load client: %w: %q", err, out))
	}
	what := fmt.Sprintf("serve, %d clients %s on /metrics and /, %d instances, %d workers, %d items", clients, duration, instances, workers, items)
	mb := func(v uint64) string { return fmt.Sprintf("%.1f MB", float64(v)/1e6) }
	b.notes = append(b.notes, fmt.Sprintf("%s: %d answers, %d errors, other statuses %v; p50 %s, p99 %s, max %s (one client alone: p50 %s, p99 %s); serve's RSS before %s, peak %s, 5 s after %s, 30 s after %s; a second load (%d answers, %d errors): RSS 5 s after %s",
		what, r.Answers, r.Errors, r.Statuses, round(pct(r.Loaded, 50)), round(pct(r.Loaded, 99)), round(slices.Max(append(r.Loaded, 0))),
		round(pct(r.Alone, 50)), round(pct(r.Alone, 99)), mb(r.RSSBefore), mb(r.RSSPeak), mb(r.RSSAfter), mb(r.RSSAfterMin), r.AnswersAgain, r.ErrorsAgain, mb(r.RSSAfterAgain)))
	fmt.Fprintln(os.Stderr, "serve-load:", b.notes[len(b.notes)-1])
	b.sh(fmt.Sprintf(`systemctl stop bench-load-serve bench-kgservice
		systemctl stop 'kg-worker@*.service'
		%[1]s stop --all --no-mongo >/dev/null`, km))
	return []row{
		timeRow(what, "p50 under load", "one client alone, p50", pct(r.Loaded, 50), pct(r.Alone, 50)),
		timeRow(what, "p99 under load", "the goal: 500ms", pct(r.Loaded, 99), 500*time.Millisecond),
		{what: what, oursName: "serve's peak RSS", base: "the goal: 80 MB", ours: mb(r.RSSPeak), baseline: mb(80e6),
			ratio: 80e6 / float64(max(r.RSSPeak, 1)), ratioIs: "goal/kato-manager"},
	}
}

// loadFlags are the settings of the serve-load row.
type loadFlags struct {
	instances, workers, items, clients *int
	duration                           *time.Duration
}
