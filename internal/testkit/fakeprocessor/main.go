// Fakeprocessor is a test double of the KATO processor, following
// shared/contracts/kato-processor.md in both generations, faults included.
// Tests build it and run it in place of the real processor as
// kato@ID.service, to check what kato-manager gives a processor and how it
// supervises one. The generation is chosen with --generation a|b (or
// FAKEPROCESSOR_GENERATION); b is the default.
//
// Generation A (the ZMQ engine and REST gateway of the multi-instance guide):
//
//   - reads its settings only from MANIFEST; a missing required key (all 15
//     but search_depth and process_predictions) makes it exit 1 naming the
//     key ("Failed to start KATO Engine: 'sort'"), and so does a missing
//     LOG_LEVEL, HOSTNAME or MONGO_BASE_URL;
//   - connects to MONGO_BASE_URL before opening any port and exits 1 when
//     MongoDB does not accept the connection within --mongo-timeout (33s);
//   - runs its engine on ZMQ_PORT and its gateway on REST_PORT, both on all
//     interfaces; the gateway always talks to the engine at 127.0.0.1:5555,
//     whatever ZMQ_PORT says, and fails every /{id}/... call with HTTP 500
//     after --gateway-timeout (17s) when no engine answers there;
//   - GET /kato-api/ping answers from the gateway; GET /{id}/ping answers
//     200 for any id, echoing it, with the name of the engine that answered;
//     POST /{id}/learn and /{id}/observe, GET /{id}/status and the rest go
//     to the engine;
//   - exits 0 on SIGTERM, or with --hang-on-sigterm stops serving and hangs
//     until SIGKILL, as it was seen to under load.
//
// Generation B (FastAPI): reads one variable per setting and PORT, ignores
// MANIFEST, REST_PORT and ZMQ_PORT, serves /health, /status, /observe,
// /learn, ... without the id prefix on all interfaces, and does not exit on
// SIGTERM: it stops serving and hangs until SIGKILL.
//
// Generation C (KATO 3.x, one FastAPI service over shared stores): reads
// PORT, or uvicorn's --port, which takes precedence, and --workers (the
// double serves one listener per worker on the same port, each with its
// own memory, as uvicorn's worker processes); reads generation B's setting
// variables and AUTO_LEARN_*, STM_MODE, SESSION_TTL and
// SESSION_AUTO_EXTEND as the defaults of new sessions, SERVICE_NAME
// (default kato) naming the knowledge base {node_id}_{SERVICE_NAME}; keeps
// sessions and learned patterns in the Redis of REDIS_URL when it is set
// (and REDIS_ENABLED is not false), so that any worker or replica serves
// any session, and in each worker's memory when not. Endpoints: POST
// /sessions, GET and DELETE /sessions/{id}, POST /sessions/{id}/config,
// /observe, /learn, GET /sessions/{id}/stm, /predictions, GET
// /sessions/count, /status, /health and /metrics (JSON); an unknown or
// expired session answers 404. GET /health answers 200 whatever the
// state; its body's "status" is "unhealthy", with "issues", when the
// sessions' Redis does not answer or the double is told to be. On SIGTERM
// it stops accepting, lets requests finish for up to
// --timeout-graceful-shutdown seconds (30) and exits 0. The websocket /ws
// is not played.
//
// For tests only, in both generations: every answer from an engine carries
// the header X-Fake-Engine with the PROCESSOR_ID of the process that
// answered; GET /env returns the processor variables the process received;
// POST learn adds one to a counter kept in $STATE_DIRECTORY/learned (the
// double's store, where the real processor uses MongoDB), and GET
// /{id}/learned or /learned returns it. The double exits 2 when the
// environment lacks what kato-manager must always give (PROCESSOR_ID, the
// port, STATE_DIRECTORY) or a flag is invalid.
//
// Behaviour switches, read at start from the environment or, taking
// precedence, from flags (per-instance command overrides select them):
//
//	FAKEPROCESSOR_CRASH_AFTER=<duration>  --crash-after  exit with status 3 after the delay
//	FAKEPROCESSOR_NEVER_LISTEN=1          --never-listen keep running without opening any port
//	FAKEPROCESSOR_DELAY=<duration>        --delay        wait before opening the ports
//	FAKEPROCESSOR_HANG_ON_SIGTERM=1       --hang-on-sigterm  generation a: on SIGTERM, close and then
//	                                                     hang until SIGKILL, as it was seen to under load
//	FAKEPROCESSOR_UNHEALTHY_FOR=<duration> --unhealthy-for generation c: /health says "unhealthy" for this
//	                                                     long after start
//
// and, while it runs, POST /fake/hang makes it stop answering (generation
// C: its /health; A and B: every request) while it keeps running, and for
// generation C POST /fake/unhealthy makes its /health say "unhealthy" from
// then on.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// Exit statuses of the processor.
const (
	exitOK       = 0
	exitFailure  = 1 // what the real processor does on a fault: missing setting, no MongoDB, a port taken
	exitBadSetup = 2 // the environment kato-manager must give is incomplete, or the flags are invalid
	exitCrash    = 3 // crashed on purpose, see --crash-after
)

// The contract's timings of generation A.
const (
	defaultMongoTimeout   = 33 * time.Second
	defaultGatewayTimeout = 17 * time.Second
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-signals; cancel() }()
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	os.Exit(code)
}

// behaviour holds the generation and the switches that make the processor
// misbehave.
type behaviour struct {
	generation     string
	crashAfter     time.Duration
	neverListen    bool
	delay          time.Duration
	hangOnSIGTERM  bool
	mongoTimeout   time.Duration
	gatewayTimeout time.Duration
	// port, workers and gracefulShutdown are uvicorn's --port, --workers
	// and --timeout-graceful-shutdown (generation C).
	port, workers    int
	gracefulShutdown time.Duration
	// unhealthyFor is how long after start generation C's /health says
	// "unhealthy".
	unhealthyFor time.Duration
	// engineAddress is where a generation-A gateway looks for its engine:
	// always 127.0.0.1:5555, changed only by unit tests of the double.
	engineAddress string
}

// parseBehaviour reads the behaviour switches from the environment and then
// from args, whose flags take precedence.
func parseBehaviour(args []string, lookup func(string) (string, bool), stderr io.Writer) (behaviour, error) {
	b := behaviour{generation: "b", mongoTimeout: defaultMongoTimeout, gatewayTimeout: defaultGatewayTimeout, engineAddress: "127.0.0.1:5555"}
	var err error
	if v, ok := lookup("FAKEPROCESSOR_GENERATION"); ok && v != "" {
		b.generation = v
	}
	if b.crashAfter, err = envDuration(lookup, "FAKEPROCESSOR_CRASH_AFTER"); err != nil {
		return b, err
	}
	if b.delay, err = envDuration(lookup, "FAKEPROCESSOR_DELAY"); err != nil {
		return b, err
	}
	if b.unhealthyFor, err = envDuration(lookup, "FAKEPROCESSOR_UNHEALTHY_FOR"); err != nil {
		return b, err
	}
	if v, ok := lookup("FAKEPROCESSOR_NEVER_LISTEN"); ok && v != "" {
		if b.neverListen, err = strconv.ParseBool(v); err != nil {
			return b, fmt.Errorf("invalid FAKEPROCESSOR_NEVER_LISTEN %q: must be 1, 0, true or false", v)
		}
	}
	if v, ok := lookup("FAKEPROCESSOR_HANG_ON_SIGTERM"); ok && v != "" {
		if b.hangOnSIGTERM, err = strconv.ParseBool(v); err != nil {
			return b, fmt.Errorf("invalid FAKEPROCESSOR_HANG_ON_SIGTERM %q: must be 1, 0, true or false", v)
		}
	}

	fs := flag.NewFlagSet("fakeprocessor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&b.generation, "generation", b.generation, "processor generation to play: a, b or c")
	fs.DurationVar(&b.crashAfter, "crash-after", b.crashAfter, "exit with status 3 after this long (0: never)")
	fs.BoolVar(&b.neverListen, "never-listen", b.neverListen, "keep running without opening any port")
	fs.DurationVar(&b.delay, "delay", b.delay, "wait this long before opening the ports")
	fs.BoolVar(&b.hangOnSIGTERM, "hang-on-sigterm", b.hangOnSIGTERM, "generation a: hang after closing on SIGTERM until SIGKILL")
	fs.DurationVar(&b.mongoTimeout, "mongo-timeout", b.mongoTimeout, "generation a: how long MongoDB may refuse connections before exit 1")
	fs.DurationVar(&b.gatewayTimeout, "gateway-timeout", b.gatewayTimeout, "generation a: how long the gateway waits for its engine before HTTP 500")
	fs.DurationVar(&b.unhealthyFor, "unhealthy-for", b.unhealthyFor, "generation c: /health says unhealthy for this long after start")
	// uvicorn's flags, which kato-manager appends for generation C.
	fs.IntVar(&b.port, "port", 0, "generation c: the port (uvicorn's --port; default: PORT)")
	fs.IntVar(&b.workers, "workers", 1, "generation c: uvicorn worker count")
	fs.String("host", "0.0.0.0", "generation c: uvicorn's --host; the double listens on all interfaces")
	fs.Int("limit-concurrency", 0, "generation c: uvicorn's --limit-concurrency (not enforced)")
	fs.Int("timeout-keep-alive", 5, "generation c: uvicorn's --timeout-keep-alive (not enforced)")
	graceful := fs.Int("timeout-graceful-shutdown", 30, "generation c: seconds requests may finish after SIGTERM")
	if err := fs.Parse(args); err != nil {
		return b, err
	}
	if fs.NArg() > 0 {
		return b, fmt.Errorf("unexpected argument %q: fakeprocessor takes only flags", fs.Arg(0))
	}
	if b.generation != "a" && b.generation != "b" && b.generation != "c" {
		return b, fmt.Errorf("invalid --generation %q: must be a, b or c", b.generation)
	}
	if b.workers < 1 || b.workers > 64 {
		return b, fmt.Errorf("invalid --workers %d: must be between 1 and 64", b.workers)
	}
	if b.port < 0 || b.port > 65535 {
		return b, fmt.Errorf("invalid --port %d: must be a port number between 1 and 65535", b.port)
	}
	if *graceful < 0 {
		return b, fmt.Errorf("invalid --timeout-graceful-shutdown %d: must not be negative", *graceful)
	}
	b.gracefulShutdown = time.Duration(*graceful) * time.Second
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--crash-after", b.crashAfter}, {"--delay", b.delay}, {"--unhealthy-for", b.unhealthyFor}, {"--mongo-timeout", b.mongoTimeout}, {"--gateway-timeout", b.gatewayTimeout}} {
		if d.v < 0 {
			return b, fmt.Errorf("invalid %s %s: must not be negative", d.name, d.v)
		}
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
// the crash delay passes or serving fails. Generation B never returns on
// SIGTERM; it hangs as the real one does.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	b, err := parseBehaviour(args, lookup, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "fakeprocessor: %v\n", err)
		return exitBadSetup
	}
	p, code, err := newProcessor(b, lookup)
	if err != nil {
		fmt.Fprintf(stderr, "fakeprocessor: %v\n", err)
		return code
	}
	fmt.Fprintf(stdout, "fakeprocessor started: generation %s, id=%s name=%q port=%d\n", b.generation, p.id, p.name, p.port)

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
	wait := func(d time.Duration) (int, bool) {
		if d <= 0 {
			return 0, false
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return p.stopped(), true
		case <-crash:
			return crashed(), true
		case <-t.C:
			return 0, false
		}
	}
	if code, done := wait(b.delay); done {
		return code
	}
	if b.neverListen {
		if code, done := wait(time.Duration(1<<63 - 1)); done {
			return code
		}
	}
	if b.generation == "a" {
		// The engine opens no port until MongoDB accepts a connection.
		if err := p.reachMongo(ctx, b.mongoTimeout); err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			fmt.Fprintf(stderr, "fakeprocessor: Failed to start KATO Engine: %v\n", err)
			return exitFailure
		}
	}
	served, err := p.serve()
	if err != nil {
		fmt.Fprintf(stderr, "fakeprocessor: %v\n", err)
		return exitFailure
	}
	select {
	case <-ctx.Done():
		return p.stopped()
	case <-crash:
		return crashed()
	case err := <-served:
		fmt.Fprintf(stderr, "fakeprocessor: serve: %v\n", err)
		return exitFailure
	}
}
