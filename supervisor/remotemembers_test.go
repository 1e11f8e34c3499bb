package supervisor

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// TestRemoteMembers: a member on another host joins the front at its
// host's address; a roll drains it in the front before its host restarts
// it, and puts it back after; a stop drains it, has its host stop it and
// forgets it; members no longer found on their host leave the front.
func TestRemoteMembers(t *testing.T) {
	e, ff := newFrontEnv(t)
	ctx := context.Background()
	var mu sync.Mutex
	var log []string
	e.m.RemoteRun = func(_ context.Context, host string, args []string) error {
		mu.Lock()
		defer mu.Unlock()
		// What the front had been asked by then, to see the order.
		log = append(log, host+": "+strings.Join(args, " ")+" after "+strings.Join(ff.calls, ","))
		return nil
	}
	if _, err := e.m.Start(ctx, StartRequest{ID: "a", Group: "ab", Parameters: config.DefaultParameters(), Timeout: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	found := map[string]config.RemoteMember{"b": {Group: "ab", Host: "root@beta", Address: "beta", Port: 8101, Weight: 2},
		"x": {Group: "nofront", Host: "root@beta", Address: "beta", Port: 8102}}
	if err := e.m.SetRemoteMembers(ctx, []string{"root@beta"}, found); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.m.frontConfigPath("ab"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "server b beta:8101 weight 2 check") || !strings.Contains(string(cfg), "server a 127.0.0.1:") {
		t.Errorf("front of ab with a member on beta:\n%s", cfg)
	}
	if reg, _ := e.m.Registry.Load(); reg.RemoteMembers["x"].Host != "" {
		t.Error("a member of a group without a front here was kept")
	}

	ff.up = []string{"a", "b"}
	res, err := e.m.RollGroup(ctx, "ab", RollOptions{Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Done, []string{"a", "b"}) {
		t.Errorf("rolled %v", res.Done)
	}
	if want := []string{"root@beta: restart b --timeout 3s after drain a,ready a,drain b"}; !slices.Equal(log, want) {
		t.Errorf("remote commands %q, want %q", log, want)
	}
	if want := []string{"drain a", "ready a", "drain b", "ready b"}; !slices.Equal(ff.calls, want) {
		t.Errorf("runtime calls %v, want %v", ff.calls, want)
	}

	// Its host is about to restart it (an apply there): drained, then
	// back once up.
	ff.calls = nil
	drained, err := e.m.DrainRemoteMembers(ctx, []string{"b", "a", "nope"})
	if err != nil || !slices.Equal(drained, []string{"b"}) {
		t.Errorf("DrainRemoteMembers = %v, %v; want [b]", drained, err)
	}
	if err := e.m.ReadyRemoteMembers(ctx, drained, time.Second); err != nil {
		t.Error(err)
	}
	if want := []string{"drain b", "ready b"}; !slices.Equal(ff.calls, want) {
		t.Errorf("runtime calls %v, want %v", ff.calls, want)
	}

	// restart b on the front's host: a roll of that one member.
	ff.calls, log = nil, nil
	if err := e.m.RestartRemoteMember(ctx, "b", 0); err != nil {
		t.Fatal(err)
	}
	if want := []string{"root@beta: restart b after drain b"}; !slices.Equal(log, want) {
		t.Errorf("remote commands %q, want %q", log, want)
	}
	if want := []string{"drain b", "ready b"}; !slices.Equal(ff.calls, want) {
		t.Errorf("runtime calls %v, want %v", ff.calls, want)
	}

	ff.calls, log = nil, nil
	if err := e.m.StopRemoteMember(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"root@beta: stop b after drain b"}; !slices.Equal(log, want) {
		t.Errorf("remote commands %q, want %q", log, want)
	}
	if reg, _ := e.m.Registry.Load(); len(reg.RemoteMembers) != 0 {
		t.Errorf("remote members after the stop: %v", reg.RemoteMembers)
	}
	if cfg, _ := os.ReadFile(e.m.frontConfigPath("ab")); strings.Contains(string(cfg), "server b ") {
		t.Errorf("the front still has b after its stop:\n%s", cfg)
	}

	// Found again, then gone from its host: drained out of the front.
	if err := e.m.SetRemoteMembers(ctx, []string{"root@beta"}, found); err != nil {
		t.Fatal(err)
	}
	ff.calls = nil
	if err := e.m.SetRemoteMembers(ctx, []string{"root@beta"}, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ff.calls, []string{"drain b"}) {
		t.Errorf("runtime calls %v, want b drained", ff.calls)
	}
	if cfg, _ := os.ReadFile(e.m.frontConfigPath("ab")); strings.Contains(string(cfg), "server b ") {
		t.Errorf("the front still has b after its host dropped it:\n%s", cfg)
	}
}

// TestRemoteMemberNotFound: restart and stop of an ID that is no remote
// member are config.ErrNotFound, ask no host anything and leave the
// registry's lock free for the next operation.
func TestRemoteMemberNotFound(t *testing.T) {
	e, _ := newFrontEnv(t)
	e.m.RemoteRun = func(_ context.Context, host string, args []string) error {
		t.Errorf("%s asked %q for a member it does not have", host, args)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, do := range map[string]func() error{
		"restart": func() error { return e.m.RestartRemoteMember(ctx, "nope", 0) },
		"stop":    func() error { return e.m.StopRemoteMember(ctx, "nope") },
	} {
		if err := do(); !errors.Is(err, config.ErrNotFound) || !strings.Contains(err.Error(), "no member nope of a front on another host") {
			t.Errorf("%s: %v, want not found", name, err)
		}
	}
	release, err := e.m.Registry.LockOperations(ctx)
	if err != nil {
		t.Fatalf("the lock after the refusals: %v", err)
	}
	release()
}

// TestLockedRegistryReleasesOnABadRegistry: a registry that does not read
// refuses the operation with the reader's error and leaves the operations
// lock free for the next one.
func TestLockedRegistryReleasesOnABadRegistry(t *testing.T) {
	e, _ := newFrontEnv(t)
	if err := os.WriteFile(e.m.Registry.Path, []byte("this is not TOML [[[\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.m.Stop(ctx, "web-1"); err == nil || !strings.Contains(err.Error(), e.m.Registry.Path) {
		t.Errorf("stop over a bad registry: %v, want the registry's error", err)
	}
	if err := e.m.StopRemoteMember(ctx, "web-b"); err == nil || errors.Is(err, config.ErrNotFound) {
		t.Errorf("stop of a remote member over a bad registry: %v, want the registry's error", err)
	}
	release, err := e.m.Registry.LockOperations(ctx)
	if err != nil {
		t.Fatalf("the lock after the refusals: %v", err)
	}
	release()
}
