// Command bench measures kato-manager, each measurement beside the baseline
// it replaces, and prints how many times better kato-manager does. The
// instance rows run against a real systemd: it boots its own throwaway one
// (internal/testkit/sdharness), so it needs root. The KG worker rows run kgworker's
// workers in this process against the KG service test double, beside a
// model of the worker of the system replaced; the several-hosts rows run
// kg-worker units on three machines joined by a network, PostgreSQL on one.
// Run it with `make bench`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
	"github.com/kato-manager/kato-manager/units"
)

// row is one line of the result table: the same work done both ways.
type row struct {
	what           string
	oursName, base string
	// ours and baseline are the rendered results.
	ours, baseline string
	// ratio is how many times better kato-manager did; ratioIs says which
	// way it was computed.
	ratio   float64
	ratioIs string
}

// timeRow is a row for work measured in elapsed time: less is better.
func timeRow(what, oursName, base string, ours, baseline time.Duration) row {
	return row{what: what, oursName: oursName, base: base, ours: round(ours).String(), baseline: round(baseline).String(),
		ratio: float64(baseline) / float64(ours), ratioIs: "baseline/kato-manager"}
}

func main() {
	instances := flag.Int("instances", 50, "instances started and stopped")
	listed := flag.Int("listed", 200, "registered, running instances for the list benchmark")
	listedAll := flag.Int("listed-all", 1000, "registered instances for the list benchmark's second size, those past -listed stopped")
	runs := flag.Int("runs", 5, "repetitions of the list measurement (the median is reported)")
	startRuns := flag.Int("start-runs", 21, "repetitions of the one-instance start measurement (the median is reported)")
	fleetRuns := flag.Int("fleet-runs", 3, "repetitions of each fleet apply measurement (the median is reported)")
	fleetLoop := flag.Bool("fleet-loop", true, "measure the apply rows against a shell loop of systemctl start too (not only against one systemctl start of all units)")
	skipInstances := flag.Bool("skip-instances", false, "skip the instance rows (no systemd, no root needed)")
	skipWorkers := flag.Bool("skip-workers", false, "skip the KG worker rows")
	only := flag.String("instance-rows", "start-one,start-stop,list,fleet,serve-load", "the instance rows to run, comma-separated")
	listProfiles := flag.String("list-cpuprofile", "", "write CPU profiles of list, status and serve's /metrics at each size of the list row into this directory (taken in runs of their own, after the measured ones)")
	load := loadFlags{
		instances: flag.Int("load-instances", 20, "running instances in the serve-load row"),
		workers:   flag.Int("load-workers", 2, "KG workers in the serve-load row"),
		items:     flag.Int("load-items", 305, "queue items in the serve-load row"),
		clients:   flag.Int("load-clients", 200, "clients at once in the serve-load row"),
		duration:  flag.Duration("load-duration", 20*time.Second, "how long the clients of the serve-load row ask"),
	}
	loadClientSpec := flag.String("load-client", "", "run as the load client of the serve-load row, inside the machine (internal)")
	minRun := flag.Duration("kg-min-run", 2*time.Second, "least duration of a kato-manager worker throughput run")
	legacyItems := flag.Int("kg-legacy-items", 50, "items per baseline worker throughput run")
	samples := flag.Int("kg-samples", 24, "enqueue→pickup latency samples each way")
	pickupSamples := flag.Int("kg-pickup-samples", 200, "enqueue→pickup latency samples on SQLite with and without the file watch")
	pickupOnly := flag.Bool("kg-pickup-only", false, "of the KG worker rows, measure only SQLite's enqueue→pickup and idle CPU")
	throughputOnly := flag.Bool("kg-throughput-only", false, "of the KG worker rows, measure only 1 and 4 workers against the bare loop")
	cpuProfile := flag.String("kg-cpuprofile", "", "write CPU profiles of the first round of the KG throughput rows to this path with .worker-N and .loop-N added (N workers)")
	kgRounds := flag.Int("kg-rounds", 5, "rounds of the KG throughput rows, each the bare loop then the worker (the median of the rounds' ratios is reported)")
	kgItems := flag.Int("kg-items", 8000, "items each run of the KG throughput rows drains")
	skipHosts := flag.Bool("skip-hosts", false, "skip the rows of KG workers on several hosts (three machines, PostgreSQL)")
	hostsItems := flag.Int("hosts-items", 2000, "items drained in each set-up of the several-hosts rows")
	frontOnly := flag.Bool("front-only", false, "run only the front rows (HAProxy and nginx on loopback, no systemd)")
	skipFront := flag.Bool("skip-front", false, "skip the front rows")
	frontOpts := frontFlags{
		duration:      flag.Duration("front-duration", 7*time.Second, "how long each way's closed loop of the front rows runs in all, split over the rounds"),
		openDuration:  flag.Duration("front-open-duration", 28*time.Second, "how long the front rows' open loop runs in all, split over the rounds"),
		clients:       flag.Int("front-clients", 16, "keep-alive clients at once in the front rows' closed loop"),
		rounds:        flag.Int("front-rounds", 7, "rounds the front rows' loads are interleaved in; each round gives its own ratios, and the rows give their median"),
		rate:          flag.Float64("front-rate", 600, "requests a second of the front rows' open loop, shared by the three ways in turn, below every way's saturation"),
		haproxyGlobal: flag.String("front-haproxy-global", "", "lines added to the front's global section, separated by ';' (such as 'nbthread 1')"),
		proxyCPU:      flag.String("front-proxy-cpu", "", "run HAProxy and nginx on these CPUs (taskset -c); start the bench itself on the others"),
	}
	fleetInstances := flag.String("fleet-instances", "50,200", "sizes of the fleet files the apply rows apply, comma-separated")
	flag.Parse()
	var fleetSizes []int
	for _, f := range strings.Split(*fleetInstances, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1000 {
			fail(fmt.Errorf("invalid -fleet-instances %q: must be sizes from 1 to 1000, comma-separated", *fleetInstances))
		}
		fleetSizes = append(fleetSizes, n)
	}
	if *loadClientSpec != "" {
		loadClient(*loadClientSpec)
		return
	}
	if *load.instances < 1 || *load.workers < 1 || *load.items < 1 || *load.clients < 1 || *load.duration <= 0 {
		fail(fmt.Errorf("invalid -load-instances %d, -load-workers %d, -load-items %d, -load-clients %d or -load-duration %s: must be positive",
			*load.instances, *load.workers, *load.items, *load.clients, *load.duration))
	}
	if *fleetRuns < 1 || *startRuns < 1 || *runs < 1 {
		fail(fmt.Errorf("invalid -fleet-runs %d, -start-runs %d or -runs %d: must be positive", *fleetRuns, *startRuns, *runs))
	}
	if *kgRounds < 1 || *kgItems < 1 {
		fail(fmt.Errorf("invalid -kg-rounds %d or -kg-items %d: must be positive", *kgRounds, *kgItems))
	}
	if *legacyItems < 1 || *samples < 1 || *pickupSamples < 1 || *minRun <= 0 || *hostsItems < 1 {
		fail(fmt.Errorf("invalid -kg-legacy-items %d, -kg-samples %d, -kg-pickup-samples %d, -kg-min-run %s or -hosts-items %d: must be positive", *legacyItems, *samples, *pickupSamples, *minRun, *hostsItems))
	}
	if *frontOpts.duration <= 0 || *frontOpts.openDuration <= 0 || *frontOpts.clients < 1 || *frontOpts.rounds < 1 || !(*frontOpts.rate > 0) {
		fail(fmt.Errorf("invalid -front-duration %s, -front-open-duration %s, -front-clients %d, -front-rounds %d or -front-rate %g: must be positive",
			*frontOpts.duration, *frontOpts.openDuration, *frontOpts.clients, *frontOpts.rounds, *frontOpts.rate))
	}
	ctx := context.Background()
	var rows []row
	var notes []string
	if *frontOnly {
		frontRows, frontNotes, err := frontRows(ctx, frontOpts)
		if err != nil {
			fail(err)
		}
		print(frontRows, frontNotes)
		return
	}
	if !*skipInstances {
		instRows, instNotes := instanceRows(ctx, strings.Split(*only, ","), *instances, fleetSizes, *listed, *listedAll, *runs, *startRuns, *fleetRuns, *fleetLoop, load, *listProfiles)
		rows, notes = append(rows, instRows...), instNotes
	}
	if !*skipWorkers {
		kb := &kgBench{ctx: ctx, minRun: *minRun, legacyItems: *legacyItems, samples: *samples,
			pickupSamples: *pickupSamples, pickupOnly: *pickupOnly,
			throughputOnly: *throughputOnly, cpuProfile: *cpuProfile, rounds: *kgRounds, throughputItems: *kgItems}
		kgRows, err := kb.rows()
		if err != nil {
			fail(err)
		}
		rows, notes = append(rows, kgRows...), append(notes, kb.notes...)
	}
	if !*skipHosts {
		hostRows, hostNotes, err := hostsRows(ctx, *hostsItems, *samples)
		if err != nil {
			fail(err)
		}
		rows, notes = append(rows, hostRows...), append(notes, hostNotes...)
	}
	if !*skipFront {
		fRows, fNotes, err := frontRows(ctx, frontOpts)
		if err != nil {
			fail(err)
		}
		rows, notes = append(rows, fRows...), append(notes, fNotes...)
	}
	print(rows, notes)
}

// instanceRows boots a machine and measures the instance commands in it.
func instanceRows(ctx context.Context, only []string, instances int, fleetSizes []int, listed, listedAll, runs, startRuns, fleetRuns int, fleetLoop bool, load loadFlags, listProfiles string) ([]row, []string) {
	m, err := sdharness.Boot(ctx, sdharness.Options{})
	if err != nil {
		fail(err)
	}
	defer m.Close()
	if err := testbed.Install(m); err != nil {
		fail(err)
	}
	b := &bench{m: m, ctx: ctx, listProfiles: listProfiles, fleetLoop: fleetLoop}
	var rows []row
	for _, r := range []struct {
		name string
		rows func() []row
	}{
		{"start-one", func() []row { return b.startOne(startRuns) }},
		{"start-stop", func() []row { return b.startStop(instances) }},
		{"list", func() []row { return b.list(listed, listedAll, runs) }},
		{"fleet", func() []row { return b.fleet(fleetSizes, listed, runs, fleetRuns) }},
		{"serve-load", func() []row {
			return b.serveLoad(*load.instances, *load.workers, *load.items, *load.clients, *load.duration)
		}},
	} {
		if slices.Contains(only, r.name) {
			rows = append(rows, r.rows()...)
		}
	}
	return rows, b.notes
}

type bench struct {
	m   *sdharness.Machine
	ctx context.Context
	// fleetLoop is -fleet-loop: the apply rows' shell loop baseline.
	fleetLoop bool
	// listProfiles is -list-cpuprofile: where the list row's CPU profiles
	// go, "" for none.
	listProfiles string
	// notes are printed under the table.
	notes []string
}

// cpuTicks returns the busy and idle clock ticks of all CPUs so far, from
// /proc/stat, which is the host's in every namespace.
func cpuTicks() (busy, idle uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		fail(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i := 1; i < len(f) && i <= 8; i++ {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			fail(fmt.Errorf("/proc/stat: %q: %w", line, err))
		}
		if i == 4 || i == 5 {
			idle += v
		} else {
			busy += v
		}
	}
	return busy, idle
}

// busyShare runs fn and returns how busy the CPUs were meanwhile, from 0 to 1.
func busyShare(fn func()) float64 {
	b0, i0 := cpuTicks()
	fn()
	b1, i1 := cpuTicks()
	if total := b1 - b0 + i1 - i0; total > 0 {
		return float64(b1-b0) / float64(total)
	}
	return 0
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// sh runs a shell script inside the machine and returns how long it took.
func (b *bench) sh(script string) time.Duration {
	start := time.Now()
	if _, _, err := b.m.Run(b.ctx, "/bin/sh", "-ec", script); err != nil {
		fail(fmt.Errorf("%s: %w", firstLine(script), err))
	}
	return time.Since(start)
}

// settle waits until systemd has no job queued and then 100ms more, so
// that each side of a comparison starts on a machine done with the step
// before (a stop's cgroup removal, the journal's writes).
func (b *bench) settle() {
	b.sh(`while [ -n "$(systemctl list-jobs --no-legend)" ]; do sleep 0.01; done; sleep 0.1`)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// ids are the instance IDs of one benchmark run.
func ids(prefix string, n int) string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return strings.Join(out, " ")
}

// startOne measures the start of one generation-A instance until its
// processor answers its health request, on the host network and on a
// private one: kato-manager start of a new instance (register, render,
// start, poll) against systemctl start of the same unit, configured by that
// start and stopped, followed by a shell loop polling the same request
// every 20ms, kato-manager's interval.
// Both end when the processor answers, and each starts once the machine
// has settled. A third row is the private network's cost: kato-manager's
// private start against its host start. A note gives the run-by-run
// ratios: the runs alternate, so each pair saw the machine alike.
func (b *bench) startOne(runs int) []row {
	km := testbed.KatoManager
	if err := b.m.WriteFile("/etc/kato/kato.toml", []byte(testbed.ConfigWithMongo), 0o644); err != nil {
		fail(err)
	}
	defer func() {
		if err := b.m.WriteFile("/etc/kato/kato.toml", []byte(testbed.Config), 0o644); err != nil {
			fail(err)
		}
	}()
	b.sh("systemctl start " + testbed.MongoUnit)
	networks := []string{"host", "private"}
	km1 := map[string][]time.Duration{}
	base := map[string][]time.Duration{}
	phases := map[string][]startPhases{}
	for _, network := range networks {
		// One start first, not counted: it brings the processor's
		// binary and libraries into the page cache for both sides.
		b.sh(fmt.Sprintf("%[1]s start --processor a --network %[2]s --id warm-%[2]s --port 8500 >/dev/null && %[1]s stop warm-%[2]s >/dev/null", km, network))
	}
	// Each run starts one new instance through kato-manager, stops its
	// unit, and starts the same unit again through systemctl: the runs
	// alternate, so that both sides see the machine alike. The host and
	// the private network take turns too, run by run, so that their ratio
	// is of starts made side by side.
	for r := 0; r < runs; r++ {
		for _, network := range networks {
			id := fmt.Sprintf("one-%s-%d", network, r)
			b.settle()
			begin := monotonic()
			km1[network] = append(km1[network], b.sh(fmt.Sprintf("%s start --processor a --network %s --id %s --port 8500 >/dev/null", km, network, id)))
			phases[network] = append(phases[network], b.phasesOf(id, network, begin, monotonic()))
			b.sh("systemctl stop " + units.InstanceUnit(id))
			b.settle()
			base[network] = append(base[network], b.sh(fmt.Sprintf(`systemctl start %[2]s
				until curl -sf -o /dev/null --max-time 2 http://127.0.0.1:8500/%[1]s/ping; do sleep 0.02; done`, id, units.InstanceUnit(id))))
			b.sh(fmt.Sprintf("%s stop %s >/dev/null", km, id))
		}
	}
	var rows []row
	for _, network := range networks {
		b.notes = append(b.notes, phasesNote("start 1 instance, "+network+" network", phases[network]))
		b.notes = append(b.notes, fmt.Sprintf("start 1 instance, %s network: kato-manager's time over the baseline's, run by run: %s",
			network, ratioSpread(km1[network], base[network])))
		rows = append(rows, timeRow("start 1 generation-A instance, "+network+" network", "kato-manager start (until GET /{id}/ping answers)",
			"systemctl start + curl poll loop", median(km1[network]), median(base[network])))
	}
	b.notes = append(b.notes, fmt.Sprintf("start 1 instance, private network's time over the host network's, run by run (the two taking turns): %s",
		ratioSpread(km1["private"], km1["host"])))
	rows = append(rows, timeRow("private network cost of start", "kato-manager start --network private", "kato-manager start --network host",
		median(km1["private"]), median(km1["host"])))
	return rows
}

// ratioSpread is the median and the range of ours[i] ÷ base[i], pairs of
// runs made side by side.
func ratioSpread(ours, base []time.Duration) string {
	ratios := make([]float64, len(ours))
	for i := range ours {
		ratios[i] = float64(ours[i]) / float64(base[i])
	}
	slices.Sort(ratios)
	return fmt.Sprintf("median %.2f×, from %.2f× to %.2f× (%d runs)", ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1], len(ratios))
}

// startStop starts and stops n instances through kato-manager, then the
// same units through a shell loop of systemctl. kato-manager also writes
// the registry and unit files and waits until each processor listens;
// systemctl only waits for the start job.
func (b *bench) startStop(n int) []row {
	km := testbed.KatoManager
	list := ids("k", n)
	kmStart := b.sh(fmt.Sprintf(`for i in %s; do %s start --id $i >/dev/null; done`, list, km))
	kmStop := b.sh(fmt.Sprintf(`for i in %s; do %s stop $i >/dev/null; done`, list, km))
	// The baseline's units are configured by kato-manager and then stopped,
	// so systemctl finds them exactly as kato-manager left them.
	base := ids("s", n)
	b.sh(fmt.Sprintf(`for i in %s; do %s start --id $i >/dev/null; done; systemctl stop 'kato@s*.service'`, base, km))
	scStart := b.sh(fmt.Sprintf(`for i in %s; do systemctl start kato@$i.service; done`, base))
	scStop := b.sh(fmt.Sprintf(`for i in %s; do systemctl stop kato@$i.service; done`, base))
	b.sh(km + " stop --all --no-mongo >/dev/null")
	return []row{
		timeRow(fmt.Sprintf("start %d instances", n), "kato-manager start (waits for the API port)", "systemctl start loop", kmStart, scStart),
		timeRow(fmt.Sprintf("stop %d instances", n), "kato-manager stop (removes files, entry)", "systemctl stop loop", kmStop, scStop),
	}
}

// list measures `kato-manager list`, `kato-manager status` and a scrape
// of serve's /metrics with n registered, running instances against the
// per-unit query a script would make (one `systemctl show` per unit for
// the same columns) and against one `systemctl show` of all the units;
// then the same with total registered instances, those past n rendered
// and enabled but stopped (units that exist but do not run).
func (b *bench) list(n, total, runs int) []row {
	km := testbed.KatoManager
	file, _ := b.fleetFileAt("list.yaml", "l", n, 10000, "")
	b.sh(fmt.Sprintf("%s apply -f %s >/root/apply.log 2>&1 || { tail -20 /root/apply.log >&2; exit 1; }", km, file))
	// serve's /metrics: one listing, the units' properties kept from
	// systemd's signals, memory and CPU from the cgroups. The first scrape
	// at each size, which reads every unit once, is not counted.
	b.sh(fmt.Sprintf(`systemd-run --unit=bench-serve -- %s serve --listen 127.0.0.1:9099 --public-reads >/dev/null
		for i in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:9099/metrics && exit 0; sleep 0.1; done; exit 1`, km))
	rows := b.listRows(n, fmt.Sprintf("%d instances", n), runs)
	if total > n {
		// The rest in batches of 200 (apply keeps what a file does not
		// name), each batch stopped once it answered. The test double
		// ignores SIGTERM, so its stop ends in failed (killed at the stop
		// timeout): reset-failed leaves the units stopped, as a processor
		// that exits on SIGTERM does.
		for from := n; from < total; from += 200 {
			k := min(200, total-from)
			prefix := fmt.Sprintf("i%d", from/200)
			file, _ := b.fleetFileAt("idle.yaml", prefix, k, 10000+from, "")
			b.sh(fmt.Sprintf("%s apply -f %s >/root/apply.log 2>&1 || { tail -20 /root/apply.log >&2; exit 1; }\nsystemctl stop '%[3]s'\nsystemctl reset-failed '%[3]s'",
				km, file, units.InstanceUnit(prefix+"*")))
		}
		b.settle()
		b.sh(`curl -sf -o /dev/null http://127.0.0.1:9099/metrics`)
		rows = append(rows, b.listRows(total, fmt.Sprintf("%d instances (%d running)", total, n), runs)...)
	}
	b.sh("systemctl stop bench-serve")
	b.sh(km + " stop --all --no-mongo >/dev/null")
	return rows
}

// listRows measures list, status and a scrape of the instances there are.
func (b *bench) listRows(n int, label string, runs int) []row {
	km := testbed.KatoManager
	var ours, status, scrapes, perUnit, oneShow []time.Duration
	for r := 0; r < runs; r++ {
		b.settle()
		ours = append(ours, b.sh(km+" list >/dev/null"))
		// status exits 1 while some instance does not run.
		status = append(status, b.sh(km+" status >/dev/null || [ $? -eq 1 ]"))
		scrapes = append(scrapes, b.sh(`curl -sf -o /dev/null http://127.0.0.1:9099/metrics`))
		if n <= 200 {
			perUnit = append(perUnit, b.sh(`for u in $(systemctl list-units --all --plain --no-legend 'kato@*.service' | cut -d' ' -f1); do
			systemctl show -p Id -p ActiveState -p SubState -p MainPID -p MemoryCurrent -p ActiveEnterTimestamp "$u" >/dev/null; done`))
		}
		oneShow = append(oneShow, b.sh(`systemctl show -p Id -p ActiveState -p SubState -p MainPID -p MemoryCurrent -p ActiveEnterTimestamp 'kato@*.service' >/dev/null`))
	}
	if b.listProfiles != "" {
		b.profileListing(n, runs)
	}
	var rows []row
	if len(perUnit) > 0 {
		rows = append(rows, timeRow("list "+label, "kato-manager list", "systemctl show per unit", median(ours), median(perUnit)))
	}
	return append(rows,
		timeRow("list "+label, "kato-manager list", "one systemctl show of all units", median(ours), median(oneShow)),
		timeRow("status "+label, "kato-manager status", "one systemctl show of all units", median(status), median(oneShow)),
		timeRow("scrape /metrics, "+label, "curl of serve's /metrics", "one systemctl show of all units", median(scrapes), median(oneShow)),
	)
}

// profileListing writes CPU profiles of list, status and serve's /metrics
// with n instances into b.listProfiles, in runs of their own: runs of list
// and of status (one profile each, to merge with `go tool pprof`), and one
// profile of a serve of its own that answers 10×runs scrapes after a first
// one, which reads every unit, so that the steady scrapes dominate it.
func (b *bench) profileListing(n, runs int) {
	km := testbed.KatoManager
	dir := fmt.Sprintf("/root/prof-%d", n)
	b.sh("mkdir -p " + dir)
	for r := 0; r < runs; r++ {
		b.settle()
		b.sh(fmt.Sprintf("KATO_MANAGER_CPUPROFILE=%s/list-%d.pprof %s list >/dev/null", dir, r, km))
		b.sh(fmt.Sprintf("KATO_MANAGER_CPUPROFILE=%s/status-%d.pprof %s status >/dev/null || [ $? -eq 1 ]", dir, r, km))
	}
	b.sh(fmt.Sprintf(`systemd-run --unit=bench-serve-prof -E KATO_MANAGER_CPUPROFILE=%s/scrape.pprof -- %s serve --listen 127.0.0.1:9098 --public-reads >/dev/null
		for i in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:9098/metrics && break; sleep 0.1; done
		for i in $(seq %d); do curl -sf -o /dev/null http://127.0.0.1:9098/metrics; done
		systemctl stop bench-serve-prof`, dir, km, 10*runs))
	out := filepath.Join(b.listProfiles, strconv.Itoa(n))
	if err := os.MkdirAll(out, 0o755); err != nil {
		fail(err)
	}
	files, err := filepath.Glob(filepath.Join(b.m.Root(), dir, "*.pprof"))
	if err != nil || len(files) == 0 {
		fail(fmt.Errorf("no CPU profiles in the machine's %s: %v", dir, err))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(out, filepath.Base(f)), data, 0o644)
		}
		if err != nil {
			fail(err)
		}
	}
	b.notes = append(b.notes, fmt.Sprintf("CPU profiles of list, status and serve's /metrics with %d instances: %s", n, out))
}

// fleetFile writes a fleet file of n instances with the ids prefix000…,
// on ports from 8600 (processor "" is kato.toml's [processor]), and returns
// its path and the instances' health URLs.
func (b *bench) fleetFile(name, prefix string, n int, processor string) (string, []string) {
	return b.fleetFileAt(name, prefix, n, 8600, processor)
}

// fleetFileAt is fleetFile with the ports from base.
func (b *bench) fleetFileAt(name, prefix string, n, base int, processor string) (string, []string) {
	var f strings.Builder
	var urls []string
	f.WriteString("instances:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&f, "  - id: %s%03d\n    port: %d\n    max_predictions: %d\n", prefix, i, base+i, 10+i)
		if processor != "" {
			fmt.Fprintf(&f, "    processor: %s\n", processor)
		}
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/health", base+i))
	}
	path := "/root/" + name
	if err := b.m.WriteFile(path, []byte(f.String()), 0o644); err != nil {
		fail(err)
	}
	return path, urls
}

// fleet measures apply: a file of n instances (each of sizes) applied from nothing until
// every processor answers its health request, against a shell loop of
// systemctl start over the same units (rendered by an apply, then stopped)
// followed by a curl poll of each health request every 20ms; once with
// processors that listen at once (the test double), once with processors
// that take a second to listen, as a real one takes to import its code,
// at the default --parallel and (the first size) at --parallel 8; fleetRuns times each,
// the median reported. The same units
// started by one systemctl start, which queues every job in one request,
// show the least time systemd itself needs for them. Then a no-change
// apply of a file of listed instances, against the goal of 200ms.
func (b *bench) fleet(sizes []int, listed, runs, fleetRuns int) []row {
	km := testbed.KatoManager
	conf := testbed.Config + "\n[processors.slow]\ncommand = [\"/opt/kato-test/fakeprocessor\", \"--delay\", \"1s\"]\ngeneration = \"b\"\n"
	if err := b.m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		fail(err)
	}
	var rows []row
	type fleetCase struct {
		n                       int
		processor, label, flags string
	}
	var cases []fleetCase
	for i, n := range sizes {
		cases = append(cases, fleetCase{n, "", "processors listen at once", ""}, fleetCase{n, "slow", "processors listen after 1s", ""})
		if i == 0 {
			// Waves of 8, for the first size only.
			cases = append(cases, fleetCase{n, "slow", "processors listen after 1s", "--parallel 8"})
		}
	}
	for _, c := range cases {
		n := c.n
		file, urls := b.fleetFile("fleet.yaml", "f", n, c.processor)
		var unitNames []string
		for _, id := range strings.Fields(ids("f", n)) {
			unitNames = append(unitNames, units.InstanceUnit(id))
		}
		poll := fmt.Sprintf(`for u in %s; do until curl -sf -o /dev/null --max-time 2 $u; do sleep 0.02; done; done`, strings.Join(urls, " "))
		var ours, loop, oneStart, before, firstReady []time.Duration
		var loopBusy []float64
		for r := 0; r < fleetRuns; r++ {
			// The baseline waits as long as its processors take: apply's
			// readiness wait is bounded by 2 minutes, not the test
			// processors' ready_timeout of 20s, which a busy machine
			// starting 200 at once can pass.
			ours = append(ours, b.sh(fmt.Sprintf("date +%%H:%%M:%%S.%%N >/root/apply.begin; %s apply --timeout 2m %s -f %s >/root/apply.log 2>&1 || { tail -20 /root/apply.log >&2; exit 1; }", km, c.flags, file)))
			bf, fr := b.applySplit()
			before, firstReady = append(before, bf), append(firstReady, fr)
			// The baseline's units are the ones apply rendered, stopped.
			if b.fleetLoop {
				b.sh("systemctl stop 'kato@f*.service'")
				loopBusy = append(loopBusy, busyShare(func() {
					loop = append(loop, b.sh(fmt.Sprintf("for u in %s; do systemctl start $u; done\n%s", strings.Join(unitNames, " "), poll)))
				}))
			}
			// What systemd does at best: every start job in one request.
			b.sh("systemctl stop 'kato@f*.service'")
			oneStart = append(oneStart, b.sh(fmt.Sprintf("systemctl start %s\n%s", strings.Join(unitNames, " "), poll)))
			b.sh(km + " stop --all --no-mongo >/dev/null")
		}
		name := "kato-manager apply"
		if c.flags != "" {
			name += " " + c.flags
		} else {
			name += " (default --parallel: all at once)"
		}
		what := fmt.Sprintf("apply a %d-instance file until all answer, %s", n, c.label)
		b.notes = append(b.notes, fmt.Sprintf("%s, %s: %s from the command's start to its first start job (plan, registry, rendering, enabling, reloads), %s to its first instance ready (median of %d runs)",
			what, name, round(median(before)), round(median(firstReady)), len(before)))
		if b.fleetLoop {
			rows = append(rows, timeRow(what, name, "systemctl start loop + curl poll loop", median(ours), median(loop)))
		}
		if c.flags == "" {
			if b.fleetLoop {
				sort.Float64s(loopBusy)
				b.notes = append(b.notes, fmt.Sprintf("%s: the CPUs were %.0f%% busy during the systemctl start loop (median of %d runs, %d CPUs): "+
					"the loop's units already start side by side, so another order of their jobs finds little idle time to use",
					what, 100*loopBusy[len(loopBusy)/2], len(loopBusy), runtime.NumCPU()))
				rows = append(rows, timeRow(what, "one systemctl start of all units + curl poll loop", "systemctl start loop + curl poll loop", median(oneStart), median(loop)))
			}
			b.notes = append(b.notes, fmt.Sprintf("%s: apply's time over one systemctl start's, run by run (the two taking turns): %s", what, ratioSpread(ours, oneStart)))
			rows = append(rows, timeRow(what, name, "one systemctl start of all units + curl poll loop", median(ours), median(oneStart)))
		}
	}
	// A no-change apply: everything is as the file says.
	file, _ := b.fleetFile("listed.yaml", "a", listed, "")
	// Bounded as the measured applies are: the set-up of 200 on a busy
	// machine can pass the test processors' ready_timeout.
	b.sh(fmt.Sprintf("%s apply --timeout 2m -f %s >/root/apply.log 2>&1 || { tail -20 /root/apply.log >&2; exit 1; }", km, file))
	var again []time.Duration
	for r := 0; r < runs; r++ {
		again = append(again, b.sh(fmt.Sprintf("%s apply -f %s | grep -q 'nothing to do'", km, file)))
	}
	b.sh(km + " stop --all --no-mongo >/dev/null")
	if err := b.m.WriteFile("/etc/kato/kato.toml", []byte(testbed.Config), 0o644); err != nil {
		fail(err)
	}
	return append(rows, timeRow(fmt.Sprintf("no-change apply of %d instances", listed), "kato-manager apply (nothing to do)",
		"the goal: 200ms", median(again), 200*time.Millisecond))
}

// applySplit reads the last apply's progress log: how long after the
// command began (/root/apply.begin) its first start job was queued and its
// first instance was ready.
func (b *bench) applySplit() (beforeFirstStart, firstReady time.Duration) {
	out, _, err := b.m.Run(b.ctx, "/bin/sh", "-c", "cat /root/apply.begin; grep -m1 ' starting ' /root/apply.log | cut -d' ' -f1; grep -m1 ' ready ' /root/apply.log | cut -d' ' -f1")
	if err != nil {
		fail(err)
	}
	f := strings.Fields(out)
	if len(f) != 3 {
		fail(fmt.Errorf("apply's progress log: want its begin, first start and first ready, got %q", out))
	}
	var t [3]time.Time
	for i, v := range f {
		if t[i], err = time.Parse("15:04:05.999999999", v); err != nil {
			fail(fmt.Errorf("apply's progress log: %w", err))
		}
	}
	return t[1].Sub(t[0]), t[2].Sub(t[0])
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// print writes the table: the "times better" column is how many times
// better kato-manager did, computed as the "ratio" column says (elapsed
// times and latencies: baseline/kato-manager; throughput:
// kato-manager/baseline).
func print(rows []row, notes []string) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tkato-manager\tbaseline\tkato-manager result\tbaseline result\ttimes better (kato-manager)\tratio")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2fx\t%s\n", r.what, r.oursName, r.base, r.ours, r.baseline, r.ratio, r.ratioIs)
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Println("note:", n)
	}
}

func round(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}
