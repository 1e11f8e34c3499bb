// Package web is what `kato-manager serve` serves: the dashboard and its
// actions, its sessions and tokens, /metrics for Prometheus, and /health
// and /stats as JSON, over HTTP or TLS, behind a Host check and a bound on
// the requests answered at once.
package web

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/graceful"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/supervisor"
)

// Queue is the KG queue database as the server reads and changes it.
type Queue = kgdb.Store

// Options are the settings of a Server, as `serve` documents its flags.
// Listen, SampleInterval and MaxRequests must be given; the zero value of
// the others is: no token (actions disabled), reads behind the token, plain
// HTTP, a snapshot per reader.
type Options struct {
	// Manager runs the instance actions and samples the fleet; Pool is the
	// KG worker pool (scale, /health, /stats).
	Manager *supervisor.Manager
	Pool    *supervisor.Pool
	// Queue is read by pages, scrapes and /stats; ActionQueue is changed
	// by the actions.
	Queue, ActionQueue Queue
	// Token is the bearer token of reads and actions; "" disables actions.
	// TokenFile is where it was read from, for messages.
	Token, TokenFile string
	// PublicReads serves reads without the token.
	PublicReads bool
	// Listen is the address served, the first name of the server; AllowHosts
	// are its other names (--allow-host).
	Listen     string
	AllowHosts []string
	// Certificate, when set, serves HTTPS with it.
	Certificate *tls.Certificate
	// SnapshotAge is how long one reading of systemd and the queue is
	// served (0 to 1m); SampleInterval how often the queue is sampled
	// for the plots (1s to 10m).
	SnapshotAge    time.Duration
	SampleInterval time.Duration
	// MaxRequests bounds the requests answered at once (1 to 100000).
	MaxRequests int
	// MetricsLog is where /metrics reports what it could not encode.
	MetricsLog promhttp.Logger
}

// Check refuses settings that are wrong by themselves, naming the flag of
// serve that gives them.
func (o Options) Check() error {
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return &config.FieldError{Field: "--listen", Value: o.Listen, Rule: "must be HOST:PORT"}
	}
	if _, err := newHostPolicy(o.Listen, o.AllowHosts); err != nil {
		return err
	}
	if d := o.SampleInterval; d < time.Second || d > 10*time.Minute {
		return &config.FieldError{Field: "sample_interval", Value: d.String(), Rule: "must be between 1s and 10m"}
	}
	if d := o.SnapshotAge; d < 0 || d > time.Minute {
		return &config.FieldError{Field: "--snapshot-age", Value: d.String(), Rule: "must be between 0s and 1m"}
	}
	if n := o.MaxRequests; n < 1 || n > 100000 {
		return &config.FieldError{Field: "--max-requests", Value: fmt.Sprint(n), Rule: "must be between 1 and 100000"}
	}
	// Off loopback, whoever reaches the address must not read or act
	// without the token, nor see it in plain text.
	loopback := IsLoopback(o.Listen)
	if !loopback && o.Token == "" {
		return &config.FieldError{Field: "listen", Value: o.Listen, Rule: "is not a loopback address: it needs a token file (--token-file, " + DefaultTokenFile + ")"}
	}
	if !loopback && o.Certificate == nil {
		return &config.FieldError{Field: "listen", Value: o.Listen, Rule: "is not a loopback address: plain HTTP is refused there; give --tls-cert and --tls-key, or the systemd credentials tls-cert and tls-key (LoadCredential=)"}
	}
	if o.Token == "" && !o.PublicReads {
		return fmt.Errorf("serve has no token file %s: reads and actions need its token; write one (`openssl rand -hex 32 > %s`, chmod 600) or give --public-reads to serve reads to anyone who reaches %s", o.TokenFile, o.TokenFile, o.Listen)
	}
	return nil
}

// Access says who may read and act, and where the TLS certificate comes
// from (certSource), as serve reports it when it starts.
func (o Options) Access(certSource string) string {
	access := "reads and actions need the token of " + o.TokenFile
	switch {
	case o.Token == "":
		access = "reads are public, actions disabled (no token file " + o.TokenFile + ")"
	case o.PublicReads:
		access = "reads are public, actions need the token of " + o.TokenFile
	}
	if o.Certificate != nil {
		access += "; TLS certificate from " + certSource
	}
	return access
}

// Server is serve's HTTP server.
type Server struct {
	dash    *dashboard
	handler http.Handler
	cert    *tls.Certificate
	queue   Queue
}

// NewServer makes the server of o; Serve starts it.
func NewServer(o Options) (*Server, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	d, err := newDashboard(o.Manager, o.Pool, o.Queue, o.ActionQueue, dashboardOptions{token: o.Token, publicReads: o.PublicReads,
		listen: o.Listen, allowHosts: o.AllowHosts, tls: o.Certificate != nil, snapshotAge: o.SnapshotAge})
	if err != nil {
		return nil, err
	}
	d.samples = newSampler(time.Hour, o.SampleInterval)
	d.metricsLog = o.MetricsLog
	mux := http.NewServeMux()
	p, q := o.Pool, o.Queue
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if !d.authorizeRead(w, r) {
			return
		}
		h, err := p.Health(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if h.UnhealthyWorkers > 0 || !h.ManagerRunning {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		writeJSON(w, NewHealthReport(h))
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		if !d.authorizeRead(w, r) {
			return
		}
		s, err := PoolStats(r.Context(), p, q)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, s)
	})
	d.routes(mux)
	return &Server{dash: d, handler: limitRequests(o.MaxRequests, d.guard(mux)), cert: o.Certificate, queue: q}, nil
}

// Handler is the server's handler, for a test or another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers on ln, over TLS when the options give a certificate, and
// samples the queue for the plots, until ctx ends; then it shuts down
// gracefully, giving the requests under way five seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go s.dash.samples.run(ctx, s.queue)
	srv := graceful.Server(s.handler)
	if s.cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*s.cert}, MinVersion: tls.VersionTLS12}
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	serveOn := srv.Serve
	if s.cert != nil {
		serveOn = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
	}
	if err := serveOn(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// PoolStats gathers the pool's health, the workers' reports and the queue
// counts into the KG Manager's aggregate statistics: /stats, and `workers
// stats`.
func PoolStats(ctx context.Context, p *supervisor.Pool, q Queue) (*supervisor.PoolStats, error) {
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
	return supervisor.AggregateStats(h, reports, counts, p.Config.KG.ServiceEnabled, time.Now().UTC(), supervisor.Hostname()), nil
}

// The states of the pool in a HealthReport.
const (
	StatusHealthy   = "healthy"
	StatusDegraded  = "degraded"
	StatusUnhealthy = "unhealthy"
)

// HealthReport is `workers health` in the KG Manager's field names, with
// the pool's state and the KG service's beside them: /health, and
// `workers health --json`.
type HealthReport struct {
	// Status is healthy, degraded (the workers are, the KG service is
	// not) or unhealthy (a worker is not, or none runs).
	Status           string                    `json:"status"`
	ManagerRunning   bool                      `json:"manager_running"`
	TotalWorkers     int                       `json:"total_workers"`
	HealthyWorkers   int                       `json:"healthy_workers"`
	UnhealthyWorkers int                       `json:"unhealthy_workers"`
	WorkersRestarted uint32                    `json:"workers_restarted"`
	WorkerDetails    []supervisor.WorkerHealth `json:"worker_details"`
	// KGServiceStatus is what the service's /health answered `workers
	// health`; serve's /health does not ask it.
	KGServiceStatus *supervisor.ServiceHealth `json:"kg_service_status,omitempty"`
}

// NewHealthReport is the report of h.
func NewHealthReport(h *supervisor.PoolHealth) HealthReport {
	status := StatusHealthy
	if h.UnhealthyWorkers > 0 || !h.ManagerRunning {
		status = StatusUnhealthy
	}
	return HealthReport{
		Status: status, ManagerRunning: h.ManagerRunning, TotalWorkers: h.TotalWorkers, HealthyWorkers: h.HealthyWorkers,
		UnhealthyWorkers: h.UnhealthyWorkers, WorkersRestarted: h.WorkersRestarted, WorkerDetails: h.Workers,
	}
}

// writeJSON writes v indented, as the CLI prints it.
func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
