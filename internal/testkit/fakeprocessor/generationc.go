package main

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kato-manager/kato-manager/internal/graceful"
)

// sessionDefaults are the variables generation C reads as the defaults of
// new sessions, with the contract's defaults where it names one.
var sessionDefaults = []struct{ env, key, def string }{
	{"MAX_PATTERN_LENGTH", "max_pattern_length", "0"},
	{"PERSISTENCE", "persistence", "5"},
	{"RECALL_THRESHOLD", "recall_threshold", "0.1"},
	{"INDEXER_TYPE", "indexer_type", "VI"},
	{"MAX_PREDICTIONS", "max_predictions", "100"},
	{"SORT", "sort", "true"},
	{"PROCESS_PREDICTIONS", "process_predictions", "true"},
	{"AUTO_LEARN_ENABLED", "auto_learn_enabled", "false"},
	{"AUTO_LEARN_THRESHOLD", "auto_learn_threshold", "50"},
	{"STM_MODE", "stm_mode", "CLEAR"},
	{"SESSION_TTL", "session_ttl", "3600"},
	{"SESSION_AUTO_EXTEND", "session_auto_extend", "true"},
}

// generationCVariables are the variables generation C reads besides its
// session defaults; GET /env reports them too.
var generationCVariables = []string{
	"SERVICE_NAME", "KATO_WORKERS", "KATO_LIMIT_CONCURRENCY", "KATO_ARCHITECTURE_MODE", "LOG_FORMAT",
	"CLICKHOUSE_HOST", "CLICKHOUSE_PORT", "CLICKHOUSE_DB", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_SECURE",
	"REDIS_ENABLED", "REDIS_TLS", "QDRANT_HOST", "QDRANT_PORT", "QDRANT_API_KEY", "QDRANT_HTTPS",
	"AUTO_LEARN_ENABLED", "AUTO_LEARN_THRESHOLD", "STM_MODE", "SESSION_TTL", "SESSION_AUTO_EXTEND",
}

// generationC is the state of a generation-C process: its settings, its
// stores and the faults it was told to show.
type generationC struct {
	serviceName string
	defaults    map[string]any
	sessionTTL  int
	started     time.Time
	// stores are one per worker: with Redis all the same client's view,
	// without it each worker's own memory, as uvicorn's workers are
	// separate processes.
	stores []sessionStore
	// hang makes /health stop answering; unhealthy makes it say so.
	hang, unhealthy atomic.Bool
	requests        atomic.Int64
}

// loadC reads what generation C reads: PORT (or uvicorn's --port), its
// session defaults, SERVICE_NAME and its stores. PROCESSOR_ID is not
// its (the real one has no id of its own); the double uses it, when set,
// only to name itself in X-Fake-Engine.
func (p *processor) loadC(lookup func(string) (string, bool)) error {
	for _, name := range generationCVariables {
		if v, ok := lookup(name); ok {
			p.env[name] = v
		}
	}
	p.id = p.env["PROCESSOR_ID"]
	p.name = p.env["PROCESSOR_NAME"]
	if p.b.port != 0 {
		p.port = p.b.port
	} else {
		var err error
		if p.port, err = port(p.env, "PORT"); err != nil {
			return setupError{fmt.Errorf("%v (or --port)", err)}
		}
	}
	c := &generationC{serviceName: "kato", defaults: map[string]any{}, started: time.Now()}
	if v := p.env["SERVICE_NAME"]; v != "" {
		c.serviceName = v
	}
	for _, d := range sessionDefaults {
		v, ok := lookup(d.env)
		if !ok || v == "" {
			v = d.def
		}
		c.defaults[d.key] = settingValue(v)
	}
	ttl, err := strconv.Atoi(fmt.Sprint(c.defaults["session_ttl"]))
	if err != nil || ttl < 1 {
		return fmt.Errorf("invalid SESSION_TTL %v: must be a positive number of seconds", c.defaults["session_ttl"])
	}
	c.sessionTTL = ttl
	workers := max(p.b.workers, 1)
	if url := p.env["REDIS_URL"]; url != "" && p.env["REDIS_ENABLED"] != "false" {
		rs, err := newRedisStore(url)
		if err != nil {
			return err
		}
		for range workers {
			c.stores = append(c.stores, rs)
		}
	} else {
		for range workers {
			c.stores = append(c.stores, newMemoryStore())
		}
	}
	p.c = c
	return nil
}

// settingValue reads a variable's text as the JSON value it stands for.
func settingValue(v string) any {
	if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
		return b
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f
	}
	return v
}

// serveC opens the port once per uvicorn worker (SO_REUSEPORT, so the
// kernel spreads connections over them as over uvicorn's processes) and
// serves each with its own store.
func (p *processor) serveC(served chan error) error {
	lc := net.ListenConfig{Control: func(_, _ string, conn syscall.RawConn) error {
		var serr error
		err := conn.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for i, store := range p.c.stores {
		ln, err := lc.Listen(context.Background(), "tcp", ":"+strconv.Itoa(p.port))
		if err != nil {
			for _, srv := range p.servers {
				srv.Close()
			}
			return fmt.Errorf("listen on port %d: %v", p.port, err)
		}
		srv := graceful.Server(p.handlerC(i+1, store))
		p.servers = append(p.servers, srv)
		go func() { served <- srv.Serve(ln) }()
	}
	return nil
}

// handlerC serves generation C's endpoints for one worker.
func (p *processor) handlerC(worker int, store sessionStore) http.Handler {
	c := p.c
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("X-Fake-Worker", strconv.Itoa(worker))
		p.reply(w, status, v)
	}
	fail := func(w http.ResponseWriter, err error) {
		if errors.Is(err, errNoSession) {
			reply(w, http.StatusNotFound, map[string]any{"detail": err.Error()})
			return
		}
		reply(w, http.StatusInternalServerError, map[string]any{"detail": err.Error()})
	}
	// withSession finds the session of the path, extending it when
	// SESSION_AUTO_EXTEND says so.
	withSession := func(w http.ResponseWriter, r *http.Request) (session, bool) {
		s, err := store.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			fail(w, err)
			return s, false
		}
		if b, _ := s.Config["session_auto_extend"].(bool); b {
			s.ExpiresAt = time.Now().Add(time.Duration(s.TTL) * time.Second)
			if err := store.Update(r.Context(), s); err != nil {
				fail(w, err)
				return s, false
			}
		}
		return s, true
	}
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if c.hang.Load() {
			<-r.Context().Done()
			return
		}
		status, issues := "healthy", []string{}
		if c.unhealthy.Load() || time.Since(c.started) < p.b.unhealthyFor {
			issues = append(issues, "processor: told to be unhealthy")
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := store.Ping(ctx); err != nil {
			issues = append(issues, store.Backend()+": "+err.Error())
		}
		if len(issues) > 0 {
			status = "unhealthy"
		}
		n, _ := store.Count(ctx)
		// 200 either way: only the body tells.
		reply(w, http.StatusOK, map[string]any{"status": status, "processor_status": status, "service_name": c.serviceName,
			"uptime_seconds": time.Since(c.started).Seconds(), "issues": issues, "active_sessions": n,
			"timestamp": time.Now().UTC().Format(time.RFC3339)})
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		n, _ := store.Count(r.Context())
		reply(w, http.StatusOK, map[string]any{"status": "healthy", "service_name": c.serviceName, "workers": len(c.stores),
			"sessions_backend": store.Backend(), "active_sessions": n, "defaults": c.defaults})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		n, _ := store.Count(r.Context())
		reply(w, http.StatusOK, map[string]any{"requests_total": c.requests.Load(), "active_sessions": n,
			"uptime_seconds": time.Since(c.started).Seconds()})
	})
	mux.HandleFunc("POST /sessions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			NodeID     string         `json:"node_id"`
			Config     map[string]any `json:"config"`
			TTLSeconds *int           `json:"ttl_seconds"`
		}
		if err := decodeBody(r, &req); err != nil || req.NodeID == "" {
			reply(w, http.StatusUnprocessableEntity, map[string]any{"detail": "body must be a JSON object with node_id"})
			return
		}
		ttl := c.sessionTTL
		if req.TTLSeconds != nil {
			if *req.TTLSeconds < 1 {
				reply(w, http.StatusUnprocessableEntity, map[string]any{"detail": "ttl_seconds must be positive"})
				return
			}
			ttl = *req.TTLSeconds
		}
		config := map[string]any{}
		for k, v := range c.defaults {
			config[k] = v
		}
		for k, v := range req.Config {
			config[k] = v
		}
		now := time.Now().UTC()
		s := session{ID: "session-" + randomHex(), NodeID: req.NodeID, Config: config, TTL: ttl, CreatedAt: now, ExpiresAt: now.Add(time.Duration(ttl) * time.Second)}
		if err := store.Create(r.Context(), s); err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, s)
	})
	mux.HandleFunc("GET /sessions/count", func(w http.ResponseWriter, r *http.Request) {
		n, err := store.Count(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, map[string]any{"active_session_count": n})
	})
	mux.HandleFunc("GET /sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if s, ok := withSession(w, r); ok {
			reply(w, http.StatusOK, s)
		}
	})
	mux.HandleFunc("DELETE /sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := store.Delete(r.Context(), r.PathValue("id")); err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, map[string]any{"status": "deleted", "session_id": r.PathValue("id")})
	})
	mux.HandleFunc("POST /sessions/{id}/config", func(w http.ResponseWriter, r *http.Request) {
		s, ok := withSession(w, r)
		if !ok {
			return
		}
		var req struct {
			Config map[string]any `json:"config"`
		}
		if err := decodeBody(r, &req); err != nil {
			reply(w, http.StatusUnprocessableEntity, map[string]any{"detail": "body must be a JSON object with config"})
			return
		}
		for k, v := range req.Config {
			s.Config[k] = v
		}
		if err := store.Update(r.Context(), s); err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, map[string]any{"status": "okay", "session_id": s.ID, "config": s.Config})
	})
	mux.HandleFunc("POST /sessions/{id}/observe", func(w http.ResponseWriter, r *http.Request) {
		s, ok := withSession(w, r)
		if !ok {
			return
		}
		var req struct {
			Strings  []string       `json:"strings"`
			Vectors  []any          `json:"vectors"`
			Emotives map[string]any `json:"emotives"`
		}
		if err := decodeBody(r, &req); err != nil || req.Strings == nil {
			reply(w, http.StatusUnprocessableEntity, map[string]any{"detail": `body must be {"strings": [...], "vectors": [], "emotives": {}}`})
			return
		}
		event := slices.Clone(req.Strings)
		if b, _ := s.Config["sort"].(bool); b {
			slices.Sort(event)
		}
		n, err := store.Observe(r.Context(), s.ID, event)
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, map[string]any{"status": "okay", "session_id": s.ID, "stm_length": n})
	})
	mux.HandleFunc("GET /sessions/{id}/stm", func(w http.ResponseWriter, r *http.Request) {
		s, ok := withSession(w, r)
		if !ok {
			return
		}
		stm, err := store.STM(r.Context(), s.ID)
		if err != nil {
			fail(w, err)
			return
		}
		if stm == nil {
			stm = [][]string{}
		}
		reply(w, http.StatusOK, map[string]any{"stm": stm, "session_id": s.ID})
	})
	mux.HandleFunc("POST /sessions/{id}/learn", func(w http.ResponseWriter, r *http.Request) {
		s, ok := withSession(w, r)
		if !ok {
			return
		}
		stm, err := store.STM(r.Context(), s.ID)
		if err != nil {
			fail(w, err)
			return
		}
		if len(stm) < 2 {
			// A pattern needs at least two events.
			reply(w, http.StatusOK, map[string]any{"pattern_name": "", "session_id": s.ID})
			return
		}
		name := patternName(stm)
		if err := store.Learn(r.Context(), c.knowledgeBase(s), name, stm); err != nil {
			fail(w, err)
			return
		}
		if mode, _ := s.Config["stm_mode"].(string); mode != "ROLLING" {
			if err := store.ClearSTM(r.Context(), s.ID); err != nil {
				fail(w, err)
				return
			}
		}
		reply(w, http.StatusOK, map[string]any{"pattern_name": name, "session_id": s.ID})
	})
	mux.HandleFunc("GET /sessions/{id}/predictions", func(w http.ResponseWriter, r *http.Request) {
		s, ok := withSession(w, r)
		if !ok {
			return
		}
		stm, err := store.STM(r.Context(), s.ID)
		if err != nil {
			fail(w, err)
			return
		}
		patterns, err := store.Patterns(r.Context(), c.knowledgeBase(s))
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, map[string]any{"predictions": predictions(stm, patterns), "session_id": s.ID})
	})
	mux.HandleFunc("GET /env", p.environment)
	// Test switches of the double, not of the real processor.
	mux.HandleFunc("POST /fake/hang", func(w http.ResponseWriter, _ *http.Request) {
		c.hang.Store(true)
		reply(w, http.StatusOK, map[string]any{"status": "okay"})
	})
	mux.HandleFunc("POST /fake/unhealthy", func(w http.ResponseWriter, _ *http.Request) {
		c.unhealthy.Store(true)
		reply(w, http.StatusOK, map[string]any{"status": "okay"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		mux.ServeHTTP(w, r)
	})
}

// knowledgeBase is where a session's node learns: {node_id}_{SERVICE_NAME},
// shared by every replica of the service.
func (c *generationC) knowledgeBase(s session) string { return s.NodeID + "_" + c.serviceName }

// patternName names a pattern by its content, as KATO does (PTRN|sha1).
func patternName(events [][]string) string {
	data, _ := json.Marshal(events)
	sum := sha1.Sum(data)
	return "PTRN|" + hex.EncodeToString(sum[:])
}

// predictions are the learned patterns sharing a symbol with the
// short-term memory, by name.
func predictions(stm [][]string, patterns map[string][][]string) []map[string]any {
	seen := map[string]bool{}
	for _, e := range stm {
		for _, s := range e {
			seen[s] = true
		}
	}
	var out []map[string]any
	for _, name := range sortedKeys(patterns) {
		var matches []string
		for _, e := range patterns[name] {
			for _, s := range e {
				if seen[s] && !slices.Contains(matches, s) {
					matches = append(matches, s)
				}
			}
		}
		if len(matches) > 0 {
			out = append(out, map[string]any{"name": name, "matches": matches, "pattern": patterns[name]})
		}
	}
	if out == nil {
		out = []map[string]any{}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func decodeBody(r *http.Request, v any) error {
	return json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v)
}

func randomHex() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// stopC is generation C's SIGTERM: stop accepting, let requests finish for
// up to the graceful-shutdown timeout, then exit 0.
func (p *processor) stopC() int {
	ctx, cancel := context.WithTimeout(context.Background(), p.b.gracefulShutdown)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range p.servers {
		wg.Add(1)
		go func() { defer wg.Done(); srv.Shutdown(ctx) }()
	}
	wg.Wait()
	return exitOK
}
