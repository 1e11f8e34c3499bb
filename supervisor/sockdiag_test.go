package supervisor

import (
	"context"
	"net"
	"os"
	"testing"
)

// ListeningBy, which a batch's wait asks once per instance that answers,
// asks the kernel for the listening sockets instead of reading the socket
// tables of /proc, which walk every socket of the host: with 200 processors
// starting, those reads took 5.9s of apply's 7s of CPU. With the tables out
// of reach (gopsutil reads them below HOST_PROC) it still finds the
// listener, and not the ports of connected sockets.
func TestListeningByAsksTheKernelNotTheSocketTables(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	clientPort := client.LocalAddr().(*net.TCPAddr).Port
	var port6 int
	if ln6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		defer ln6.Close()
		port6 = ln6.Addr().(*net.TCPAddr).Port
	}

	t.Setenv("HOST_PROC", t.TempDir())
	ports, err := HostPorts{}.ListeningBy(context.Background(), int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if !ports[port] {
		t.Errorf("ListeningBy(self) = %v, want port %d (listening) in it", ports, port)
	}
	if port6 != 0 && !ports[port6] {
		t.Errorf("ListeningBy(self) = %v, want IPv6 port %d (listening) in it", ports, port6)
	}
	if ports[clientPort] {
		t.Errorf("ListeningBy(self) = %v, want no port %d (a connected socket)", ports, clientPort)
	}
}

// A process that is gone listens on nothing, without an error.
func TestListeningByOfAGoneProcess(t *testing.T) {
	ports, err := HostPorts{}.ListeningBy(context.Background(), 1<<22+12345)
	if err != nil || len(ports) != 0 {
		t.Fatalf("ListeningBy(gone) = %v, %v; want nothing, no error", ports, err)
	}
}
