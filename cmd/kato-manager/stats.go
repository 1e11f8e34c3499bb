package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/supervisor"
)

// poolStats gathers the pool's health, the workers' reports and the queue
// counts, read from q, into the seed's aggregate statistics.
func (a *app) poolStats(ctx context.Context, p *supervisor.Pool, q *kgworker.Queue, cfg *config.Config) (*supervisor.PoolStats, error) {
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
	return supervisor.AggregateStats(h, reports, counts, cfg.KG.ServiceEnabled, time.Now().UTC()), nil
}

func (a *app) workersStats(ctx context.Context, args []string) error {
	fs := a.newFlags("workers stats", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args, "workers stats takes no arguments"); err != nil {
		return err
	}
	p, _, done, err := a.pool(ctx)
	if err != nil {
		return err
	}
	defer done()
	q, cfg, err := a.openQueueReadOnly(ctx)
	if err != nil {
		return err
	}
	defer q.Close()
	s, err := a.poolStats(ctx, p, q, cfg)
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
	qs := s.QueueSize
	fmt.Fprintf(a.stdout, "queue: total %d: pending %d, processing %d, completed %d, failed %d, skipped %d\n", qs.Total, qs.Pending, qs.Processing, qs.Completed, qs.Failed, qs.Skipped)
	for _, w := range s.WorkerDetails {
		fmt.Fprintf(a.stdout, "  worker %d: running %v, pid %d, processed %d (success %d, failed %d)\n", w.WorkerID, w.Running, w.PID, w.Stats.TotalProcessed, w.Stats.TotalSuccess, w.Stats.TotalFailed)
	}
	return nil
}

// serve answers GET /health (503 when a worker is unhealthy) and GET
// /stats with the same JSON as `workers health --json` and `workers stats
// --json`, for monitoring tools.
func (a *app) serve(ctx context.Context, args []string) error {
	fs := a.newFlags("serve", "[--listen ADDR]")
	listen := fs.String("listen", "127.0.0.1:9090", "address to listen on")
	if err := parseNoArgs(fs, args, "serve takes no arguments; use --listen ADDR"); err != nil {
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
	// One read-only handle for the server's life, not one per request.
	q, cfg, err := a.openQueueReadOnly(ctx)
	if err != nil {
		return err
	}
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
		s, err := a.poolStats(r.Context(), p, q, cfg)
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
