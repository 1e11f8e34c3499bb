// Mongostandin stands in for MongoDB in tests: it accepts TCP connections on
// --listen (default 127.0.0.1:27017), echoes what they send and keeps them
// open until the peer closes them. That is all the KATO processor test
// double needs of MongoDB: a server that accepts its connection and
// answers on it (the double's handshake is a line it expects back). It
// speaks no MongoDB protocol.
//
// Each accepted connection is logged with its peer, so that tests can see
// from the journal that a processor reached it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	listen := flag.String("listen", "127.0.0.1:27017", "address to accept connections on")
	flag.Parse()
	if err := serve(ctx, *listen, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "mongostandin: %v\n", err)
		os.Exit(1)
	}
}

// serve accepts connections on addr until ctx ends.
func serve(ctx context.Context, addr string, log io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "mongostandin: accepting connections on %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(log, "mongostandin: connection from %s\n", conn.RemoteAddr())
		go func() {
			defer conn.Close()
			io.Copy(conn, conn)
		}()
	}
}
