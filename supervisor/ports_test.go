package supervisor

import (
	"context"
	"net"
	"os"
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

func TestListeningInodes(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F41 01 00000000:00000000 00:00000000 00000000     0        0 5678 1 0000000000000000 20 4 30 10 -1
`)
	got := map[uint64]int{}
	if err := listeningInodes(table, got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[1234] != 8001 {
		t.Fatalf("listening inodes = %v, want 1234 on 8001 (not the established 5678)", got)
	}
	if err := listeningInodes([]byte("header\n 0: 0100007F:1F41 0 0A 0 0 0 0 0 x\n"), got); err == nil {
		t.Error("an unreadable inode was accepted")
	}
}

// TestHostPortsListeningByEach: this process's listener is found among
// its own sockets, a connection it made is not a listener, and a pid that
// does not exist listens on nothing.
func TestHostPortsListeningByEach(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	self, gone := int32(os.Getpid()), int32(1<<22+7)
	got, err := HostPorts{}.ListeningByEach(context.Background(), []int32{self, gone})
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	local := c.LocalAddr().(*net.TCPAddr).Port
	if !got[self][port] || got[self][local] {
		t.Errorf("this process listens on %v, want %d and not %d", got[self], port, local)
	}
	if len(got[gone]) != 0 {
		t.Errorf("a pid that does not exist listens on %v", got[gone])
	}
}
