package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/supervisor"
)

// poolStats gathers the pool's health, the workers' reports and the queue
// counts into the seed's aggregate statistics.
func poolStats(ctx context.Context, p *supervisor.Pool, q queueDB) (*supervisor.PoolStats, error) {
	h, err := p.Health(ctx)
	if err != nil {
		return nil, err
	}
	reports, err := q.Reports(ctx)
	if err != nil {
		return nil, err
	}
	counts, err := q.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return supervisor.AggregateStats(h, reports, counts, p.Config.KG.ServiceEnabled, time.Now().UTC()), nil
}

func (a *app) workersStats(ctx context.Context, fs *pflag.FlagSet, asJSON *bool) error {
	if err := noArgs(fs, "workers stats takes no arguments"); err != nil {
		return err
	}
	p, _, done, err := a.pool(ctx)
	if err != nil {
		return err
	}
	defer done()
	q, _, err := a.openQueueReadOnly(ctx)
	if err != nil {
		return err
	}
	defer q.Close()
	s, err := poolStats(ctx, p, q)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.stdout, s)
	}
	fmt.Fprintf(a.stdout, "workers: %d (%d restarts by systemd), running: %v\n", s.TotalWorkers, s.WorkersRestarted, s.ManagerRunning)
	fmt.Fprintf(a.stdout, "processed: %d (success %d, failed %d)\n", s.TotalProcessed, s.TotalSuccess, s.TotalFailed)
	svc := s.KGServiceStatus
	fmt.Fprintf(a.stdout, "kg service: enabled %v, url %s, healthy %v, consecutive failures %d\n", s.KGServiceEnabled, orDash(svc.URL), svc.IsHealthy, svc.ConsecutiveFailures)
	c := s.QueueSize
	fmt.Fprintf(a.stdout, "queue: total %d: pending %d, processing %d, completed %d, failed %d, skipped %d\n", c.Total, c.Pending, c.Processing, c.Completed, c.Failed, c.Skipped)
	for _, w := range s.WorkerDetails {
		fmt.Fprintf(a.stdout, "  worker %d: running %v, pid %d, processed %d (success %d, failed %d)\n", w.WorkerID, w.Running, w.PID, w.Stats.TotalProcessed, w.Stats.TotalSuccess, w.Stats.TotalFailed)
	}
	return nil
}

// serve answers GET /health (503 when a worker is unhealthy) and GET
// /stats with the same JSON as `workers health --json` and `workers stats
// --json`, for monitoring tools.
func serveFlags(fs *pflag.FlagSet) *string {
	return fs.String("listen", "127.0.0.1:9090", "address to listen on")
}

func (a *app) serve(ctx context.Context, fs *pflag.FlagSet, listen *string) error {
	if err := noArgs(fs, "serve takes no arguments; use --listen ADDR"); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return usagef("invalid --listen %q: must be HOST:PORT", *listen)
	}
	p, _, done, err := a.pool(ctx)
	if err != nil {
		return err
	}
	defer done()
	// One read-only database connection for the server's life, opened again should
	// it be lost; as root, one child running as kato does the database
	// work of every request.
	first, cfg, err := a.openQueueReadOnly(ctx)
	if err != nil {
		return err
	}
	q := &reopeningQueue{q: first, open: func() (queueDB, error) { return openQueueDB(ctx, cfg, a.paths, true) }}
	defer q.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		h, err := p.Health(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if h.UnhealthyWorkers > 0 || !h.ManagerRunning {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		writeJSON(w, newHealthReport(h))
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		s, err := poolStats(r.Context(), p, q)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, s)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(a.stdout, "serving /health and /stats on %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
