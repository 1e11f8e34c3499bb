package config

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLockFileIsPrivate(t *testing.T) {
	f, _ := registryWithOne(t)
	lockPath := f.Path + ".lock"
	// A lock file left by an older version, readable by everyone.
	if err := os.Chmod(lockPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Update(addInstance("second", 0)); err != nil {
		t.Fatal(err)
	}
	release, err := f.LockOperations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
	for _, p := range []string{lockPath, f.Path + ".op.lock"} {
		info, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want a regular file 0600", p, info.Mode())
		}
		st := info.Sys().(*syscall.Stat_t)
		if int(st.Uid) != os.Geteuid() {
			t.Errorf("%s owned by uid %d, want %d", p, st.Uid, os.Geteuid())
		}
	}
}

func TestLockFileRefusesLinksAndStrangers(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	f := OpenRegistry(filepath.Join(dir, "instances.toml"))
	if err := os.Symlink(target, f.Path+".lock"); err != nil {
		t.Fatal(err)
	}
	before := readFileOrNil(f.Path)
	if err := f.Update(addInstance("a", 0)); err == nil {
		t.Fatal("Update through a symlinked lock file succeeded")
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link's target was created: %v", err)
	}
	if after := readFileOrNil(f.Path); string(after) != string(before) {
		t.Errorf("registry changed after a refused update")
	}
	if err := os.Symlink(target, f.Path+".op.lock"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.LockOperations(context.Background()); err == nil {
		t.Fatal("LockOperations through a symlink succeeded")
	}
	if os.Geteuid() != 0 {
		return
	}
	// A lock file another user owns is not ours to trust.
	other := OpenRegistry(filepath.Join(t.TempDir(), "instances.toml"))
	if err := os.WriteFile(other.Path+".lock", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other.Path+".lock", 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err := other.Update(addInstance("a", 0))
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("Update with a lock file owned by another user = %v", err)
	}
}

func readFileOrNil(path string) []byte {
	data, _ := os.ReadFile(path)
	return data
}

// TestLockCannotBeHeldByOtherUsers is the finding that `flock -s` on the
// registry lock as nobody froze every root command.
func TestLockCannotBeHeldByOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a command as nobody")
	}
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock(1) not installed")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := OpenRegistry(filepath.Join(dir, "instances.toml"))
	if err := f.Update(addInstance("a", 0)); err != nil {
		t.Fatal(err)
	}
	release, err := f.LockOperations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
	for _, p := range []string{f.Path + ".lock", f.Path + ".op.lock"} {
		cmd := exec.Command(flock, "-s", "-n", p, "true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("nobody took a lock on %s", p)
		} else if !strings.Contains(string(out), "Permission denied") {
			t.Errorf("flock as nobody on %s: %v %s", p, err, out)
		}
	}
}

func TestLockWaitHasDeadlineAndNamesHolder(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock(1) not installed")
	}
	f, before := registryWithOne(t)
	// Create the lock files, then let another process hold them.
	release, err := f.LockOperations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
	for _, tc := range []struct {
		name string
		lock string
		take func() error
	}{
		{"update", f.Path + ".lock", func() error { return f.Update(addInstance("blocked", 0)) }},
		{"operation", f.Path + ".op.lock", func() error {
			release, err := f.LockOperations(context.Background())
			if err == nil {
				release()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holder := exec.Command(flock, "-x", tc.lock, "sleep", "30")
			if err := holder.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
			// Wait until the holder has the lock.
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(string(readFileOrNil("/proc/locks")), " "+strconv.Itoa(holder.Process.Pid)+" ") {
				if time.Now().After(deadline) {
					t.Fatal("flock(1) did not take the lock")
				}
				time.Sleep(10 * time.Millisecond)
			}
			var waitedFor string
			f.LockTimeout = 300 * time.Millisecond
			f.OnLockWait = func(_, h string) { waitedFor = h }
			defer func() { f.LockTimeout, f.OnLockWait = 0, nil }()
			start := time.Now()
			err := tc.take()
			if !errors.Is(err, ErrLockTimeout) {
				t.Fatalf("err = %v, want ErrLockTimeout", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("gave up after %s, want about 300ms", took)
			}
			want := "pid " + strconv.Itoa(holder.Process.Pid) + " (" + flock + " -x " + tc.lock + " sleep 30)"
			if !strings.Contains(err.Error(), want) || waitedFor != want {
				t.Errorf("err = %v, OnLockWait got %q; want both to name %q", err, waitedFor, want)
			}
			if after := readFileOrNil(f.Path); string(after) != string(before) {
				t.Error("registry changed although the lock was not taken")
			}
		})
	}
}

func TestHolderPID(t *testing.T) {
	locks := []byte(`1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF
1: -> FLOCK  ADVISORY  WRITE 777 08:01:5678 0 EOF
2: FLOCK  ADVISORY  WRITE 999 08:01:5678 0 EOF
3: POSIX  ADVISORY  READ 31 08:01:42 0 EOF
4: FLOCK  ADVISORY  WRITE 55 00:30:1234 0 EOF
`)
	for _, tc := range []struct {
		name         string
		major, minor uint32
		ino          uint64
		self, want   int
	}{
		{"holder, not the waiter", 8, 1, 5678, 1, 999},
		{"hex device numbers", 0xfd, 1, 1234, 1, 4242},
		{"the holder is us", 8, 1, 5678, 999, 0},
		{"no lock on the inode", 8, 1, 9, 1, 0},
		{"overlay: another device, one holder of the inode", 0, 0x2f, 42, 1, 31},
		{"overlay: the inode held by two", 0, 0x2f, 1234, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := holderPID(locks, tc.major, tc.minor, tc.ino, tc.self); got != tc.want {
				t.Errorf("holderPID = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestLockBackOffDoublesTo200ms keeps the wait between tries for a held
// lock as it was: 5ms, doubling, at most 200ms, the same every time.
func TestLockBackOffDoublesTo200ms(t *testing.T) {
	want := []time.Duration{5, 10, 20, 40, 80, 160, 200, 200}
	for run := 0; run < 2; run++ {
		b := lockBackOff()
		for i, w := range want {
			if got := b.NextBackOff(); got != w*time.Millisecond {
				t.Fatalf("try %d: wait %s, want %s", i+1, got, w*time.Millisecond)
			}
		}
	}
}
