// Command bench measures kato-manager against a real systemd, each
// measurement beside the baseline it replaces, and prints the ratios. It
// boots its own throwaway systemd (internal/sdharness), so it needs root.
// Run it with `make bench`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kato-manager/kato-manager/internal/sdharness"
	"github.com/kato-manager/kato-manager/internal/testbed"
)

// row is one line of the result table: the same work done both ways.
type row struct {
	what           string
	ours, baseline time.Duration
	oursName, base string
}

func main() {
	instances := flag.Int("instances", 50, "instances started and stopped")
	listed := flag.Int("listed", 200, "registered instances for the list benchmark")
	runs := flag.Int("runs", 5, "repetitions of the list measurement (the median is reported)")
	flag.Parse()
	ctx := context.Background()
	m, err := sdharness.Boot(ctx, sdharness.Options{})
	if err != nil {
		fail(err)
	}
	defer m.Close()
	if err := testbed.Install(m); err != nil {
		fail(err)
	}
	b := &bench{m: m, ctx: ctx}
	var rows []row
	rows = append(rows, b.startStop(*instances)...)
	rows = append(rows, b.list(*listed, *runs)...)
	print(rows)
}

type bench struct {
	m   *sdharness.Machine
	ctx context.Context
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// sh runs a shell script inside the machine and returns how long it took.
func (b *bench) sh(script string) time.Duration {
	start := time.Now()
	if _, _, err := b.m.Run(b.ctx, "/bin/sh", "-ec", script); err != nil {
		fail(fmt.Errorf("%s: %w", firstLine(script), err))
	}
	return time.Since(start)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// ids are the instance IDs of one benchmark run.
func ids(prefix string, n int) string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return strings.Join(out, " ")
}

// startStop starts and stops n instances through kato-manager, then the
// same units through a shell loop of systemctl. kato-manager also writes
// the registry and unit files and waits until each processor listens;
// systemctl only waits for the start job.
func (b *bench) startStop(n int) []row {
	km := testbed.KatoManager
	list := ids("k", n)
	kmStart := b.sh(fmt.Sprintf(`for i in %s; do %s start --id $i >/dev/null; done`, list, km))
	kmStop := b.sh(fmt.Sprintf(`for i in %s; do %s stop $i >/dev/null; done`, list, km))
	// The baseline's units are configured by kato-manager and then stopped,
	// so systemctl finds them exactly as kato-manager left them.
	base := ids("s", n)
	b.sh(fmt.Sprintf(`for i in %s; do %s start --id $i >/dev/null; done; systemctl stop 'kato@s*.service'`, base, km))
	scStart := b.sh(fmt.Sprintf(`for i in %s; do systemctl start kato@$i.service; done`, base))
	scStop := b.sh(fmt.Sprintf(`for i in %s; do systemctl stop kato@$i.service; done`, base))
	b.sh(km + " stop --all --no-mongo >/dev/null")
	return []row{
		{what: fmt.Sprintf("start %d instances", n), ours: kmStart, baseline: scStart, oursName: "kato-manager start (waits for the API port)", base: "systemctl start loop"},
		{what: fmt.Sprintf("stop %d instances", n), ours: kmStop, baseline: scStop, oursName: "kato-manager stop (removes files, entry)", base: "systemctl stop loop"},
	}
}

// list measures `kato-manager list` with n registered, running instances
// against the per-unit query a script would make: one `systemctl show` per
// unit for the same columns.
func (b *bench) list(n, runs int) []row {
	km := testbed.KatoManager
	b.sh(fmt.Sprintf(`for i in %s; do %s start --id $i >/dev/null; done`, ids("l", n), km))
	var ours, perUnit, oneShow []time.Duration
	for r := 0; r < runs; r++ {
		ours = append(ours, b.sh(km+" list >/dev/null"))
		perUnit = append(perUnit, b.sh(`for u in $(systemctl list-units --plain --no-legend 'kato@*.service' | cut -d' ' -f1); do
			systemctl show -p Id -p ActiveState -p SubState -p MainPID -p MemoryCurrent -p ActiveEnterTimestamp "$u" >/dev/null; done`))
		oneShow = append(oneShow, b.sh(`systemctl show -p Id -p ActiveState -p SubState -p MainPID -p MemoryCurrent -p ActiveEnterTimestamp 'kato@*.service' >/dev/null`))
	}
	b.sh(km + " stop --all --no-mongo >/dev/null")
	return []row{
		{what: fmt.Sprintf("list %d instances", n), ours: median(ours), baseline: median(perUnit), oursName: "kato-manager list", base: "systemctl show per unit"},
		{what: fmt.Sprintf("list %d instances", n), ours: median(ours), baseline: median(oneShow), oursName: "kato-manager list", base: "one systemctl show of all units"},
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func print(rows []row) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tkato-manager\tbaseline\ttime\tbaseline time\tbaseline/kato-manager")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2fx\n", r.what, r.oursName, r.base, round(r.ours), round(r.baseline), float64(r.baseline)/float64(r.ours))
	}
	tw.Flush()
}

func round(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}
