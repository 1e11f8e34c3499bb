package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/graceful"
	"github.com/kato-manager/kato-manager/supervisor"
)

// poolStats gathers the pool's health, the workers' reports and the queue
// counts into the KG Manager's aggregate statistics.
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
	return supervisor.AggregateStats(h, reports, counts, p.Config.KG.ServiceEnabled, time.Now().UTC(), supervisor.Hostname()), nil
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
	fmt.Fprintf(a.stdout, "processed: %d (success %d, failed %d, skipped %d)\n", s.TotalProcessed, s.TotalSuccess, s.TotalFailed, s.TotalSkipped)
	svc := s.KGServiceStatus
	fmt.Fprintf(a.stdout, "kg service: enabled %v, url %s, healthy %v, consecutive failures %d\n", s.KGServiceEnabled, orDash(svc.URL), svc.IsHealthy, svc.ConsecutiveFailures)
	c := s.QueueSize
	fmt.Fprintf(a.stdout, "queue: total %d: pending %d, processing %d, completed %d, failed %d, skipped %d\n", c.Total, c.Pending, c.Processing, c.Completed, c.Failed, c.Skipped)
	for _, w := range s.WorkerDetails {
		where := "this host"
		if !w.Local {
			where = "host " + w.Host
		}
		fmt.Fprintf(a.stdout, "  worker %d (%s) on %s: running %v, pid %d, processed %d (success %d, failed %d, skipped %d)", w.Index, w.Unit, where, w.Running, w.PID, w.Stats.TotalProcessed, w.Stats.TotalSuccess, w.Stats.TotalFailed, w.Stats.TotalSkipped)
		if w.Problem != "" {
			fmt.Fprintf(a.stdout, ": %s", w.Problem)
		}
		fmt.Fprintln(a.stdout)
	}
	return nil
}

// serve answers GET /health (503 when a worker is unhealthy) and GET
// /stats with the same JSON as `workers health --json` and `workers stats
// --json`, GET /metrics in Prometheus's exposition format, for monitoring
// tools, and the dashboard at /.
type serveOptions struct {
	listen         *string
	tokenFile      *string
	sampleInterval *time.Duration
	snapshotAge    *time.Duration
	maxRequests    *int
	publicReads    *bool
	allowHosts     *[]string
	tlsCert        *string
	tlsKey         *string
}

func serveFlags(fs *pflag.FlagSet) serveOptions {
	return serveOptions{
		listen:         fs.String("listen", "127.0.0.1:9090", "address to listen on; one other than loopback needs the token file and TLS"),
		tokenFile:      fs.String("token-file", defaultTokenFile, "file with the bearer token for reads and actions (root's, mode 0600, at least 32 characters)"),
		sampleInterval: fs.Duration("sample-interval", 15*time.Second, "how often the dashboard samples the queue for its plots (1s to 10m)"),
		snapshotAge:    fs.Duration("snapshot-age", time.Second, "how long one reading of systemd and the queue is served to every scrape and page (0 to 1m)"),
		maxRequests:    fs.Int("max-requests", 256, "requests answered at once; one more is answered 503 with Retry-After (1 to 100000)"),
		publicReads:    fs.Bool("public-reads", false, "serve pages, documents, journal lines, /health, /stats and /metrics to anyone who reaches --listen, without the token"),
		allowHosts:     fs.StringSlice("allow-host", nil, "another name of this server that requests may give as Host (repeatable, or comma-separated)"),
		tlsCert:        fs.String("tls-cert", "", "PEM certificate to serve HTTPS with (default: the credential tls-cert, if any)"),
		tlsKey:         fs.String("tls-key", "", "PEM private key of --tls-cert (default: the credential tls-key, if any)"),
	}
}

func (a *app) serve(ctx context.Context, fs *pflag.FlagSet, o serveOptions) error {
	listen := o.listen
	if err := noArgs(fs, "serve takes no arguments; use --listen ADDR"); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return usagef("invalid --listen %q: must be HOST:PORT", *listen)
	}
	if _, err := newHostPolicy(*listen, *o.allowHosts); err != nil {
		return err
	}
	cert, certSource, err := serveCertificate(*o.tlsCert, *o.tlsKey)
	if err != nil {
		return err
	}
	if d := *o.sampleInterval; d < time.Second || d > 10*time.Minute {
		return &config.FieldError{Field: "sample_interval", Value: d.String(), Rule: "must be between 1s and 10m"}
	}
	if d := *o.snapshotAge; d < 0 || d > time.Minute {
		return &config.FieldError{Field: "--snapshot-age", Value: d.String(), Rule: "must be between 0s and 1m"}
	}
	if n := *o.maxRequests; n < 1 || n > 100000 {
		return &config.FieldError{Field: "--max-requests", Value: strconv.Itoa(n), Rule: "must be between 1 and 100000"}
	}
	tokenFile := *o.tokenFile
	if a.paths.User && !fs.Changed("token-file") {
		// The user's own, beside the user's kato.toml.
		tokenFile = filepath.Join(filepath.Dir(a.paths.Config), "serve.token")
	}
	o.tokenFile = &tokenFile
	token, err := readTokenFile(tokenFile, fs.Changed("token-file"))
	if err != nil {
		return err
	}
	loopback := isLoopback(*listen)
	if !loopback && token == "" {
		return &config.FieldError{Field: "listen", Value: *listen, Rule: "is not a loopback address: it needs a token file (--token-file, " + defaultTokenFile + ")"}
	}
	if !loopback && cert == nil {
		return &config.FieldError{Field: "listen", Value: *listen, Rule: "is not a loopback address: plain HTTP is refused there; give --tls-cert and --tls-key, or the systemd credentials tls-cert and tls-key (LoadCredential=)"}
	}
	if token == "" && !*o.publicReads {
		return fmt.Errorf("serve has no token file %s: reads and actions need its token; write one (`openssl rand -hex 32 > %s`, chmod 600) or give --public-reads to serve reads to anyone who reaches %s", tokenFile, tokenFile, *listen)
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
	q := newReopeningQueue(first, func() (queueDB, error) { return openQueueDB(ctx, cfg, a.paths, true) })
	defer q.Close()
	// Actions write: their child opens the database read-write, on the
	// first action.
	wq := newReopeningQueue(nil, func() (queueDB, error) { return openQueueDB(ctx, cfg, a.paths, false) })
	defer wq.Close()
	m := &supervisor.Manager{Systemd: p.Systemd, Config: p.Config, Registry: a.registry(), Ports: supervisor.HostPorts{},
		Processes: supervisor.HostProcesses{}, Journal: a.journal(), Paths: a.paths, Services: supervisor.NewServiceCache()}
	// The units' restarts, main processes and start times are kept from
	// systemd's signals, so a scrape asks systemd for one listing only.
	go m.Services.Watch(ctx, p.Systemd, 5*time.Second, func(err error) {
		fmt.Fprintf(a.stderr, "%v; every scrape reads each unit from systemd until the watch is back\n", err)
	})
	dash, err := newDashboard(m, p, q, wq, dashboardOptions{token: token, publicReads: *o.publicReads, listen: *listen, allowHosts: *o.allowHosts, tls: cert != nil,
		snapshotAge: *o.snapshotAge})
	if err != nil {
		return err
	}
	dash.samples = newSampler(time.Hour, *o.sampleInterval)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if !dash.authorizeRead(w, r) {
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
		writeJSON(w, newHealthReport(h))
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		if !dash.authorizeRead(w, r) {
			return
		}
		s, err := poolStats(r.Context(), p, q)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, s)
	})
	dash.metricsLog = log.New(a.stderr, "metrics: ", 0)
	dash.routes(mux)
	go dash.samples.run(ctx, q)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv := graceful.Server(limitRequests(*o.maxRequests, dash.guard(mux)))
	access := "reads and actions need the token of " + *o.tokenFile
	switch {
	case token == "":
		access = "reads are public, actions disabled (no token file " + *o.tokenFile + ")"
	case *o.publicReads:
		access = "reads are public, actions need the token of " + *o.tokenFile
	}
	scheme := "http"
	if cert != nil {
		scheme = "https"
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		access += "; TLS certificate from " + certSource
	}
	fmt.Fprintf(a.stdout, "serving the dashboard, /health, /stats and /metrics on %s://%s/; %s\n", scheme, ln.Addr(), access)
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	serveOn := srv.Serve
	if cert != nil {
		serveOn = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
	}
	if err := serveOn(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
