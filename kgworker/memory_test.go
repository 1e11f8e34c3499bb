package kgworker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
	"github.com/kato-manager/kato-manager/kgworker"
)

// testMemoryMax is the default limits.worker_memory_max, 256M.
const testMemoryMax = 256 << 20

// peakRSS reads this process's peak resident set size from /proc.
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// memoryReport is what TestMemoryChild prints for its parent.
type memoryReport struct {
	PeakRSS int64
	Stats   kgworker.Stats
}

// TestMemoryChild is the worker of TestAnswerAtCapFitsMemory, run in a
// process of its own so that its peak memory is the worker's alone: it
// plans its memory as kg-worker does under a MemoryMax= of testMemoryMax
// and works the queue until it has settled one item.
func TestMemoryChild(t *testing.T) {
	url, db := os.Getenv("KGWORKER_MEMORY_URL"), os.Getenv("KGWORKER_MEMORY_DB")
	if url == "" {
		t.Skip("run by TestAnswerAtCapFitsMemory")
	}
	plan, err := kgworker.PlanMemory(testMemoryMax, 1)
	if err != nil {
		t.Fatal(err)
	}
	debug.SetMemoryLimit(plan.SoftLimit)
	q := openQueueAt(t, db, kgworker.WithBackoff(time.Hour, time.Hour))
	c, err := kgworker.NewClient(kgworker.ClientOpts{URL: url, Enabled: true, MaxResponseBytes: plan.MaxAnswerBytes})
	if err != nil {
		t.Fatal(err)
	}
	w, err := kgworker.New(kgworker.Opts{Queue: q, Client: c, Owner: "memory", PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for w.Stats().TotalProcessed == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rss, err := peakRSS()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(memoryReport{PeakRSS: rss, Stats: w.Stats()})
	fmt.Printf("\nREPORT %s\n", b)
}

// TestAnswerAtCapFitsMemory runs a worker planned for the default
// MemoryMax= of 256M in a process of its own against answers at and over
// its answer bound, in the shapes that cost the most: many small entities
// (the most overhead per byte), and a few values near MaxValueBytes (the
// decoder holds a whole value, in a buffer that grows by doubling). Its
// peak resident memory must stay under the limit with room for the page
// cache the kernel charges to the same cgroup, and an answer over a bound
// must be a failed attempt with a stored reason, not a crash. Before the
// plan, a 90 MiB answer holding one 80 MiB string was taken whole, at a peak
// of 200 to 300 MiB.
func TestAnswerAtCapFitsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("answers of 70 MiB and more")
	}
	plan, err := kgworker.PlanMemory(testMemoryMax, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MemoryMax %s: soft limit %s, answers up to %s", kgworker.FormatBytes(plan.Max),
		kgworker.FormatBytes(plan.SoftLimit), kgworker.FormatBytes(plan.MaxAnswerBytes))
	// The page cache of the database's files and the kernel's own memory
	// are charged to the worker's cgroup too: leave them 15%.
	rssBound := int64(testMemoryMax * 85 / 100)
	for _, tc := range []struct {
		name     string
		bytes    int64
		padChars int
		status   kgworker.Status
		reason   string
	}{
		{"small entities at the bound", plan.MaxAnswerBytes - 64<<10, 100, kgworker.StatusCompleted, ""},
		{"entities of 1 KiB at the bound", plan.MaxAnswerBytes - 64<<10, 800, kgworker.StatusCompleted, ""},
		{"values near their bound", plan.MaxAnswerBytes - 64<<10, kgworker.MaxValueBytes - 64<<10, kgworker.StatusCompleted, ""},
		{"answer over the bound", plan.MaxAnswerBytes + 1<<20, 800, kgworker.StatusPending, "larger than the limit"},
		{"one value of 80 MiB", 90 << 20, 80 << 20, kgworker.StatusPending, "a value of the answer is larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := kgservicefake.New()
			fake.SetControl(kgservicefake.Control{AnswerBytes: tc.bytes, PadChars: tc.padChars})
			srv := httptest.NewServer(fake)
			t.Cleanup(srv.Close)
			path := filepath.Join(t.TempDir(), "kg.db")
			q := openQueueAt(t, path)
			addContent(t, rawDB(t, path), 1, 3)
			id := enqueue(t, q, 1, 1)

			cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryChild$", "-test.v")
			cmd.Env = append(os.Environ(), "KGWORKER_MEMORY_URL="+srv.URL, "KGWORKER_MEMORY_DB="+path, "GOMEMLIMIT=", "GOGC=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("worker: %v\n%s", err, out)
			}
			_, line, ok := strings.Cut(string(out), "\nREPORT ")
			var rep memoryReport
			if !ok || json.Unmarshal([]byte(strings.SplitN(line, "\n", 2)[0]), &rep) != nil {
				t.Fatalf("worker printed no report:\n%s", out)
			}
			t.Logf("answer %s: peak RSS %s", kgworker.FormatBytes(tc.bytes), kgworker.FormatBytes(rep.PeakRSS))
			if rep.PeakRSS > rssBound {
				t.Errorf("peak RSS %s, want at most %s", kgworker.FormatBytes(rep.PeakRSS), kgworker.FormatBytes(rssBound))
			}
			it := get(t, q, id)
			if it.Status != tc.status {
				t.Errorf("item is %s (%q), want %s", it.Status, it.ErrorMessage, tc.status)
			}
			if tc.reason != "" && (it.RetryCount != 1 || !strings.Contains(it.ErrorMessage, tc.reason)) {
				t.Errorf("item has retry_count %d and error %q, want 1 and one saying %q", it.RetryCount, it.ErrorMessage, tc.reason)
			}
		})
	}
}
