package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgpool"
	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/textview"
	"github.com/kato-manager/kato-manager/web"
)

func (a *app) workersStats(ctx context.Context, fs *pflag.FlagSet, asJSON *bool) error {
	return a.withPool(ctx, func(p *supervisor.Pool, _ *config.Config) error {
		return a.withQueue(ctx, true, func(q kgdb.Store) error {
			s, err := kgpool.Stats(ctx, p, q)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(a.stdout, s)
			}
			textview.PoolStats(a.stdout, s)
			return nil
		})
	})
}

// serve answers GET /health (503 when a worker is unhealthy) and GET
// /stats with the same JSON as `workers health --json` and `workers stats
// --json`, GET /metrics in Prometheus's exposition format, for monitoring
// tools, and the dashboard at /.
type serveOptions struct {
	listen, tokenFile, tlsCert, tlsKey *string
	sampleInterval, snapshotAge        *time.Duration
	maxRequests                        *int
	publicReads                        *bool
	allowHosts                         *[]string
}

func serveFlags(fs *pflag.FlagSet) serveOptions {
	return serveOptions{
		listen:         fs.String("listen", "127.0.0.1:9090", "address to listen on; one other than loopback needs the token file and TLS"),
		tokenFile:      fs.String("token-file", web.DefaultTokenFile, "file with the bearer token for reads and actions (root's, mode 0600, at least 32 characters)"),
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
	if _, _, err := net.SplitHostPort(*o.listen); err != nil {
		return usagef("invalid --listen %q: must be HOST:PORT", *o.listen)
	}
	cert, certSource, err := web.Certificate(*o.tlsCert, *o.tlsKey)
	if err != nil {
		return err
	}
	tokenFile := *o.tokenFile
	if a.paths.User && !fs.Changed("token-file") {
		// The user's own, beside the user's kato.toml.
		tokenFile = filepath.Join(filepath.Dir(a.paths.Config), "serve.token")
	}
	token, err := web.ReadTokenFile(tokenFile, fs.Changed("token-file"))
	if err != nil {
		return err
	}
	opts := web.Options{Listen: *o.listen, AllowHosts: *o.allowHosts, Token: token, TokenFile: tokenFile, PublicReads: *o.publicReads,
		Certificate: cert, SnapshotAge: *o.snapshotAge, SampleInterval: *o.sampleInterval, MaxRequests: *o.maxRequests,
		MetricsLog: log.New(a.stderr, "metrics: ", 0)}
	if err := opts.Check(); err != nil {
		return err
	}
	return a.withPool(ctx, func(p *supervisor.Pool, _ *config.Config) error {
		// As root, one child running as kato does the database work of every
		// request.
		cfg := p.Config
		return web.Run(ctx, opts, web.Sources{Pool: p, Registry: a.registry(), Journal: a.journal(), Paths: a.paths,
			OpenQueue: func(ctx context.Context, readOnly bool) (kgdb.Store, error) {
				return openQueueDB(ctx, cfg, a.paths, readOnly)
			},
			WatchError: func(err error) {
				fmt.Fprintf(a.stderr, "%v; every scrape reads each unit from systemd until the watch is back\n", err)
			}}, func(url string) {
			fmt.Fprintf(a.stdout, "serving the dashboard, /health, /stats and /metrics on %s; %s\n", url, opts.Access(certSource))
		})
	})
}
