package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits are the resource limits systemd enforces on each KATO processor
// instance and each KG worker: MemoryMax= and TasksMax= of its unit. A
// processor uses about 110 MB; the defaults leave it room to grow while a
// runaway one is stopped before it takes the host down.
type Limits struct {
	InstanceMemoryMax string `toml:"instance_memory_max"` // MemoryMax= of kato@ID.service
	InstanceTasksMax  int    `toml:"instance_tasks_max"`  // TasksMax= of kato@ID.service
	WorkerMemoryMax   string `toml:"worker_memory_max"`   // MemoryMax= of kg-worker@N.service
	WorkerTasksMax    int    `toml:"worker_tasks_max"`    // TasksMax= of kg-worker@N.service
}

// DefaultLimits are the limits used when kato.toml sets none.
func DefaultLimits() Limits {
	return Limits{
		InstanceMemoryMax: "512M",
		InstanceTasksMax:  256,
		WorkerMemoryMax:   "256M",
		WorkerTasksMax:    64,
	}
}

// Bounds of the limits: below minMemory a processor cannot even load; a
// TasksMax= above maxTasks is more than the kernel's largest pid_max.
const (
	minMemory = 64 << 20
	maxTasks  = 4194304
)

func (l Limits) validate() error {
	for _, m := range []struct{ key, v string }{
		{"limits.instance_memory_max", l.InstanceMemoryMax},
		{"limits.worker_memory_max", l.WorkerMemoryMax},
	} {
		if err := checkMemory(m.key, m.v); err != nil {
			return err
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{
		{"limits.instance_tasks_max", l.InstanceTasksMax},
		{"limits.worker_tasks_max", l.WorkerTasksMax},
	} {
		if err := intBetween(n.key, n.v, 16, maxTasks); err != nil {
			return err
		}
	}
	return nil
}

// WorkerMemoryBytes is WorkerMemoryMax in bytes, 0 for "infinity" (or a
// value that does not parse, which validation refuses).
func (l Limits) WorkerMemoryBytes() int64 {
	n, ok := parseSize(l.WorkerMemoryMax)
	if !ok || n > 1<<62 {
		return 0
	}
	return int64(n)
}

// checkMemory checks a MemoryMax= value: "infinity", or a whole number of
// bytes with an optional K, M, G or T suffix (powers of 1024), at least 64M.
func checkMemory(field, v string) error {
	const rule = `must be "infinity" or a size such as 512M (bytes, or K, M, G, T) of at least 64M`
	if v == "infinity" {
		return nil
	}
	n, ok := parseSize(v)
	if !ok || n < minMemory {
		return &FieldError{Field: field, Value: v, Rule: rule}
	}
	return nil
}

// parseSize parses systemd's size syntax as kato.toml allows it: digits and
// one optional suffix K, M, G or T.
func parseSize(v string) (uint64, bool) {
	shift := 0
	if v != "" {
		if i := strings.IndexByte("KMGT", v[len(v)-1]); i >= 0 {
			shift, v = 10*(i+1), v[:len(v)-1]
		}
	}
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > (^uint64(0))>>shift {
		return 0, false
	}
	return n << shift, true
}

// String renders l for messages.
func (l Limits) String() string {
	return fmt.Sprintf("instances MemoryMax=%s TasksMax=%d, workers MemoryMax=%s TasksMax=%d",
		l.InstanceMemoryMax, l.InstanceTasksMax, l.WorkerMemoryMax, l.WorkerTasksMax)
}
