// Command kg-worker is one worker of the KG pool, run by systemd as
// kg-worker@N.service with N passed as --worker-id. It reads the [kg]
// settings from the kato-manager configuration, overridden by the
// environment, and works the KG processing queue until SIGTERM.
//
// It speaks the systemd notify protocol: READY=1 once the queue database is
// open and migrated, WATCHDOG=1 from the worker loop itself, STATUS= with its
// counters and STOPPING=1 when asked to stop.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes: 0 after a clean stop, 1 when the worker failed, 2 for a bad
// invocation.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const (
	// shutdownGrace is how long the item in hand may take to finish after
	// SIGTERM; the unit's TimeoutStopSec leaves room for the write-back
	// after it.
	shutdownGrace = 30 * time.Second
	// progressWithoutWatchdog is how often the loop reports when systemd
	// does not watch it.
	progressWithoutWatchdog = 10 * time.Second
	// statusEvery limits how often STATUS= reads the queue counts.
	statusEvery = 2 * time.Second
	// reportEvery is how often the loop's progress refreshes the worker's
	// report, its counters unchanged: the report's age says whether the
	// loop still runs.
	reportEvery = time.Second
	// reportLag is the longest a change of the counters or of the KG
	// service's state waits before it reaches the report, so that
	// `kato-manager workers stats` agrees with the queue when asked.
	reportLag = 250 * time.Millisecond
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	logger := log.New(stderr, "", 0)
	flags := pflag.NewFlagSet("kg-worker", pflag.ContinueOnError)
	flags.SetOutput(stderr)
	workerID := flags.Int("worker-id", 0, "number of this worker, the N of kg-worker@N.service (required)")
	configPath := flags.String("config", config.DefaultConfigPath, "configuration file (env KATO_CONFIG; with --user, ~/.config/kato/kato.toml)")
	user := flags.Bool("user", false, "a worker of a user manager (kato-manager --user): the user's configuration and queue")
	showVersion := flags.Bool("version", false, "print the version and exit")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		logger.Printf("%v", err)
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintln(stderr, "kg-worker", version)
		return exitOK
	}
	switch {
	case flags.NArg() > 0:
		logger.Printf("unexpected argument %q; kg-worker takes only flags", flags.Arg(0))
		return exitUsage
	case !flags.Changed("worker-id"):
		logger.Printf("missing --worker-id: give the worker number, as kg-worker@N.service does with --worker-id %%i")
		return exitUsage
	case *workerID < 0:
		logger.Printf("invalid --worker-id %d: must be zero or more", *workerID)
		return exitUsage
	}
	paths, err := config.ResolvePaths(*user, os.Getenv)
	if err != nil {
		logger.Printf("%v", err)
		return exitUsage
	}
	if !flags.Changed("config") {
		*configPath = paths.ConfigFile(os.Getenv)
	}
	if err := work(ctx, *workerID, paths, *configPath, logger); err != nil {
		logger.Printf("%v", err)
		return exitFailed
	}
	return exitOK
}

// work wires the configuration, the queue, the service client and the
// systemd notifications together and runs the worker until ctx ends.
func work(ctx context.Context, id int, paths config.Paths, configPath string, logger *log.Logger) error {
	cfg, err := paths.Load(configPath)
	if err != nil {
		return err
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return fmt.Errorf("environment: %w", err)
	}
	kg := cfg.KG

	queue, err := kgdb.Open(ctx, kg.Database(), kgdb.WithMaxRetries(kg.MaxRetries), kgdb.WithMakeDir(paths.MakeStateDir))
	if err != nil {
		return err
	}
	defer queue.Close()
	plan, err := planMemory(cfg.Limits.WorkerMemoryBytes(), kg.Concurrency)
	if err != nil {
		return err
	}
	client, err := kgworker.NewClient(kgworker.ClientOpts{
		URL:              kg.ServiceURL,
		Enabled:          kg.ServiceEnabled,
		Timeout:          config.Seconds(kg.ServiceTimeout),
		MaxConns:         kg.Concurrency,
		MaxResponseBytes: plan.MaxAnswerBytes,
	})
	if err != nil {
		return err
	}

	watchdog, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("read watchdog settings: %w", err)
	}
	progressEvery := progressWithoutWatchdog
	if watchdog > 0 {
		progressEvery = watchdog / 2
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("read the hostname: %w", err)
	}
	// Workers of many hosts share a PostgreSQL queue: the host makes the
	// lease owner unique among them, whatever their worker numbers and PIDs.
	owner := fmt.Sprintf("kg-worker@%d/%d@%s", id, os.Getpid(), host)
	n := &notifier{queue: queue, watchdog: watchdog > 0, logger: logger,
		report: kgdb.Report{Host: host, WorkerID: id, Owner: owner, PID: os.Getpid(), StartedAt: time.Now()}, client: client}
	worker, err := kgworker.New(kgworker.Opts{
		Queue:            queue,
		Client:           client,
		Owner:            owner,
		BatchSize:        kg.BatchSize,
		Concurrency:      kg.Concurrency,
		PollInterval:     config.Seconds(kg.PollInterval),
		Lease:            config.Seconds(kg.LeaseSeconds),
		ShutdownGrace:    shutdownGrace,
		ProgressInterval: progressEvery,
		OnProgress:       n.progress,
		Logf:             logger.Printf,
	})
	if err != nil {
		return err
	}

	n.notify(daemon.SdNotifyReady)
	n.status(kgdb.WorkerStats{})
	n.publish(kgdb.WorkerStats{})
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); n.watch(watchCtx, reportLag, worker.Stats) }()
	defer func() { stopWatch(); <-watched }()
	service := "disabled"
	if kg.ServiceEnabled {
		service = config.RedactURL(kg.ServiceURL)
	}
	logger.Printf("worker %d ready: queue %s, kg service %s, batch %d, concurrency %d, %s", id, kg.DatabaseForDisplay(), service, kg.BatchSize, kg.Concurrency, describePlan(plan))
	// Tell systemd as soon as the signal arrives, not once the worker
	// has wound down.
	ran := make(chan struct{})
	toldStopping := make(chan struct{})
	go func() {
		defer close(toldStopping)
		select {
		case <-ctx.Done():
			n.notify(daemon.SdNotifyStopping)
			logger.Printf("stopping: handing back unfinished items")
		case <-ran:
		}
	}()
	err = worker.Run(ctx)
	close(ran)
	<-toldStopping
	if err != nil {
		// Say why in systemctl status before exiting; the failure makes
		// systemd restart the worker and count it.
		n.notify("STATUS=failing: " + err.Error())
		return err
	}
	st := worker.Stats()
	n.publish(st)
	logger.Printf("stopped: processed %d ok %d failed %d skipped %d",
		st.TotalProcessed, st.TotalSuccess, st.TotalFailed, st.TotalSkipped)
	return nil
}

// notifier turns the worker loop's progress calls into systemd
// notifications.
type notifier struct {
	queue      *kgdb.DB
	watchdog   bool
	logger     *log.Logger
	lastStatus time.Time
	// report is this worker's entry in the queue's kg_worker_reports
	// table, for `kato-manager workers stats`.
	report kgdb.Report
	client *kgworker.Client

	// reportMu orders the report's writes: the loop's and the watcher's.
	reportMu   sync.Mutex
	lastReport time.Time
	published  kgdb.Report

	mu     sync.Mutex // notify runs on the loop and on the signal path
	warned bool
}

// progress runs on the worker loop: the watchdog ping proves the loop
// itself is alive.
func (n *notifier) progress(st kgdb.WorkerStats) {
	if n.watchdog {
		n.notify(daemon.SdNotifyWatchdog)
	}
	if time.Since(n.lastStatus) >= statusEvery {
		n.status(st)
	}
	n.reportMu.Lock()
	due := time.Since(n.lastReport) >= reportEvery
	n.reportMu.Unlock()
	if due {
		n.publish(st)
	}
}

// watch publishes the report, every lag, when the counters or the KG
// service's state changed since it was last written, until ctx ends.
// The loop's progress calls are throttled and, on an idle worker, far
// apart: without this, the last items of a burst reached the report only
// at the next one, and `workers stats` lagged the queue.
func (n *notifier) watch(ctx context.Context, lag time.Duration, stats func() kgdb.WorkerStats) {
	t := time.NewTicker(lag)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := stats()
		n.reportMu.Lock()
		changed := st != n.published.Stats || n.client.Status() != n.published.Service
		n.reportMu.Unlock()
		if changed {
			n.publish(st)
		}
	}
}

// publish writes the worker's counters to the queue database. A failure is
// logged, never fatal: the queue work matters more.
func (n *notifier) publish(st kgdb.WorkerStats) {
	n.reportMu.Lock()
	defer n.reportMu.Unlock()
	n.lastReport = time.Now()
	r := n.report
	r.UpdatedAt, r.Stats, r.Service = n.lastReport, st, n.client.Status()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.queue.PublishReport(ctx, r); err != nil {
		n.logger.Printf("%v", err)
		return
	}
	n.published = r
}

func (n *notifier) status(st kgdb.WorkerStats) {
	n.lastStatus = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	pending := "?"
	if counts, err := n.queue.Stats(ctx); err == nil {
		pending = fmt.Sprint(counts.Pending)
	}
	n.notify(fmt.Sprintf("STATUS=processed %d ok %d failed %d queue pending %s",
		st.TotalProcessed, st.TotalSuccess, st.TotalFailed, pending))
}

func (n *notifier) notify(state string) {
	_, err := daemon.SdNotify(false, state)
	if err == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.warned {
		n.logger.Printf("notify systemd: %v", err)
		n.warned = true
	}
}

// planMemory fits the worker to its memory limit: the unit's MemoryMax=,
// which kato-manager sets from limits.worker_memory_max, or the cgroup's
// memory.max when a drop-in of the operator's set a lower one. The Go
// runtime gets the plan's soft limit, unless GOMEMLIMIT sets one, and KG
// answers are bounded so that concurrency of them fit.
func planMemory(configured int64, concurrency int) (kgworker.MemoryPlan, error) {
	limit, err := kgworker.CgroupMemoryMax()
	if err != nil {
		return kgworker.MemoryPlan{}, err
	}
	if limit == 0 || (configured > 0 && configured < limit) {
		limit = configured
	}
	plan, err := kgworker.PlanMemory(limit, concurrency)
	if err != nil {
		return plan, err
	}
	if os.Getenv("GOMEMLIMIT") == "" && plan.SoftLimit > 0 {
		debug.SetMemoryLimit(plan.SoftLimit)
	}
	return plan, nil
}

// describePlan renders a memory plan for the ready line.
func describePlan(p kgworker.MemoryPlan) string {
	if p.Max == 0 {
		return "no memory limit, KG answers up to " + kgworker.FormatBytes(p.MaxAnswerBytes)
	}
	soft := debug.SetMemoryLimit(-1)
	return fmt.Sprintf("memory limit %s (Go soft limit %s), KG answers up to %s",
		kgworker.FormatBytes(p.Max), kgworker.FormatBytes(soft), kgworker.FormatBytes(p.MaxAnswerBytes))
}
