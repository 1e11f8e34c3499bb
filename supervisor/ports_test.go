package supervisor

import (
	"context"
	"net"
	"testing"
)

// TestHostPortsInUse checks the bind probe against listeners on one
// loopback address each: a bind on every address must see them.
func TestHostPortsInUse(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("no listener on %s: %v", addr, err)
			continue
		}
		port := ln.Addr().(*net.TCPAddr).Port
		inUse, err := HostPorts{}.InUse(context.Background(), port)
		if err != nil || !inUse {
			t.Errorf("InUse(%d) with a listener on %s = %v, %v; want true", port, ln.Addr(), inUse, err)
		}
		ln.Close()
		if inUse, err := (HostPorts{}).InUse(context.Background(), port); err != nil || inUse {
			t.Errorf("InUse(%d) after its listener closed = %v, %v; want false", port, inUse, err)
		}
	}
}
