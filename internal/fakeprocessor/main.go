// Fakeprocessor is a test double of the KATO processor. Tests build it and
// run it in place of the real processor as kato@ID.service, to check what
// kato-manager gives a processor and how it supervises one.
//
// It reads the environment kato-manager renders for a processor, refuses to
// start (exit status 2) when that environment is inconsistent, logs one line
// to standard output, and then serves on REST_PORT:
//
//	GET  /{PROCESSOR_ID}/ping, GET /kato-api/ping  {"status":"okay","id":...}
//	GET  /env                                      the processor variables that were set
//	POST /{PROCESSOR_ID}/learn                     adds one to a counter kept in $STATE_DIRECTORY/learned
//	GET  /{PROCESSOR_ID}/learned                   that counter
//
// It also accepts and closes TCP connections on ZMQ_PORT, so that both ports
// are really held. SIGTERM shuts it down gracefully with exit status 0.
//
// Behaviour switches, read at start from the environment or, taking
// precedence, from flags (per-instance command overrides select them):
//
//	FAKEPROCESSOR_CRASH_AFTER=<duration>  --crash-after  exit with status 3 after the delay
//	FAKEPROCESSOR_NEVER_LISTEN=1          --never-listen keep running without opening any port
//	FAKEPROCESSOR_DELAY=<duration>        --delay        wait before opening the ports
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// Exit statuses of the processor.
const (
	exitOK       = 0
	exitFailure  = 1 // a port could not be opened or serving failed
	exitBadSetup = 2 // the environment or the flags are invalid
	exitCrash    = 3 // crashed on purpose, see --crash-after
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// behaviour holds the switches that make the processor misbehave.
type behaviour struct {
	crashAfter  time.Duration
	neverListen bool
	delay       time.Duration
}

// parseBehaviour reads the behaviour switches from the environment and then
// from args, whose flags take precedence.
func parseBehaviour(args []string, lookup func(string) (string, bool), stderr io.Writer) (behaviour, error) {
	var b behaviour
	var err error
	if b.crashAfter, err = envDuration(lookup, "FAKEPROCESSOR_CRASH_AFTER"); err != nil {
		return b, err
	}
	if b.delay, err = envDuration(lookup, "FAKEPROCESSOR_DELAY"); err != nil {
		return b, err
	}
	if v, ok := lookup("FAKEPROCESSOR_NEVER_LISTEN"); ok && v != "" {
		if b.neverListen, err = strconv.ParseBool(v); err != nil {
			return b, fmt.Errorf("invalid FAKEPROCESSOR_NEVER_LISTEN %q: must be 1, 0, true or false", v)
		}
	}

	fs := flag.NewFlagSet("fakeprocessor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&b.crashAfter, "crash-after", b.crashAfter, "exit with status 3 after this long (0: never)")
	fs.BoolVar(&b.neverListen, "never-listen", b.neverListen, "keep running without opening any port")
	fs.DurationVar(&b.delay, "delay", b.delay, "wait this long before opening the ports")
	if err := fs.Parse(args); err != nil {
		return b, err
	}
	if fs.NArg() > 0 {
		return b, fmt.Errorf("unexpected argument %q: fakeprocessor takes only flags", fs.Arg(0))
	}
	if b.crashAfter < 0 {
		return b, fmt.Errorf("invalid --crash-after %s: must not be negative", b.crashAfter)
	}
	if b.delay < 0 {
		return b, fmt.Errorf("invalid --delay %s: must not be negative", b.delay)
	}
	return b, nil
}

// envDuration parses the duration in the environment variable name; unset
// or empty means zero.
func envDuration(lookup func(string) (string, bool), name string) (time.Duration, error) {
	v, ok := lookup(name)
	if !ok || v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q: must be a duration such as 500ms or 5s", name, v)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid %s %q: must not be negative", name, v)
	}
	return d, nil
}

// run is the processor: it returns the exit status once ctx ends (SIGTERM),
// the crash delay passes or serving fails.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	b, err := parseBehaviour(args, lookup, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "fakeprocessor: %v\n", err)
		return exitBadSetup
	}
	s, err := loadSettings(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "fakeprocessor: %v\n", err)
		return exitBadSetup
	}
	fmt.Fprintf(stdout, "fakeprocessor started: id=%s name=%q rest_port=%d zmq_port=%d\n",
		s.id, s.name, s.restPort, s.zmqPort)

	var crash <-chan time.Time
	if b.crashAfter > 0 {
		timer := time.NewTimer(b.crashAfter)
		defer timer.Stop()
		crash = timer.C
	}
	crashed := func() int {
		fmt.Fprintf(stderr, "fakeprocessor: crashing after %s as asked\n", b.crashAfter)
		return exitCrash
	}

	if b.delay > 0 {
		delay := time.NewTimer(b.delay)
		defer delay.Stop()
		select {
		case <-ctx.Done():
			return exitOK
		case <-crash:
			return crashed()
		case <-delay.C:
		}
	}
	if b.neverListen {
		select {
		case <-ctx.Done():
			return exitOK
		case <-crash:
			return crashed()
		}
	}

	restLn, err := net.Listen("tcp", ":"+strconv.Itoa(s.restPort))
	if err != nil {
		fmt.Fprintf(stderr, "fakeprocessor: listen on REST_PORT %d: %v\n", s.restPort, err)
		return exitFailure
	}
	zmqLn, err := net.Listen("tcp", ":"+strconv.Itoa(s.zmqPort))
	if err != nil {
		restLn.Close()
		fmt.Fprintf(stderr, "fakeprocessor: listen on ZMQ_PORT %d: %v\n", s.zmqPort, err)
		return exitFailure
	}
	defer zmqLn.Close()
	go acceptAndClose(zmqLn)

	srv := &http.Server{Handler: newProcessor(s).handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(restLn) }()

	select {
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			fmt.Fprintf(stderr, "fakeprocessor: shut down: %v\n", err)
			return exitFailure
		}
		return exitOK
	case <-crash:
		return crashed()
	case err := <-served:
		fmt.Fprintf(stderr, "fakeprocessor: serve on REST_PORT %d: %v\n", s.restPort, err)
		return exitFailure
	}
}

// acceptAndClose holds a port: it accepts every connection and closes it at
// once, until ln is closed.
func acceptAndClose(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Transient, such as running out of file descriptors.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conn.Close()
	}
}
