package supervisor

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// A lone start whose processor opens its port between two ticks sends the
// health request when the port opens, not at the next tick.
func TestWaitReadyAsksWhenThePortOpens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // closed: connects are refused until the "processor" listens

	fake := newFakeSystemd()
	fake.units["kato@a.service"] = &UnitState{Name: "kato@a.service", LoadState: "loaded", ActiveState: "active", SubState: "running"}
	// The "processor" is this test's process, as the unit's.
	procs := &fakeProcesses{m: map[string]UnitProcesses{"kato@a.service": {MainPID: int32(os.Getpid()), PIDs: []int32{int32(os.Getpid())}}}}
	m := &Manager{Systemd: fake, Ports: HostPorts{}, Processes: procs, PollInterval: 10 * time.Second}
	inst := config.Instance{ID: "a", Unit: "kato@a.service"}
	su := &instanceSetup{proc: config.Processor{Ready: "GET /health", ReadyTimeout: 30}, readyPort: port, listenPort: port}

	opened := make(chan time.Time, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Error(err)
			opened <- time.Time{}
			return
		}
		opened <- time.Now()
		http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	}()
	if err := m.waitReady(context.Background(), inst, su, 0, 0); err != nil {
		t.Fatal(err)
	}
	at := <-opened
	// The next tick would be 10s after the first health request.
	if late := time.Since(at); late > 2*time.Second {
		t.Errorf("ready %s after the port opened, want well before the next tick", late)
	}
}
