package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// fakeHosts stands for the kato-managers of other hosts: scale --prefix P N
// makes their series P-1…P-N (ports 8100+k), export lists what they run.
type fakeHosts struct {
	mu      sync.Mutex
	ff      *fakeFront
	running map[string]map[string]int // host → id → port
	group   map[string]string         // id → group
	log     []string
}

func (h *fakeHosts) run(_ context.Context, host string, args []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ff.mu.Lock()
	h.log = append(h.log, host+": "+strings.Join(args, " ")+" after "+strings.Join(h.ff.calls, ","))
	h.ff.mu.Unlock()
	if len(args) < 6 || args[0] != "scale" || args[3] != "--prefix" {
		return fmt.Errorf("unexpected command %q", args)
	}
	group, prefix := args[2], args[4]
	n, _ := strconv.Atoi(args[5])
	for id := range h.running[host] {
		if k, ok := replicaIndex(prefix, id); ok && k > n {
			delete(h.running[host], id)
		}
	}
	for k := 1; k <= n; k++ {
		id := ReplicaID(prefix, k)
		h.running[host][id] = 8100 + k
		h.group[id] = group
	}
	return nil
}

func (h *fakeHosts) output(_ context.Context, host string, args []string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if strings.Join(args, " ") != "export --format json" {
		return nil, fmt.Errorf("unexpected command %q", args)
	}
	var entries []map[string]any
	for _, id := range slices.Sorted(maps.Keys(h.running[host])) {
		entries = append(entries, map[string]any{"id": id, "port": h.running[host][id], "group": h.group[id]})
	}
	return json.Marshal(map[string]any{"instances": entries})
}

func (h *fakeHosts) found(host string) map[string]config.RemoteMember {
	out := map[string]config.RemoteMember{}
	for id, port := range h.running[host] {
		out[id] = config.RemoteMember{Group: h.group[id], Host: host, Address: config.HostAddress(host), Port: port}
	}
	return out
}

// TestScaleOnHost: scale --on-host grows the replicas of a fronted group on
// another host through that host's kato-manager and adds them to the front
// here; it shrinks them by draining those going away here first; bad
// input (an unknown host, a host without a member of the group, a host
// whose members are no replicas, N < 0) is refused and changes nothing.
func TestScaleOnHost(t *testing.T) {
	e, ff := newFrontEnv(t)
	ctx := context.Background()
	e.m.Config.Groups["cd"] = config.Group{Front: 9001}
	h := &fakeHosts{ff: ff, group: map[string]string{"web-b-1": "ab", "web-b-2": "ab", "x": "ab", "y": "cd"},
		running: map[string]map[string]int{"root@beta": {"web-b-1": 8101, "web-b-2": 8102}, "gamma": {"x": 8201}, "delta": {"y": 8301}}}
	e.m.RemoteRun, e.m.RemoteOutput = h.run, h.output
	if _, err := e.m.Start(ctx, StartRequest{ID: "a", Group: "ab", Parameters: config.DefaultParameters(), Timeout: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"root@beta", "gamma", "delta"} {
		if err := e.m.SetRemoteMembers(ctx, []string{host}, h.found(host)); err != nil {
			t.Fatal(err)
		}
	}
	ff.up = []string{"a", "web-b-1", "web-b-2", "web-b-3", "web-b-4", "x", "y"}

	regBefore, _ := e.m.Registry.Load()
	for _, tc := range []struct {
		name, host string
		n          int
		want       string
	}{
		{"unknown host", "epsilon", 2, "invalid --on-host epsilon: must be a host running members of a front of this host: delta, gamma, root@beta"},
		{"no member of the group", "delta", 2, "invalid --on-host delta: must be a host running a member of group ab; its members on other hosts are on gamma, root@beta"},
		{"no replicas there", "gamma", 2, "invalid --on-host gamma: must run replicas of group ab to scale: its members there (x) are no replicas ID-1…ID-N"},
		{"negative", "beta", -1, "invalid replicas -1: must be between 0 and 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.m.ScaleOnHost(ctx, "ab", tc.host, tc.n, ScaleOptions{})
			var fe *config.FieldError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ScaleOnHost(%s, %d) = %v, want %q", tc.host, tc.n, err, tc.want)
			}
		})
	}
	if _, err := e.m.ScaleOnHost(ctx, "nofront", "beta", 2, ScaleOptions{}); err == nil || !strings.Contains(err.Error(), "invalid --group nofront: must name a group whose front runs on this host") {
		t.Errorf("scale --on-host of a group without a front: %v", err)
	}
	if reg, _ := e.m.Registry.Load(); len(h.log) != 0 || len(ff.calls) != 0 || !maps.Equal(reg.RemoteMembers, regBefore.RemoteMembers) {
		t.Fatalf("refused scales changed something: remote commands %q, runtime calls %v, members %v", h.log, ff.calls, reg.RemoteMembers)
	}

	// Up: beta makes web-b-3 and web-b-4, the front here takes them.
	res, err := e.m.ScaleOnHost(ctx, "ab", "beta", 4, ScaleOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Started, []string{"web-b-3", "web-b-4"}) || len(res.Stopped) != 0 {
		t.Errorf("scale to 4 on beta: started %v, stopped %v", res.Started, res.Stopped)
	}
	if want := []string{"root@beta: scale --group ab --prefix web-b 4 --timeout 5s after "}; !slices.Equal(h.log, want) {
		t.Errorf("remote commands %q, want %q", h.log, want)
	}
	cfg, _ := os.ReadFile(e.m.frontConfigPath("ab"))
	for _, s := range []string{"server web-b-3 beta:8103", "server web-b-4 beta:8104", "server x gamma:8201", "server a 127.0.0.1:"} {
		if !strings.Contains(string(cfg), s) {
			t.Errorf("front of ab after scale to 4 on beta lacks %q:\n%s", s, cfg)
		}
	}

	// Down: the two going away are drained here before beta stops them.
	h.log, ff.calls = nil, nil
	res, err = e.m.ScaleOnHost(ctx, "ab", "ops@beta", 2, ScaleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Stopped, []string{"web-b-3", "web-b-4"}) || len(res.Started) != 0 {
		t.Errorf("scale to 2 on beta: started %v, stopped %v", res.Started, res.Stopped)
	}
	if want := []string{"root@beta: scale --group ab --prefix web-b 2 after drain web-b-3,drain web-b-4"}; !slices.Equal(h.log, want) {
		t.Errorf("remote commands %q, want %q", h.log, want)
	}
	if want := []string{"drain web-b-3", "drain web-b-4"}; !slices.Equal(ff.calls, want) {
		t.Errorf("runtime calls %v, want %v", ff.calls, want)
	}
	cfg, _ = os.ReadFile(e.m.frontConfigPath("ab"))
	if strings.Contains(string(cfg), "server web-b-3") || !strings.Contains(string(cfg), "server web-b-2 beta:8102") {
		t.Errorf("front of ab after scale to 2 on beta:\n%s", cfg)
	}
	reg, _ := e.m.Registry.Load()
	if got := slices.Sorted(maps.Keys(reg.RemoteMembers)); !slices.Equal(got, []string{"web-b-1", "web-b-2", "x", "y"}) {
		t.Errorf("remote members after scale to 2 on beta: %v", got)
	}
	if reg.Instances["a"] == nil || len(reg.Instances) != 1 {
		t.Errorf("this host's instances changed: %v", slices.Sorted(maps.Keys(reg.Instances)))
	}
}

// TestPlanReplicasWithPrefix: a prefix names the series scale plans, other
// members of the group (the default series among them) left alone.
func TestPlanReplicasWithPrefix(t *testing.T) {
	reg := &config.Registry{Instances: map[string]*config.Instance{}}
	for _, id := range []string{"web-1", "web-b-1", "web-b-3"} {
		reg.Instances[id] = &config.Instance{ID: id, Group: "web"}
	}
	p, err := PlanReplicas(reg, "web", "web-b", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Start, []string{"web-b-2"}) || !slices.Equal(p.Stop, []string{"web-b-3"}) || !slices.Equal(p.Keep, []string{"web-b-1"}) {
		t.Errorf("PlanReplicas(web-b, 2) = %+v", p)
	}
	for _, tc := range []struct {
		ids  []string
		want string
	}{
		{[]string{"web-b-1", "web-b-2", "canary"}, "web-b"},
		{[]string{"web-b-x"}, ""},
		{[]string{"a-1", "b-1"}, ""},
	} {
		got, err := ReplicaSeries(tc.ids)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("ReplicaSeries(%v) = %q, %v; want %q", tc.ids, got, err, tc.want)
		}
	}
}
