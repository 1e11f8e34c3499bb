package kgworker

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MemoryPlan is how a worker shares its memory limit out: the soft limit it
// gives the Go runtime and the largest KG answer it decodes, so that the
// answers it may hold at once fit under the limit systemd enforces.
type MemoryPlan struct {
	// Max is the hard limit (MemoryMax= of the unit), 0 for none.
	Max int64
	// SoftLimit is the Go runtime's memory limit (GOMEMLIMIT), 0 for none:
	// near it the garbage collector works harder instead of letting the
	// heap double.
	SoftLimit int64
	// MaxAnswerBytes bounds one answer of the KG service.
	MaxAnswerBytes int64
}

// The memory model, checked by TestAnswerAtCapFitsMemory: decoding an
// answer and writing it back costs at most answerCost bytes of memory per
// byte of answer, on top of a base of memoryReserve (the runtime, SQLite's
// page cache, the decoder's buffer of up to two MaxValueBytes). Entities of
// 100 characters give the worst ratio: a 76 MiB answer of them peaked at
// about 155 MiB resident, all included. The soft limit
// keeps softLimitShare of the hard limit for the heap, leaving the rest to
// what the Go runtime does not count: the program's code, thread stacks,
// SQLite's own allocations and the page cache of the database files the
// worker writes, which the kernel charges to its cgroup.
const (
	answerCost     = 2
	memoryReserve  = 40 << 20
	softLimitShare = 0.75
	// minAnswerBytes is the least bound a plan gives; a limit too small
	// for it makes PlanMemory fail.
	minAnswerBytes = 1 << 20
)

// PlanMemory shares memoryMax (0: no limit) among concurrency answers in
// flight. An answer is bounded by DefaultMaxResponseBytes in any case.
func PlanMemory(memoryMax int64, concurrency int) (MemoryPlan, error) {
	concurrency = max(concurrency, 1)
	if memoryMax <= 0 {
		return MemoryPlan{MaxAnswerBytes: DefaultMaxResponseBytes}, nil
	}
	soft := int64(float64(memoryMax) * softLimitShare)
	answer := min((soft-memoryReserve)/(answerCost*int64(concurrency)), DefaultMaxResponseBytes)
	if answer < minAnswerBytes {
		return MemoryPlan{}, fmt.Errorf("invalid memory limit %s for concurrency %d: leaves %s per KG answer, need at least %s; raise limits.worker_memory_max or lower kg.concurrency",
			FormatBytes(memoryMax), concurrency, FormatBytes(max(answer, 0)), FormatBytes(minAnswerBytes))
	}
	return MemoryPlan{Max: memoryMax, SoftLimit: soft, MaxAnswerBytes: answer}, nil
}

// FormatBytes renders n in MiB (KiB below one MiB) for messages.
func FormatBytes(n int64) string {
	if n >= 1<<20 {
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', -1, 64) + " MiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<10), 'f', -1, 64) + " KiB"
}

// CgroupMemoryMax returns the memory.max of this process's cgroup (what
// systemd's MemoryMax= sets), 0 when it is "max" or there is no cgroup v2
// hierarchy to read.
func CgroupMemoryMax() (int64, error) {
	return cgroupMemoryMax("/proc/self/cgroup", "/sys/fs/cgroup")
}

func cgroupMemoryMax(procCgroup, root string) (int64, error) {
	f, err := os.Open(procCgroup)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read own cgroup: %w", err)
	}
	defer f.Close()
	var path string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// The cgroup v2 line is "0::/path".
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			path = p
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read own cgroup: %w", err)
	}
	if path == "" {
		return 0, nil
	}
	b, err := os.ReadFile(filepath.Join(root, filepath.Clean("/"+path), "memory.max"))
	if errors.Is(err, os.ErrNotExist) {
		// The root cgroup, or no memory controller: no limit.
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read memory limit: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("read memory limit: invalid memory.max %q", v)
	}
	return n, nil
}
