package supervisor

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ServiceCache keeps the Service properties of units (MainPID, NRestarts,
// Result, the main process's start, the cgroup) as systemd last reported
// them, so that a scrape reads them from memory. A unit's properties are
// read once when it first appears and again after systemd signals a change
// (Watch); while no subscription is in place every read goes to systemd.
// The zero value is not usable: use NewServiceCache.
type ServiceCache struct {
	mu       sync.Mutex
	watching bool
	// epoch changes whenever the subscription starts or ends: what was
	// read under another one is not stored.
	epoch uint64
	units map[string]*cachedUnit
	// listening remembers the instances' listening sockets from one
	// scrape to the next.
	listening listenMemo
}

type cachedUnit struct {
	props   UnitState
	changes uint64 // signals for the unit since it entered the cache
	read    uint64 // changes when props were read
	have    bool   // props hold a read
}

// NewServiceCache returns an empty cache, not yet watching.
func NewServiceCache() *ServiceCache {
	return &ServiceCache{units: map[string]*cachedUnit{}}
}

// Watch keeps the cache in step with systemd's signals until ctx ends.
// When the subscription is lost the cache forgets everything (signals may
// have been missed), reads go to systemd again, and Watch subscribes anew
// after retry; onErr, if set, hears why.
func (c *ServiceCache) Watch(ctx context.Context, sd Systemd, retry time.Duration, onErr func(error)) {
	for {
		done, err := sd.WatchUnits(ctx, c.changed)
		if err == nil {
			c.reset(true)
			err = <-done
		}
		c.reset(false)
		if ctx.Err() != nil {
			return
		}
		if err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// Watching reports whether the cache is subscribed to systemd's signals.
func (c *ServiceCache) Watching() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watching
}

func (c *ServiceCache) reset(watching bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watching = watching
	c.epoch++
	clear(c.units)
}

// changed records a signal of systemd's: the unit's cached properties are
// stale. Units the cache does not hold are not of interest.
func (c *ServiceCache) changed(unit string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.units[unit]; ok {
		e.changes++
	}
}

// fill sets the Service properties of the loaded units of list: from the
// cache where systemd has signalled no change since they were read, else
// with one ServiceProperties call per unit, all sent at once. The cache
// forgets units list no longer has. A nil cache reads every unit.
func (c *ServiceCache) fill(ctx context.Context, sd Systemd, list []UnitState) error {
	if c == nil {
		c = NewServiceCache()
	}
	type read struct {
		i    int
		snap uint64
	}
	var reads []read
	c.mu.Lock()
	epoch := c.epoch
	listed := make(map[string]bool, len(list))
	for i := range list {
		u := &list[i]
		if u.LoadState != "loaded" {
			continue
		}
		listed[u.Name] = true
		e := c.units[u.Name]
		if e == nil {
			e = &cachedUnit{}
			c.units[u.Name] = e
		}
		if c.watching && e.have && e.read == e.changes {
			mergeService(u, e.props)
			continue
		}
		reads = append(reads, read{i, e.changes})
	}
	for name := range c.units {
		if !listed[name] {
			delete(c.units, name)
		}
	}
	c.mu.Unlock()

	props := make([]UnitState, len(reads))
	errs := make([]error, len(reads))
	var wg sync.WaitGroup
	for k, r := range reads {
		wg.Go(func() {
			props[k], errs[k] = sd.ServiceProperties(ctx, list[r.i].Name)
		})
	}
	wg.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	var failed []error
	for k, r := range reads {
		u := &list[r.i]
		if errs[k] != nil {
			if !errors.Is(errs[k], ErrNoSuchUnit) { // else unloaded since the listing
				failed = append(failed, errs[k])
			}
			continue
		}
		mergeService(u, props[k])
		if e := c.units[u.Name]; e != nil && c.epoch == epoch {
			e.props, e.read, e.have = props[k], r.snap, true
		}
	}
	return errors.Join(failed...)
}

// mergeService copies the Service properties of p into u.
func mergeService(u *UnitState, p UnitState) {
	u.Result, u.MainPID, u.NRestarts, u.ControlGroup = p.Result, p.MainPID, p.NRestarts, p.ControlGroup
	if u.ActiveState == "active" {
		u.ActiveSince = p.ActiveSince
	}
}

// CgroupUsage is what a unit's cgroup accounts: memory.current and the
// usage_usec of cpu.stat. A figure whose file the cgroup lacks (its
// controller is not enabled) is not OK.
type CgroupUsage struct {
	MemoryBytes uint64
	MemoryOK    bool
	CPU         time.Duration
	CPUOK       bool
}

// DefaultCgroupRoot is where the cgroup2 hierarchy is mounted.
const DefaultCgroupRoot = "/sys/fs/cgroup"

// ReadCgroup reads the usage of the cgroup at path (as systemd's
// ControlGroup names it) under the cgroup2 mount root.
func ReadCgroup(root, path string) CgroupUsage {
	var u CgroupUsage
	if path == "" || !strings.HasPrefix(path, "/") || strings.Contains(path, "/../") {
		return u
	}
	dir := filepath.Join(root, path)
	// Each file with open, one read and close (procReader); a scrape reads
	// two of every running instance.
	var r procReader
	if b, err := r.read(filepath.Join(dir, "memory.current")); err == nil {
		if v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64); err == nil {
			u.MemoryBytes, u.MemoryOK = v, true
		}
	}
	if b, err := r.read(filepath.Join(dir, "cpu.stat")); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "usage_usec "); ok {
				if usec, err := strconv.ParseUint(v, 10, 64); err == nil {
					u.CPU, u.CPUOK = time.Duration(usec)*time.Microsecond, true
				}
			}
		}
	}
	return u
}
