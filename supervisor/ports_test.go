package supervisor

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
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

// countingRead is HostPorts' read of sockets that counts the processes it
// reads.
func countingRead(n *int) func(ctx context.Context, pids []int32) (map[int32][]listenSocket, error) {
	return func(ctx context.Context, pids []int32) (map[int32][]listenSocket, error) {
		*n += len(pids)
		return HostPorts{}.listeningSockets(ctx, pids)
	}
}

// TestListenMemoRemembersAndRechecks: a socket found is remembered, so the
// next ask reads no socket table; once it is closed and another listener
// takes its descriptor on another port, the old port is not reported and
// the new one is found; a restarted process (another start) is read again
// even while the socket is the same.
func TestListenMemoRemembersAndRechecks(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ln.Close() }()
	self, t0 := int32(os.Getpid()), time.Unix(1_700_000_000, 0)
	portA := ln.Addr().(*net.TCPAddr).Port
	var reads int
	memo := &listenMemo{read: countingRead(&reads)}
	ask := func(a listenAsk) bool {
		t.Helper()
		got, err := memo.listening(ctx, []listenAsk{a})
		if err != nil {
			t.Fatal(err)
		}
		return got[a]
	}
	if !ask(listenAsk{self, t0, portA}) || reads != 1 {
		t.Fatalf("first ask: listening %v after %d reads, want true after 1", ask(listenAsk{self, t0, portA}), reads)
	}
	if !ask(listenAsk{self, t0, portA}) || reads != 1 {
		t.Fatalf("second ask: %d reads, want the remembered socket checked without a read", reads)
	}
	// The port changes: the listener is closed and another takes its
	// place (often the same descriptor number).
	ln.Close()
	if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	portB := ln.Addr().(*net.TCPAddr).Port
	if ask(listenAsk{self, t0, portA}) {
		t.Errorf("port %d reported listening after its socket was closed", portA)
	}
	if !ask(listenAsk{self, t0, portB}) {
		t.Errorf("the new port %d is not found", portB)
	}
	before := reads
	if !ask(listenAsk{self, t0.Add(time.Second), portB}) || reads != before+1 {
		t.Errorf("a process with another start: %d reads, want it read again (1)", reads-before)
	}
}

// TestListenMemoProcessGone: a remembered process that exited meanwhile
// listens on nothing, and is forgotten.
func TestListenMemoProcessGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := int32(cmd.Process.Pid)
	t0 := time.Unix(1_700_000_000, 0)
	var reads int
	memo := &listenMemo{read: countingRead(&reads), byID: map[int32]memoEntry{
		gone: {started: t0, socks: []listenSocket{{fd: 3, inode: 1, port: 8600}}},
	}}
	a := listenAsk{gone, t0, 8600}
	got, err := memo.listening(context.Background(), []listenAsk{a})
	if err != nil {
		t.Fatal(err)
	}
	if got[a] || reads != 1 {
		t.Errorf("a process gone: listening %v after %d reads, want false after 1", got[a], reads)
	}
	if _, ok := memo.byID[gone]; ok {
		t.Errorf("a process gone is still remembered")
	}
}
