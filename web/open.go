package web

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/supervisor"
)

// Sources are what Open builds serve's server over.
type Sources struct {
	// Pool is the KG worker pool; its systemd connection and configuration
	// are the instances' too.
	Pool *supervisor.Pool
	// Registry, Journal and Paths are the instances' (supervisor.Manager).
	Registry *config.RegistryFile
	Journal  supervisor.Journal
	Paths    config.Paths
	// OpenQueue opens the KG database, read-only for pages, scrapes and
	// /stats, read-write for actions; it is called again when a connection
	// is lost.
	OpenQueue func(ctx context.Context, readOnly bool) (kgdb.Store, error)
	// WatchError is told when the watch of systemd's signals is lost.
	WatchError func(error)
}

// Open makes the server of o over s, as serve runs it: one read-only
// database connection, opened now and again should it be lost; one
// read-write connection for the actions, opened on the first action; and
// a manager whose units' restarts, main processes and start times are kept
// from systemd's signals (until ctx ends), so a scrape asks systemd for one
// listing only. o's Manager, Pool, Queue and ActionQueue are set from s.
// The function returned closes the database connections.
func Open(ctx context.Context, o Options, s Sources) (*Server, func(), error) {
	first, err := s.OpenQueue(ctx, true)
	if err != nil {
		return nil, nil, err
	}
	q := kgdb.NewReopening(first, func() (kgdb.Store, error) { return s.OpenQueue(ctx, true) })
	wq := kgdb.NewReopening(nil, func() (kgdb.Store, error) { return s.OpenQueue(ctx, false) })
	closeAll := func() {
		wq.Close()
		q.Close()
	}
	p := s.Pool
	m := &supervisor.Manager{Systemd: p.Systemd, Config: p.Config, Registry: s.Registry, Ports: supervisor.HostPorts{},
		Processes: supervisor.HostProcesses{}, Journal: s.Journal, Paths: s.Paths, Services: supervisor.NewServiceCache()}
	watchError := s.WatchError
	if watchError == nil {
		watchError = func(error) {}
	}
	go m.Services.Watch(ctx, p.Systemd, 5*time.Second, watchError)
	o.Manager, o.Pool, o.Queue, o.ActionQueue = m, p, q, wq
	srv, err := NewServer(o)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return srv, closeAll, nil
}

// Run is serve: the server of o over s (Open) on o.Listen until ctx ends,
// its database connections closed after. started is told the address it
// listens on, as "http://127.0.0.1:9090/" ("https" with a certificate).
func Run(ctx context.Context, o Options, s Sources, started func(url string)) error {
	srv, closeQueues, err := Open(ctx, o, s)
	if err != nil {
		return err
	}
	defer closeQueues()
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Listen, err)
	}
	scheme := "http"
	if o.Certificate != nil {
		scheme = "https"
	}
	started(scheme + "://" + ln.Addr().String() + "/")
	return srv.Serve(ctx, ln)
}
