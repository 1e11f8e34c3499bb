// Command kgservicefake serves the KG service test double on --listen so
// that integration tests can run real kg-worker processes against it. Once
// listening it prints "listening on ADDR" to stdout, which names the port
// when ADDR asked for port 0. It stops cleanly on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/internal/graceful"
	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "kgservicefake: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	flags := pflag.NewFlagSet("kgservicefake", pflag.ContinueOnError)
	listen := flags.String("listen", "127.0.0.1:8088", "address to listen on (host:port; port 0 picks a free one)")
	latency := flags.Int("latency-ms", 0, "initial latency of every ingest in milliseconds")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *latency < 0 {
		return fmt.Errorf("invalid --latency-ms %d: must be zero or more", *latency)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	fake := kgservicefake.New()
	fake.SetControl(kgservicefake.Control{LatencyMS: *latency})
	srv := graceful.Server(fake)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("listening on %s\n", ln.Addr())

	select {
	case err := <-served:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}
