package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kato-manager/kato-manager/internal/graceful"
)

// processorVariables are the environment variables a processor of either
// generation may be given, STATE_DIRECTORY coming from systemd. GET /env
// reports those that were set.
var processorVariables = []string{
	"PROCESSOR_ID", "PROCESSOR_NAME", "MANIFEST", "HOSTNAME", "LOG_LEVEL", "MONGO_BASE_URL",
	"REST_PORT", "ZMQ_PORT", "PORT", "SOURCES", "TARGETS", "AS_INPUTS", "KATO_ZMQ_IMPLEMENTATION",
	"QDRANT_URL", "REDIS_URL", "STATE_DIRECTORY",
	"INDEXER_TYPE", "MAX_PATTERN_LENGTH", "PERSISTENCE", "SMOOTHNESS", "AUTO_ACT_METHOD", "AUTO_ACT_THRESHOLD",
	"ALWAYS_UPDATE_FREQUENCIES", "MAX_PREDICTIONS", "RECALL_THRESHOLD", "QUIESCENCE", "SEARCH_DEPTH", "SORT",
	"PROCESS_PREDICTIONS",
}

// settingVariables are the variables a generation-B processor reads its
// settings from.
var settingVariables = processorVariables[len(processorVariables)-13:]

// requiredManifestKeys are the MANIFEST keys generation A cannot start
// without, in the order it reads them; search_depth and process_predictions
// are optional.
var requiredManifestKeys = []string{
	"id", "name", "indexer_type", "max_pattern_length", "persistence", "smoothness", "auto_act_method",
	"auto_act_threshold", "always_update_frequencies", "max_predictions", "recall_threshold", "quiescence", "sort",
}

// learnedFile is the name of the counter file in the state directory.
const learnedFile = "learned"

// engineHeader names, for tests, the engine that answered a request.
const engineHeader = "X-Fake-Engine"

// processor is one running double.
type processor struct {
	b        behaviour
	env      map[string]string // the processor variables that were set, as received
	id       string            // generation A: MANIFEST id; B: PROCESSOR_ID
	name     string
	port     int // REST_PORT (A) or PORT (B)
	zmqPort  int // A only
	mongo    string
	manifest map[string]any // A only
	stateDir string
	c        *generationC // C only

	mu      sync.Mutex // serialises updates of the learned counter
	servers []*http.Server
	// hang, set by POST /fake/hang, makes every other request of
	// generations A and B wait until its client gives up: a processor that
	// stops answering but keeps running.
	hang   atomic.Bool
	engine net.Listener
}

// missingKey is generation A's failure for a setting it needs: the Python
// KeyError of the real engine.
func missingKey(key string) error {
	//lint:ignore ST1005 the real engine's message, word for word
	return fmt.Errorf("Failed to start KATO Engine: '%s'", key)
}

// newProcessor reads and checks the environment as generation b.generation
// does. On error it also returns the exit status.
func newProcessor(b behaviour, lookup func(string) (string, bool)) (*processor, int, error) {
	p := &processor{b: b, env: map[string]string{}}
	for _, name := range processorVariables {
		if v, ok := lookup(name); ok {
			p.env[name] = v
		}
	}
	var err error
	switch b.generation {
	case "a":
		err = p.loadA()
	case "c":
		err = p.loadC(lookup)
	default:
		err = p.loadB()
	}
	if err != nil {
		var setup setupError
		if errors.As(err, &setup) {
			return nil, exitBadSetup, err
		}
		return nil, exitFailure, err
	}
	// systemd joins several state directories with colons; the first is
	// the processor's own.
	dirs, ok := p.env["STATE_DIRECTORY"]
	if !ok || dirs == "" {
		return nil, exitBadSetup, errors.New("STATE_DIRECTORY is not set: the unit must set StateDirectory=")
	}
	p.stateDir, _, _ = strings.Cut(dirs, ":")
	if info, err := os.Stat(p.stateDir); err != nil || !info.IsDir() {
		return nil, exitBadSetup, fmt.Errorf("invalid STATE_DIRECTORY %q: must be a directory", dirs)
	}
	return p, 0, nil
}

// setupError is a fault of kato-manager rather than one the real processor
// has: exit status 2.
type setupError struct{ error }

func (p *processor) loadA() error {
	// The engine reads LOG_LEVEL when it is imported, then HOSTNAME and
	// MONGO_BASE_URL, then its settings from MANIFEST and nothing else.
	for _, name := range []string{"LOG_LEVEL", "HOSTNAME", "MONGO_BASE_URL", "MANIFEST"} {
		if _, ok := p.env[name]; !ok {
			return missingKey(name)
		}
	}
	p.mongo = p.env["MONGO_BASE_URL"]
	if err := json.Unmarshal([]byte(p.env["MANIFEST"]), &p.manifest); err != nil || p.manifest == nil {
		//lint:ignore ST1005 the real engine's message, word for word
		return fmt.Errorf("Failed to start KATO Engine: MANIFEST %q is not a JSON object", p.env["MANIFEST"])
	}
	for _, key := range requiredManifestKeys {
		if _, ok := p.manifest[key]; !ok {
			return missingKey(key)
		}
	}
	p.id, _ = p.manifest["id"].(string)
	p.name, _ = p.manifest["name"].(string)
	var err error
	if p.port, err = port(p.env, "REST_PORT"); err != nil {
		return err
	}
	p.zmqPort, err = port(p.env, "ZMQ_PORT")
	return err
}

func (p *processor) loadB() error {
	p.id = p.env["PROCESSOR_ID"]
	if p.id == "" {
		return setupError{errors.New("PROCESSOR_ID is not set: kato-manager must pass the processor id")}
	}
	p.name = p.env["PROCESSOR_NAME"]
	var err error
	if p.port, err = port(p.env, "PORT"); err != nil {
		return setupError{err}
	}
	return nil
}

// port parses the TCP port in the variable name of env.
func port(env map[string]string, name string) (int, error) {
	v, ok := env[name]
	if !ok {
		return 0, missingKey(name)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid %s %q: must be a port number between 1 and 65535", name, v)
	}
	return n, nil
}

// reachMongo waits until MongoDB answers on a connection, as the engine
// does before it opens any port. The double's "handshake" is a line that
// the MongoDB stand-in (internal/testkit/mongostandin) echoes: a connection that is
// closed at once, as by a forwarder with nothing behind it, or never
// answered, as in a socket whose forwarder cannot start, is no MongoDB.
func (p *processor) reachMongo(ctx context.Context, timeout time.Duration) error {
	u, err := url.Parse(p.mongo)
	if err != nil || u.Host == "" {
		return fmt.Errorf("invalid MONGO_BASE_URL %q", p.mongo)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "27017")
	}
	deadline := time.Now().Add(timeout)
	for {
		err := handshake(addr, deadline)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MongoDB at %s did not accept a connection within %s: %v", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// handshake sends a line to addr and waits, until deadline, for it to come
// back.
func handshake(addr string, deadline time.Time) error {
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline)+time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(deadline.Add(time.Millisecond))
	if _, err := conn.Write([]byte("hello\n")); err != nil {
		return err
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return fmt.Errorf("no answer on the connection: %v", err)
	}
	return nil
}

// serve opens the ports on all interfaces and serves them; the channel gets
// the first serving error.
func (p *processor) serve() (<-chan error, error) {
	served := make(chan error, 2)
	if p.b.generation == "c" {
		served = make(chan error, len(p.c.stores))
		return served, p.serveC(served)
	}
	if p.b.generation == "a" {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(p.zmqPort))
		if err != nil {
			return nil, fmt.Errorf("engine: listen on ZMQ_PORT %d: %v", p.zmqPort, err)
		}
		p.engine = ln
		go p.runEngine(ln)
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(p.port))
	if err != nil {
		if p.engine != nil {
			p.engine.Close()
		}
		return nil, fmt.Errorf("listen on port %d: %v", p.port, err)
	}
	handler := p.handlerB()
	if p.b.generation == "a" {
		handler = p.gateway()
	}
	srv := graceful.Server(handler)
	p.servers = append(p.servers, srv)
	go func() { served <- srv.Serve(ln) }()
	return served, nil
}

// stopped is what SIGTERM does: generation A shuts down and exits 0;
// generation B's server finishes, then the interpreter hangs at shutdown
// until SIGKILL.
func (p *processor) stopped() int {
	if p.b.generation == "c" {
		return p.stopC()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, srv := range p.servers {
		srv.Shutdown(ctx)
	}
	if p.engine != nil {
		p.engine.Close()
	}
	if p.b.generation == "b" {
		select {}
	}
	if p.b.hangOnSIGTERM {
		fmt.Fprintln(os.Stdout, "Vector search engine closed")
		select {}
	}
	return exitOK
}

// handlerB serves generation B's endpoints, without the id prefix.
func (p *processor) handlerB() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		p.reply(w, http.StatusOK, map[string]any{"status": "healthy", "processor_id": p.id})
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		settings := map[string]string{}
		for _, name := range settingVariables {
			if v, ok := p.env[name]; ok {
				settings[name] = v
			}
		}
		p.reply(w, http.StatusOK, map[string]any{"processor_id": p.id, "name": p.name, "settings": settings})
	})
	mux.HandleFunc("POST /learn", p.learn)
	mux.HandleFunc("GET /learned", p.learned)
	for _, path := range []string{"POST /observe", "GET /stm", "GET /predictions", "POST /clear-all-memory"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			p.reply(w, http.StatusOK, map[string]any{"status": "okay"})
		})
	}
	mux.HandleFunc("GET /env", p.environment)
	return p.hangable(mux)
}

// hangable serves POST /fake/hang, and then leaves every other request of
// h unanswered.
func (p *processor) hangable(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/fake/hang" {
			p.hang.Store(true)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if p.hang.Load() {
			<-r.Context().Done()
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (p *processor) environment(w http.ResponseWriter, _ *http.Request) {
	p.reply(w, http.StatusOK, p.env)
}

// reply sends v as JSON, naming this process as the engine that answered.
func (p *processor) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set(engineHeader, p.id)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (p *processor) learn(w http.ResponseWriter, _ *http.Request) {
	n, err := p.addLearned()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p.reply(w, http.StatusOK, learnedResponse{ID: p.id, Learned: n})
}

func (p *processor) learned(w http.ResponseWriter, _ *http.Request) {
	n, err := p.readLearnedLocked()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p.reply(w, http.StatusOK, learnedResponse{ID: p.id, Learned: n})
}

// learnedResponse reports the learned counter.
type learnedResponse struct {
	ID      string `json:"id"`
	Learned int    `json:"learned"`
}

func (p *processor) addLearned() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, err := p.readLearned()
	if err == nil {
		n++
		err = p.writeLearned(n)
	}
	return n, err
}

func (p *processor) readLearnedLocked() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readLearned()
}

// readLearned returns the counter from the state directory; a missing file
// means nothing was learned yet.
func (p *processor) readLearned() (int, error) {
	path := filepath.Join(p.stateDir, learnedFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read learned counter: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid learned counter %q in %s: must be a non-negative integer", data, path)
	}
	return n, nil
}

// writeLearned replaces the counter file atomically, so that a processor
// killed mid-write leaves the previous count rather than a torn file.
func (p *processor) writeLearned(n int) error {
	dir := p.stateDir
	tmp, err := os.CreateTemp(dir, "."+learnedFile+"-*")
	if err != nil {
		return fmt.Errorf("write learned counter: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := fmt.Fprintf(tmp, "%d\n", n); err != nil {
		tmp.Close()
		return fmt.Errorf("write learned counter: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write learned counter: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write learned counter: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, learnedFile)); err != nil {
		return fmt.Errorf("write learned counter: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write learned counter: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write learned counter: sync %s: %w", dir, err)
	}
	return nil
}

// engineRequest is one call from a gateway to an engine, a JSON line.
type engineRequest struct {
	Op string `json:"op"` // ping, status, learn, learned, observe, ...
	ID string `json:"id"` // the id in the request's path
}

// engineResponse is the engine's answer, a JSON line.
type engineResponse struct {
	Engine string         `json:"engine"` // the answering engine's id
	Status int            `json:"status"`
	Body   map[string]any `json:"body"`
}

// runEngine answers gateways on ln until it is closed. Any gateway that
// reaches it is answered: the real engine has no notion of whose it is.
func (p *processor) runEngine(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go p.engineConn(conn)
	}
}

func (p *processor) engineConn(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var req engineRequest
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		return
	}
	resp := engineResponse{Engine: p.id, Status: http.StatusOK}
	switch req.Op {
	case "ping":
		// Any id is answered, echoed, with this engine's name.
		resp.Body = map[string]any{"status": "okay", "id": req.ID, "name": p.name}
	case "status":
		resp.Body = map[string]any{"id": req.ID, "name": p.name, "engine": p.id, "manifest": p.manifest}
	case "learn", "learned":
		var n int
		var err error
		if req.Op == "learn" {
			n, err = p.addLearned()
		} else {
			n, err = p.readLearnedLocked()
		}
		if err != nil {
			resp.Status, resp.Body = http.StatusInternalServerError, map[string]any{"error": err.Error()}
		} else {
			resp.Body = map[string]any{"id": p.id, "learned": n}
		}
	default:
		resp.Body = map[string]any{"status": "okay", "id": req.ID}
	}
	json.NewEncoder(conn).Encode(resp)
}

// gateway serves generation A's REST API. Everything under /{id}/ goes to
// the engine at b.engineAddress (127.0.0.1:5555), whatever ZMQ_PORT says.
func (p *processor) gateway() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kato-api/ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "okay"})
	})
	mux.HandleFunc("GET /connect", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "okay"})
	})
	mux.HandleFunc("GET /env", p.environment)
	for _, route := range []struct{ method, op string }{
		{"GET", "ping"}, {"GET", "status"}, {"GET", "short-term-memory"}, {"GET", "predictions"}, {"GET", "learned"},
		{"POST", "observe"}, {"POST", "learn"}, {"POST", "clear-short-term-memory"}, {"POST", "clear-all-memory"},
		{"POST", "genes/change"},
	} {
		mux.HandleFunc(route.method+" /{id}/"+route.op, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			p.forward(w, r.Context(), engineRequest{Op: route.op, ID: r.PathValue("id")})
		})
	}
	return p.hangable(mux)
}

// forward sends req to the engine and relays its answer. Without an engine
// at the fixed address the call hangs for the gateway timeout and fails
// with HTTP 500, as the real gateway's ZMQ request does.
func (p *processor) forward(w http.ResponseWriter, ctx context.Context, req engineRequest) {
	deadline := time.Now().Add(p.b.gatewayTimeout)
	for {
		resp, err := p.askEngine(req, deadline)
		if err == nil {
			w.Header().Set(engineHeader, resp.Engine)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(resp.Status)
			json.NewEncoder(w).Encode(resp.Body)
			return
		}
		if time.Now().After(deadline) {
			http.Error(w, fmt.Sprintf("no answer from the engine at %s: %v", p.b.engineAddress, err), http.StatusInternalServerError)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *processor) askEngine(req engineRequest, deadline time.Time) (*engineResponse, error) {
	conn, err := net.DialTimeout("tcp", p.b.engineAddress, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, err
	}
	var resp engineResponse
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
