package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgpool"
	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/textview"
)

// pool loads the configuration and connects to systemd for the worker
// commands.
func (a *app) pool(ctx context.Context) (*supervisor.Pool, *config.Config, func(), error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	sd, err := a.connect(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := (&supervisor.Manager{Systemd: sd, Config: cfg, Paths: a.paths}).OpenPool(ctx)
	if err != nil {
		sd.Close()
		return nil, nil, nil, err
	}
	return p, cfg, sd.Close, nil
}

// withPool runs do with the pool and configuration of a.pool, closed
// after.
func (a *app) withPool(ctx context.Context, do func(*supervisor.Pool, *config.Config) error) error {
	p, cfg, done, err := a.pool(ctx)
	if err != nil {
		return err
	}
	defer done()
	return do(p, cfg)
}

// workersStartFlagValues are workers start's flags.
type workersStartFlagValues struct {
	n    *int
	poll *float64
}

func workersStartFlags(fs *pflag.FlagSet) *workersStartFlagValues {
	return &workersStartFlagValues{
		n:    fs.IntP("workers", "n", 0, "how many workers (default: kg.num_workers, env KG_NUM_WORKERS)"),
		poll: fs.Float64("poll-interval", 0, "seconds an idle worker waits before looking at the queue again (default: kg.poll_interval)"),
	}
}

func (a *app) workersStart(ctx context.Context, fs *pflag.FlagSet, f *workersStartFlagValues) error {
	if fs.Changed("poll-interval") {
		// The rule of kg.poll_interval, before anything is written.
		if err := config.CheckKG("poll_interval", "poll_interval", &config.KG{PollInterval: *f.poll}); err != nil {
			return err
		}
	}
	if fs.Changed("workers") {
		if err := supervisor.ValidateWorkerCount(*f.n); err != nil {
			return err
		}
	}
	return a.withPool(ctx, func(p *supervisor.Pool, cfg *config.Config) error {
		count := *f.n
		if !fs.Changed("workers") {
			count = cfg.KG.NumWorkers
		}
		started, err := p.Start(ctx, count, supervisor.PoolSettings{PollInterval: *f.poll})
		for _, u := range started {
			fmt.Fprintf(a.stdout, "started %s\n", u)
		}
		if err == nil {
			fmt.Fprintf(a.stdout, "%d KG worker(s) running\n", len(started))
		}
		return err
	})
}

// workersStopRestart is workers stop or workers restart, by sub.
func (a *app) workersStopRestart(sub string) func(context.Context, *pflag.FlagSet, struct{}) error {
	return func(ctx context.Context, _ *pflag.FlagSet, _ struct{}) error {
		return a.withPool(ctx, func(p *supervisor.Pool, _ *config.Config) error {
			do := p.Restart
			if sub == "stop" {
				do = p.Stop
			}
			changed, err := do(ctx)
			verb := map[string]string{"stop": "stopped", "restart": "restarted"}[sub]
			for _, u := range changed {
				fmt.Fprintf(a.stdout, "%s %s\n", verb, u)
			}
			if err == nil && len(changed) == 0 {
				fmt.Fprintln(a.stdout, "no workers were running")
			}
			return err
		})
	}
}

func (a *app) workersScale(ctx context.Context, fs *pflag.FlagSet, _ struct{}) error {
	if fs.NArg() != 1 {
		return usagef("workers scale takes one number, the workers wanted")
	}
	// Checked before systemd is asked anything.
	n, err := strconv.Atoi(fs.Arg(0))
	if err != nil || supervisor.ValidateWorkerCount(n) != nil {
		return &config.FieldError{Field: "N", Value: fs.Arg(0), Rule: fmt.Sprintf("must be a whole number between 1 and %d", config.MaxWorkers)}
	}
	return a.withPool(ctx, func(p *supervisor.Pool, _ *config.Config) error {
		started, stopped, err := p.Scale(ctx, n)
		fmt.Fprintf(a.stdout, "%d worker(s) running; stopped %d\n", len(started), len(stopped))
		return err
	})
}

// workersHealthFlagValues are workers health's flags.
type workersHealthFlagValues struct {
	asJSON, restart *bool
}

func workersHealthFlags(fs *pflag.FlagSet) *workersHealthFlagValues {
	return &workersHealthFlagValues{
		asJSON:  fs.Bool("json", false, "print JSON"),
		restart: fs.Bool("restart-unhealthy", false, "restart the workers found unhealthy"),
	}
}

func (a *app) workersHealth(ctx context.Context, fs *pflag.FlagSet, f *workersHealthFlagValues) error {
	return a.withPool(ctx, func(p *supervisor.Pool, cfg *config.Config) error {
		c, err := kgpool.Check(ctx, p, a.workerReports, *f.restart)
		if c != nil && c.ReportsErr != nil {
			what := "the workers' counters"
			if cfg.KG.DBURL != "" {
				what = "the workers' counters and other hosts' workers"
			}
			fmt.Fprintf(a.stderr, "kato-manager: %s not shown: %v\n", what, c.ReportsErr)
		}
		if err != nil {
			return err
		}
		report, restarted := c.Report, c.Restarted
		if *f.asJSON {
			if err := writeJSON(a.stdout, report); err != nil {
				return err
			}
		} else {
			textview.Health(a.stdout, report)
		}
		for _, u := range restarted {
			fmt.Fprintf(a.stderr, "restarted %s\n", u)
		}
		if c.Unhealthy > 0 && len(restarted) == 0 {
			return errUnhealthy
		}
		if report.Status == kgpool.StatusDegraded {
			return exitCodeError{code: exitDegraded}
		}
		return nil
	})
}

// exitDegraded is workers health's exit status when every worker is
// healthy but the KG service is not: the workers wait, and nothing is
// processed.
const exitDegraded = 3

// workerReports reads every worker's report from the queue database.
func (a *app) workerReports(ctx context.Context) ([]kgdb.Report, error) {
	q, err := a.openQueue(ctx, true)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	return q.Reports(ctx)
}
