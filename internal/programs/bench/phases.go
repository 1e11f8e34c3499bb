package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/units"
	"golang.org/x/sys/unix"
)

// monotonic is CLOCK_MONOTONIC now, the clock of systemd's
// *TimestampMonotonic properties (the machine shares the host's kernel).
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		fail(err)
	}
	return time.Duration(ts.Nano())
}

// startPhases is where one start of an instance spent its time, each
// phase's end measured from the command's begin.
type startPhases struct {
	sockets   time.Duration // the last socket unit listening (private network)
	jobBegan  time.Duration // the processor's start job began (its unit left inactive)
	active    time.Duration // the processor's unit active
	forwarder time.Duration // the API forwarder started, or 0 when it was not
	done      time.Duration // the command returned
}

// phasesOf reads systemd's timestamps of the instance id's units after a
// start that began at begin and ended at end (both monotonic).
func (b *bench) phasesOf(id string, network string, begin, end time.Duration) startPhases {
	names := []string{units.InstanceUnit(id)}
	if network == "private" {
		names = append(names, units.ProxySocket(id, "api"), units.ProxySocket(id, "zmq"), units.LinkSocket(id, "mongo"), units.ProxyService(id, "api"))
	}
	out, _, err := b.m.Run(b.ctx, "systemctl", append([]string{"show", "-p", "Id", "-p", "ActiveEnterTimestampMonotonic", "-p", "InactiveExitTimestampMonotonic"}, names...)...)
	if err != nil {
		fail(fmt.Errorf("systemctl show of %s: %w", id, err))
	}
	at := map[string]map[string]time.Duration{}
	var cur map[string]time.Duration
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if k == "Id" {
			cur = map[string]time.Duration{}
			at[v] = cur
			continue
		}
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil || cur == nil {
			continue
		}
		if us == 0 {
			cur[k] = 0
			continue
		}
		cur[k] = time.Duration(us)*time.Microsecond - begin
	}
	inst := at[units.InstanceUnit(id)]
	p := startPhases{jobBegan: inst["InactiveExitTimestampMonotonic"], active: inst["ActiveEnterTimestampMonotonic"], done: end - begin}
	if network == "private" {
		for _, s := range names[1:4] {
			p.sockets = max(p.sockets, at[s]["ActiveEnterTimestampMonotonic"])
		}
		p.forwarder = at[units.ProxyService(id, "api")]["ActiveEnterTimestampMonotonic"]
	}
	return p
}

// phasesNote is a note of the median phases of starts.
func phasesNote(label string, ps []startPhases) string {
	med := func(get func(startPhases) time.Duration) string {
		var ds []time.Duration
		for _, p := range ps {
			ds = append(ds, get(p))
		}
		slices.Sort(ds)
		d := ds[len(ds)/2]
		if d <= 0 {
			return "-"
		}
		return round(d).String()
	}
	return fmt.Sprintf("%s, phases from the command's begin (median of %d): sockets listening %s, start job began %s, unit active %s, API forwarder started %s, command done %s",
		label, len(ps), med(func(p startPhases) time.Duration { return p.sockets }), med(func(p startPhases) time.Duration { return p.jobBegan }),
		med(func(p startPhases) time.Duration { return p.active }), med(func(p startPhases) time.Duration { return p.forwarder }),
		med(func(p startPhases) time.Duration { return p.done }))
}
