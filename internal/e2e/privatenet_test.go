package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// TestPrivateNetworkReadinessInsideTheNamespace: a start on a private
// network waits for the processor's health request made inside its network
// namespace, so the forwarder of the API port is not started by the wait;
// it starts on the first request through the host port, which the
// processor then answers. The forwarders of shared services start with
// the processor. The same holds for a batch (apply), and for a
// processor that takes a second to listen: ready means answering.
func TestPrivateNetworkReadinessInsideTheNamespace(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.ConfigWithMongo + `
[processors.slow]
command = ["/opt/kato-test/fakeprocessor", "--delay", "1s"]
generation = "b"
ready_timeout = 20.0
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m.must("systemctl", "start", testbed.MongoUnit)
	answers := func(t *testing.T, url string) {
		t.Helper()
		// One request, no retry: the start said the processor was ready.
		if r := m.exec("curl", "-sf", "-o", "/dev/null", "--max-time", "5", url); r.code != 0 {
			t.Errorf("GET %s right after the start: %s", url, r)
		}
	}
	run := func(name string, f func(t *testing.T)) { m.subtest(t, name, f, nil) }

	run("one start", func(t *testing.T) {
		m.mustKM("start", "--processor", "a", "--network", "private", "--id", "pa", "--port", "8030")
		m.mustKM("start", "--processor", "slow", "--network", "private", "--id", "ps", "--port", "8031")
		for _, id := range []string{"pa", "ps"} {
			if s := m.activeState("kato-proxy@" + id + ".api.service"); s != "inactive" {
				t.Errorf("the API forwarder of %s is %s after the start, want inactive: the wait crossed it", id, s)
			}
			if s := m.activeState("kato-proxy@" + id + ".api.socket"); s != "active" {
				t.Errorf("the API socket of %s is %s, want active", id, s)
			}
		}
		// The MongoDB forwarder starts beside the processor, not on its
		// first connection: ps's processor (generation B) makes none.
		if s := m.activeState("kato-link@ps.mongo.service"); s != "active" {
			t.Errorf("the MongoDB forwarder of ps is %s after the start, want active", s)
		}
		answers(t, "http://127.0.0.1:8030/pa/ping")
		answers(t, "http://127.0.0.1:8031/health")
		if s := m.activeState("kato-proxy@pa.api.service"); s != "active" {
			t.Errorf("the API forwarder of pa is %s after a request through the host port, want active", s)
		}
	})

	run("apply", func(t *testing.T) {
		var f strings.Builder
		f.WriteString("instances:\n")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(&f, "  - {id: f%d, port: %d, processor: slow, network: private}\n", i, 8040+i)
		}
		if err := m.WriteFile("/root/private.yaml", []byte(f.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		m.mustKM("apply", "-f", "/root/private.yaml")
		for i := 0; i < 3; i++ {
			if s := m.activeState(fmt.Sprintf("kato-proxy@f%d.api.service", i)); s != "inactive" {
				t.Errorf("the API forwarder of f%d is %s after apply, want inactive", i, s)
			}
			answers(t, fmt.Sprintf("http://127.0.0.1:%d/health", 8040+i))
		}
	})
}
