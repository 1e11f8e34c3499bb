package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
	"github.com/kato-manager/kato-manager/queue"
)

// hostsBench measures the KG pool as it runs on hosts: kg-worker units
// under systemd on machines joined by a network, against the KG service
// double on the database host. Eight workers over two hosts share one
// PostgreSQL queue on a third; beside them, the same eight on one host
// share a SQLite file, the single-host set-up PostgreSQL replaces when a
// pool outgrows a machine.
type hostsBench struct {
	ctx     context.Context
	items   int
	samples int
	// db runs PostgreSQL and the KG service double; workers run the
	// workers.
	db      *sdharness.Machine
	workers []*sdharness.Machine
	pgURL   string
	closes  []func() error
}

// Where the machines of hostsBench are, and the double's address.
const (
	hostsSubnet    = "10.77.0.0/24"
	hostsDBAddr    = "10.77.0.2"
	hostsDBName    = "kato1"
	hostsKGService = "http://kato1:8088"
)

// newHostsBench boots the three machines and prepares them.
func newHostsBench(ctx context.Context, items, samples int) (*hostsBench, error) {
	b := &hostsBench{ctx: ctx, items: items, samples: samples}
	lan, err := sdharness.NewNetwork(ctx, netip.MustParsePrefix(hostsSubnet))
	if err != nil {
		return nil, err
	}
	b.closes = append(b.closes, lan.Close)
	for i := 1; i <= 3; i++ {
		m, err := sdharness.Boot(ctx, sdharness.Options{})
		if err != nil {
			return b, err
		}
		b.closes = append(b.closes, m.Close)
		if err := testbed.Install(m); err != nil {
			return b, err
		}
		if err := lan.Attach(ctx, m, netip.MustParseAddr(fmt.Sprintf("10.77.0.%d", i+1)), fmt.Sprintf("kato%d", i)); err != nil {
			return b, err
		}
		if i == 1 {
			b.db = m
		} else {
			b.workers = append(b.workers, m)
		}
	}
	b.pgURL, err = testbed.SharedQueue(ctx, b.db, netip.MustParseAddr(hostsDBAddr), netip.MustParsePrefix(hostsSubnet), hostsDBName)
	if err != nil {
		return b, err
	}
	if _, _, err := b.db.Run(ctx, "systemd-run", "--unit=kgservice", "--", testbed.KGServiceFake, "--listen", hostsDBAddr+":8088"); err != nil {
		return b, err
	}
	return b, nil
}

func (b *hostsBench) close() error {
	var errs []error
	// Machines first, the network last.
	for i := len(b.closes) - 1; i >= 0; i-- {
		errs = append(errs, b.closes[i]())
	}
	return errors.Join(errs...)
}

// km runs kato-manager on m and returns its output.
func (b *hostsBench) km(m *sdharness.Machine, args ...string) (string, error) {
	out, _, err := m.Run(b.ctx, testbed.KatoManager, args...)
	return out, err
}

// hostsRun is one set-up measured: its queue database and the workers on
// each host.
type hostsRun struct {
	name      string
	kgConfig  string // the [kg] lines of every worker host's kato.toml
	perHost   int
	hosts     []*sdharness.Machine
	addDocs   func(n int) error
	rate      float64
	latencies []time.Duration
}

// measure prepares r's hosts, drains b.items documents and then samples the
// pickup latency of single items into the idle pool.
func (b *hostsBench) measure(r *hostsRun) error {
	conf := testbed.Config + "\n[kg]\nservice_url = \"" + hostsKGService + "\"\n" + r.kgConfig
	for _, m := range r.hosts {
		if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
			return err
		}
		if _, err := b.km(m, "install-units"); err != nil {
			return err
		}
	}
	first := r.hosts[0]
	if _, err := b.km(first, "queue", "stats"); err != nil {
		return err
	}
	if err := r.addDocs(b.items + b.samples); err != nil {
		return fmt.Errorf("%s: add documents: %w", r.name, err)
	}
	args := []string{"queue", "enqueue"}
	for id := 1; id <= b.items; id++ {
		args = append(args, strconv.Itoa(id))
	}
	if _, err := b.km(first, args...); err != nil {
		return err
	}

	start := time.Now()
	if err := eachHost(r.hosts, func(m *sdharness.Machine) error {
		_, err := b.km(m, "workers", "start", "-n", strconv.Itoa(r.perHost))
		return err
	}); err != nil {
		return err
	}
	if err := b.waitCompleted(first, b.items, 5*time.Minute); err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	r.rate = float64(b.items) / time.Since(start).Seconds()

	for i := 1; i <= b.samples; i++ {
		time.Sleep(rand.N(500 * time.Millisecond))
		if _, err := b.km(first, "queue", "enqueue", strconv.Itoa(b.items+i)); err != nil {
			return err
		}
		if err := b.waitCompleted(first, b.items+i, time.Minute); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	out, err := b.km(first, "queue", "list", "--json", "--status", "completed", "--limit", strconv.Itoa(b.items+b.samples))
	if err != nil {
		return err
	}
	var items []queue.Item
	if err := json.Unmarshal([]byte(out), &items); err != nil {
		return fmt.Errorf("%s: queue list --json: %w", r.name, err)
	}
	for _, it := range items {
		if it.ContentID > int64(b.items) {
			r.latencies = append(r.latencies, it.ProcessingStartedAt.Sub(it.QueuedAt))
		}
	}
	if len(r.latencies) != b.samples {
		return fmt.Errorf("%s: %d latency samples, want %d", r.name, len(r.latencies), b.samples)
	}
	return eachHost(r.hosts, func(m *sdharness.Machine) error {
		_, err := b.km(m, "workers", "stop")
		return err
	})
}

// eachHost runs f on every host at once.
func eachHost(hosts []*sdharness.Machine, f func(*sdharness.Machine) error) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, m := range hosts {
		wg.Go(func() {
			errs[i] = f(m)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitCompleted polls `queue stats --json` on m until n items are
// completed.
func (b *hostsBench) waitCompleted(m *sdharness.Machine, n int, timeout time.Duration) error {
	var c queue.Counts
	err := sdharness.WaitFor(b.ctx, timeout, fmt.Sprintf("%d completed items", n), func() (bool, error) {
		out, err := b.km(m, "queue", "stats", "--json")
		if err != nil {
			return false, err
		}
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			return false, fmt.Errorf("queue stats --json: %w", err)
		}
		if c.Failed > 0 || c.Skipped > 0 {
			return false, fmt.Errorf("%d items failed and %d were skipped", c.Failed, c.Skipped)
		}
		return c.Completed >= n, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last counts %+v)", err, c)
	}
	return nil
}

// documentsSQL inserts documents 1..n with one to three chunks each, in
// SQL both SQLite and PostgreSQL run.
func documentsSQL(n int) string {
	return fmt.Sprintf(`
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %[1]d)
INSERT INTO crawled_content(id, url, title, markdown, metadata)
SELECT i, 'https://example.com/docs/' || i, 'Document ' || i,
	'# Document ' || i || ': body of document ' || i || ', long enough for the KG service''s limits.',
	'{"n": ' || i || '}' FROM n;
WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 2)
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count)
SELECT c.id, k.i, 'Chunk ' || k.i || ' of document ' || c.id, k.i * 100, k.i * 100 + 99, 5
FROM crawled_content c JOIN k ON k.i < c.id %% 3 + 1;`, n)
}

// rows measures both set-ups and returns their rows.
func (b *hostsBench) rows() ([]row, error) {
	sqlite := &hostsRun{
		name: "SQLite, 8 workers on 1 host", perHost: 8, hosts: b.workers[:1],
		addDocs: func(n int) error {
			_, _, err := b.workers[0].Run(b.ctx, "sqlite3", "-cmd", ".timeout 10000", "/var/lib/kato/kg/kg.db", documentsSQL(n))
			return err
		},
	}
	pg := &hostsRun{
		name: "PostgreSQL, 4 + 4 workers on 2 hosts", perHost: 4, hosts: b.workers,
		kgConfig: fmt.Sprintf("db_url = %q\n", b.pgURL),
		addDocs: func(n int) error {
			_, _, err := b.db.Run(b.ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", b.pgURL, "-c", documentsSQL(n))
			return err
		},
	}
	for _, r := range []*hostsRun{sqlite, pg} {
		if err := b.measure(r); err != nil {
			return nil, err
		}
	}
	const oursName = "kg-worker units, defaults, LISTEN/NOTIFY"
	rows := []row{{
		what:     fmt.Sprintf("KG throughput, 8 workers over 2 hosts on PostgreSQL, zero-latency double across the network, items/s (%d items)", b.items),
		oursName: pg.name + " (" + oursName + ")", base: sqlite.name,
		ours: fmt.Sprintf("%.1f/s", pg.rate), baseline: fmt.Sprintf("%.1f/s", sqlite.rate),
		ratio: pg.rate / sqlite.rate, ratioIs: "PostgreSQL/SQLite",
	}}
	for _, p := range []float64{50, 99} {
		o, s := percentile(pg.latencies, p), percentile(sqlite.latencies, p)
		rows = append(rows, row{
			what:     fmt.Sprintf("KG enqueue→pickup p%.0f, 8 idle workers over 2 hosts on PostgreSQL (n=%d)", p, b.samples),
			oursName: pg.name, base: sqlite.name,
			ours: round(o).String(), baseline: round(s).String(),
			ratio: float64(s) / float64(max(o, time.Millisecond)), ratioIs: "SQLite/PostgreSQL",
		})
	}
	return rows, nil
}

// hostsNote says what the several-hosts rows measure on one machine.
const hostsNote = "the several-hosts machines share this machine's CPUs and disk: a second worker host adds no cores here, so the PostgreSQL rows show the cost of the shared server and the network, not the gain of more hosts"

// hostsRows boots the machines, measures and tears them down.
func hostsRows(ctx context.Context, items, samples int) ([]row, []string, error) {
	b, err := newHostsBench(ctx, items, samples)
	if err != nil {
		if b != nil {
			err = errors.Join(err, b.close())
		}
		return nil, nil, err
	}
	rows, err := b.rows()
	return rows, []string{hostsNote}, errors.Join(err, b.close())
}
