package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/units"
)

// Once a private network's processor answered inside its namespace, its
// start asks whether the host ports' sockets listen: one listing of them,
// not a read of every property of each (which systemd writes out in full),
// and only a socket that failed is read, for its result.
func TestHostPortsListenListsTheSockets(t *testing.T) {
	sd := newFakeSystemd()
	m := &Manager{Systemd: sd}
	n := &units.PrivateNetwork{ID: "p1", Inbound: []units.Forward{{Name: "api", HostPort: 8100, InsidePort: 8000}, {Name: "zmq", HostPort: 8101, InsidePort: 5555}}}
	api, zmq := units.ProxySocket("p1", "api"), units.ProxySocket("p1", "zmq")
	ctx := context.Background()

	sd.set(api, func(u *UnitState) { u.ActiveState, u.SubState = "active", "listening" })
	if done, err := m.hostPortsListen(ctx, n, true); done || err != nil {
		t.Fatalf("zmq socket not loaded: hostPortsListen = %v, %v; want false, nil", done, err)
	}
	sd.set(zmq, func(u *UnitState) { u.ActiveState, u.SubState = "active", "listening" })
	if done, err := m.hostPortsListen(ctx, n, true); !done || err != nil {
		t.Fatalf("both sockets listening: hostPortsListen = %v, %v; want true, nil", done, err)
	}
	if sd.unitCalls != 0 || sd.listCalls != 2 {
		t.Errorf("two looks at two sockets made %d property reads and %d listings; want 0 and 2", sd.unitCalls, sd.listCalls)
	}

	sd.set(zmq, func(u *UnitState) { u.ActiveState, u.SubState, u.Result = "failed", "failed", "resources" })
	done, err := m.hostPortsListen(ctx, n, true)
	if done || !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), zmq+" failed (result resources)") || !strings.Contains(err.Error(), "host port 8101") {
		t.Fatalf("zmq socket failed: hostPortsListen = %v, %v; want an ErrNotReady naming %s, its result and port 8101", done, err, zmq)
	}
}
