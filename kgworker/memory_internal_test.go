package kgworker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCgroupMemoryMax(t *testing.T) {
	for _, tc := range []struct {
		name, cgroup, max string
		want              int64
		wantErr           string
	}{
		{"limited", "0::/system.slice/kg-worker@1.service\n", "268435456\n", 256 << 20, ""},
		{"unlimited", "0::/system.slice/kg-worker@1.service\n", "max\n", 0, ""},
		{"v1 lines are ignored", "12:memory:/x\n0::/system.slice/kg-worker@1.service\n", "1048576\n", 1 << 20, ""},
		{"no memory controller", "0::/system.slice/kg-worker@1.service\n", "", 0, ""},
		{"no cgroup v2", "12:memory:/x\n", "", 0, ""},
		{"garbage", "0::/system.slice/kg-worker@1.service\n", "lots\n", 0, `invalid memory.max "lots"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			proc := filepath.Join(dir, "cgroup")
			root := filepath.Join(dir, "fs")
			if err := os.WriteFile(proc, []byte(tc.cgroup), 0o644); err != nil {
				t.Fatal(err)
			}
			unit := filepath.Join(root, "system.slice", "kg-worker@1.service")
			if err := os.MkdirAll(unit, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.max != "" {
				if err := os.WriteFile(filepath.Join(unit, "memory.max"), []byte(tc.max), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := cgroupMemoryMax(proc, root)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %d, %v, want an error saying %q", got, err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case got != tc.want:
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPlanMemory(t *testing.T) {
	for _, tc := range []struct {
		name        string
		max         int64
		concurrency int
		soft        int64
		answer      int64
		wantErr     string
	}{
		{"no limit", 0, 4, 0, DefaultMaxResponseBytes, ""},
		{"default 256M", 256 << 20, 1, 192 << 20, 76 << 20, ""},
		{"256M shared by 4", 256 << 20, 4, 192 << 20, 19 << 20, ""},
		{"a big limit keeps the ceiling", 4 << 30, 1, 3 << 30, DefaultMaxResponseBytes, ""},
		{"too small for the concurrency", 64 << 20, 64, 0, 0, "raise limits.worker_memory_max or lower kg.concurrency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanMemory(tc.max, tc.concurrency)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v, want an error saying %q", p, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.SoftLimit != tc.soft || p.MaxAnswerBytes != tc.answer {
				t.Errorf("got soft limit %d and answers up to %d, want %d and %d", p.SoftLimit, p.MaxAnswerBytes, tc.soft, tc.answer)
			}
			// What the model says the answers in flight take fits under
			// the soft limit.
			if tc.max > 0 && memoryReserve+answerCost*int64(tc.concurrency)*p.MaxAnswerBytes > p.SoftLimit {
				t.Errorf("answers of %d bytes do not fit the soft limit %d", p.MaxAnswerBytes, p.SoftLimit)
			}
		})
	}
}
