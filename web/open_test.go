package web

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/supervisor"
)

// countedStores opens the KG database at path as OpenQueue does, counting
// the stores opened read-only and read-write and those closed.
type countedStores struct {
	path   string
	mu     sync.Mutex
	opened map[bool]int
	closed int
}

type countedStore struct {
	*kgdb.Local
	c *countedStores
}

func (s countedStore) Close() error {
	s.c.mu.Lock()
	s.c.closed++
	s.c.mu.Unlock()
	return s.Local.Close()
}

func (c *countedStores) open(ctx context.Context, readOnly bool) (kgdb.Store, error) {
	db, err := kgdb.Open(ctx, c.path)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opened[readOnly]++
	return countedStore{kgdb.NewLocal(db), c}, nil
}

func (c *countedStores) counts() (readOnly, readWrite, closed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened[true], c.opened[false], c.closed
}

// TestOpen: Open, as serve runs it, opens the read-only connection at once
// and the read-write one on the first action, watches systemd's signals
// (a lost watch is told to WatchError), and its closer closes both; a
// queue that does not open, or options refused, give no server and leave
// nothing open.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	stores := &countedStores{path: filepath.Join(dir, "kg.db"), opened: map[bool]int{}}
	db, err := kgdb.Open(context.Background(), stores.path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kgdb.NewLocal(db).Queue.Enqueue(context.Background(), 7, 1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	sd := &refusingSystemd{}
	watchLost := make(chan error, 1)
	sources := Sources{Pool: &supervisor.Pool{Systemd: sd, Config: config.Default()}, Registry: config.OpenRegistry(filepath.Join(dir, "instances.toml")),
		OpenQueue: stores.open, WatchError: func(err error) {
			select {
			case watchLost <- err:
			default:
			}
		}}
	o := Options{Token: actionToken, Listen: "127.0.0.1:0", SampleInterval: time.Second, MaxRequests: 8}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, closeQueues, err := Open(ctx, o, sources)
	if err != nil {
		t.Fatal(err)
	}
	if ro, rw, closed := stores.counts(); ro != 1 || rw != 0 || closed != 0 {
		t.Errorf("after Open: %d read-only, %d read-write opened, %d closed; want 1, 0, 0", ro, rw, closed)
	}
	select {
	case err := <-watchLost:
		if !errors.Is(err, errNotReached) {
			t.Errorf("WatchError told %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("a watch that systemd refused was not told to WatchError")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/actions/delete", strings.NewReader("item=1&confirm=yes"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+actionToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "1 item(s) deleted\n" {
		t.Errorf("POST /actions/delete: %d %q", resp.StatusCode, body)
	}
	if ro, rw, _ := stores.counts(); ro != 1 || rw != 1 {
		t.Errorf("after an action: %d read-only, %d read-write opened; want 1, 1", ro, rw)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	closeQueues()
	if _, _, closed := stores.counts(); closed != 2 {
		t.Errorf("the closer closed %d stores, want 2", closed)
	}

	broken := errors.New("no database")
	refusing := sources
	refusing.OpenQueue = func(context.Context, bool) (kgdb.Store, error) { return nil, broken }
	if srv, _, err := Open(context.Background(), o, refusing); !errors.Is(err, broken) || srv != nil {
		t.Errorf("Open over a queue that does not open: %v, %v", srv, err)
	}
	bad := o
	bad.MaxRequests = 0
	if srv, _, err := Open(context.Background(), bad, sources); err == nil || !strings.Contains(err.Error(), "--max-requests") || srv != nil {
		t.Errorf("Open with --max-requests 0: %v, %v", srv, err)
	}
	if ro, _, closed := stores.counts(); closed != ro+1 {
		t.Errorf("refused options left a store open: %d read-only opened, %d closed", ro, closed)
	}
}

// TestRun: Run listens on o.Listen, tells started the URL it serves, answers
// there until ctx ends, and then closes the database connections; an
// address it cannot listen on is an error naming it, with nothing left
// open.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	stores := &countedStores{path: filepath.Join(dir, "kg.db"), opened: map[bool]int{}}
	sources := Sources{Pool: &supervisor.Pool{Systemd: &refusingSystemd{}, Config: config.Default()}, Registry: config.OpenRegistry(filepath.Join(dir, "instances.toml")),
		OpenQueue: stores.open}
	o := Options{Token: actionToken, Listen: "127.0.0.1:0", SampleInterval: time.Second, MaxRequests: 8}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls := make(chan string, 1)
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, o, sources, func(url string) { urls <- url }) }()
	var url string
	select {
	case url = <-urls:
	case err := <-ran:
		t.Fatalf("Run: %v", err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/") || strings.HasSuffix(url, ":0/") {
		t.Fatalf("started told %q", url)
	}
	resp, err := http.Get(url + "login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run after ctx ended: %v", err)
	}
	if ro, _, closed := stores.counts(); ro != 1 || closed != 1 {
		t.Errorf("after Run: %d read-only opened, %d closed; want 1, 1", ro, closed)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	o.Listen = taken.Addr().String()
	err = Run(context.Background(), o, sources, func(string) { t.Error("started told of an address not listened on") })
	if err == nil || !strings.Contains(err.Error(), "listen on "+o.Listen) {
		t.Errorf("Run on a taken address: %v", err)
	}
	if ro, _, closed := stores.counts(); ro != 2 || closed != 2 {
		t.Errorf("after Run on a taken address: %d read-only opened, %d closed; want 2, 2", ro, closed)
	}
}
