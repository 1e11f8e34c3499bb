package units

import (
	"path"
	"slices"
	"strings"
	"testing"
	"time"
)

var privateNetwork = PrivateNetwork{
	ID:      "processor-1",
	Inbound: []Forward{{Name: "api", HostPort: 8001, InsidePort: 8000}, {Name: "zmq", HostPort: 5556, InsidePort: 5555}},
	Links:   []Link{{Name: "mongo", Port: 27017, Address: "127.0.0.1:27017"}, {Name: "qdrant", Port: 6333, Address: "db.example:6333"}},
}

func TestRenderInstanceDropInStop(t *testing.T) {
	a, err := RenderInstanceDropIn(InstanceDropIn{ID: "a", Command: []string{"/bin/kato"}, StopTimeout: 10 * time.Second})
	if err != nil || !strings.Contains(string(a), "TimeoutStopSec=10s\n") || strings.Contains(string(a), "ExecStop") {
		t.Errorf("generation A drop-in (%v):\n%s", err, a)
	}
	b, err := RenderInstanceDropIn(InstanceDropIn{ID: "b", Command: []string{"/bin/kato"}, StopTimeout: 3 * time.Second, HangsOnSIGTERM: true})
	for _, want := range []string{"ExecStop=/bin/sh -c 'kill -TERM ${MAINPID};", "timeout 3 tail --pid=${MAINPID}", "kill -KILL ${MAINPID}", "SuccessExitStatus=SIGKILL\n", "RestartForceExitStatus=SIGKILL\n", "TimeoutStopSec=8s\n"} {
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("generation B drop-in lacks %q (%v):\n%s", want, err, b)
		}
	}
	if _, err := RenderInstanceDropIn(InstanceDropIn{ID: "b", Command: []string{"/bin/kato"}, HangsOnSIGTERM: true}); err == nil {
		t.Error("a processor that hangs on SIGTERM without a stop timeout was accepted")
	}
}

func TestPrivateNetworkNames(t *testing.T) {
	n := privateNetwork
	if got, want := n.Members(), []string{
		"kato@processor-1.service", "kato-proxy@processor-1.api.service", "kato-proxy@processor-1.zmq.service",
		"kato-link@processor-1.mongo.socket", "kato-link@processor-1.qdrant.socket",
	}; !slices.Equal(got, want) {
		t.Errorf("Members() = %q, want %q", got, want)
	}
	for _, u := range n.Units() {
		if !IsNetworkUnitOf(u, "processor-1") {
			t.Errorf("%s is not recognised as a network unit of processor-1", u)
		}
		if IsNetworkUnitOf(u, "processor") || IsNetworkUnitOf(u, "processor-10") {
			t.Errorf("%s is taken for another instance's", u)
		}
		if err := checkUnitName(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range n.Units() {
		if id, ok := NetworkUnitID(u); !ok || id != "processor-1" {
			t.Errorf("NetworkUnitID(%s) = %q, %v", u, id, ok)
		}
	}
	for _, u := range []string{"kato@processor-1.service", "kato-proxy@.api.socket", "kato-link@a b.mongo.socket", "other@x.y.socket"} {
		if id, ok := NetworkUnitID(u); ok {
			t.Errorf("NetworkUnitID(%s) = %q", u, id)
		}
	}
	if len(n.Units()) != 8 {
		t.Errorf("Units() = %q", n.Units())
	}
}

// TestRenderPrivateNetwork reads every rendered drop-in back and checks that
// each member of the namespace names every other member, which
// JoinsNamespaceOf= needs since it is not transitive, and that the ports are
// where the processor contract needs them.
func TestRenderPrivateNetwork(t *testing.T) {
	n := privateNetwork
	dropIns, err := RenderPrivateNetwork(n)
	if err != nil {
		t.Fatal(err)
	}
	byUnit := map[string]string{}
	for _, d := range dropIns {
		byUnit[d.Unit] = string(d.Content)
	}
	if len(byUnit) != 8 {
		t.Fatalf("rendered %d drop-ins, want 8: %q", len(byUnit), byUnit)
	}
	instance, err := RenderInstanceDropIn(InstanceDropIn{ID: n.ID, Command: []string{"/usr/bin/kato"}, Network: &n, StopTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	byUnit["kato@processor-1.service"] = string(instance)
	for _, m := range n.Members() {
		for _, other := range n.Members() {
			line := "JoinsNamespaceOf=" + other + "\n"
			if has := strings.Contains(byUnit[m], line); has != (m != other) {
				t.Errorf("%s: JoinsNamespaceOf=%s present %v", m, other, has)
			}
		}
	}
	for unit, want := range map[string][]string{
		"kato@processor-1.service":             {"PrivateNetwork=yes\n", "TimeoutStopSec=3s\n", "Wants=kato-proxy@processor-1.api.socket\n", "After=kato-link@processor-1.mongo.socket\n", "Wants=kato-link@processor-1.mongo.service\n"},
		"kato-proxy@processor-1.api.socket":    {"ListenStream=8001\n", "PartOf=kato@processor-1.service\n"},
		"kato-proxy@processor-1.api.service":   {`ExecStart="/usr/lib/systemd/systemd-socket-proxyd" "127.0.0.1:8000"` + "\n", "Requires=kato@processor-1.service\n"},
		"kato-proxy@processor-1.zmq.service":   {`"127.0.0.1:5555"`},
		"kato-link@processor-1.mongo.socket":   {"ListenStream=127.0.0.1:27017\n"},
		"kato-link@processor-1.qdrant.service": {`ExecStart="/usr/lib/systemd/systemd-socket-proxyd" "db.example:6333"` + "\n", "PartOf=kato@processor-1.service\n"},
	} {
		for _, w := range want {
			if !strings.Contains(byUnit[unit], w) {
				t.Errorf("%s lacks %q:\n%s", unit, w, byUnit[unit])
			}
		}
	}
	for _, bad := range []PrivateNetwork{
		{ID: "a/b"},
		{ID: "a", Inbound: []Forward{{Name: "API", HostPort: 1, InsidePort: 1}}},
		{ID: "a", Inbound: []Forward{{Name: "api", HostPort: 0, InsidePort: 1}}},
		{ID: "a", Links: []Link{{Name: "m", Port: 1, Address: "x\ny"}}},
		{ID: "a", Links: []Link{{Name: "m", Port: 1, Address: "h:1"}, {Name: "m", Port: 2, Address: "h:2"}}},
	} {
		if _, err := RenderPrivateNetwork(bad); err == nil {
			t.Errorf("RenderPrivateNetwork(%+v) accepted", bad)
		}
	}
}

func TestNetworkPatternsMatchEveryNetworkUnit(t *testing.T) {
	for _, unit := range []string{ProxySocket("p1", "api"), ProxyService("p1", "zmq"), LinkSocket("p1", "mongo"), LinkService("p1", "mongo")} {
		matched := false
		for _, p := range NetworkPatterns() {
			if ok, _ := path.Match(p, unit); ok {
				matched = true
			}
		}
		if !matched {
			t.Errorf("NetworkPatterns() %q match no %s", NetworkPatterns(), unit)
		}
	}
	for _, p := range NetworkPatterns() {
		for _, other := range []string{InstanceUnit("p1"), WorkerUnit(1), GroupTarget("g")} {
			if ok, _ := path.Match(p, other); ok {
				t.Errorf("pattern %q matches %s", p, other)
			}
		}
	}
}
