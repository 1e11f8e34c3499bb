package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// processorVariables are the environment variables kato-manager gives a
// processor, STATE_DIRECTORY coming from systemd.
var processorVariables = []string{
	"PROCESSOR_ID",
	"PROCESSOR_NAME",
	"INDEXER_TYPE",
	"MAX_PREDICTIONS",
	"RECALL_THRESHOLD",
	"MAX_PATTERN_LENGTH",
	"PERSISTENCE",
	"QUIESCENCE",
	"LOG_LEVEL",
	"MONGO_BASE_URL",
	"REST_PORT",
	"ZMQ_PORT",
	"PORT",
	"HOSTNAME",
	"MANIFEST",
	"STATE_DIRECTORY",
}

// learnedFile is the name of the counter file in the state directory.
const learnedFile = "learned"

// manifest is the processor description kato-manager passes in MANIFEST.
type manifest struct {
	ID               string  `json:"id"`
	Name             string  `json:"name"`
	IndexerType      string  `json:"indexer_type"`
	MaxPatternLength int     `json:"max_pattern_length"`
	Persistence      int     `json:"persistence"`
	MaxPredictions   int     `json:"max_predictions"`
	RecallThreshold  float64 `json:"recall_threshold"`
	Quiescence       int     `json:"quiescence"`
}

// settings is the validated environment of a processor.
type settings struct {
	env      map[string]string // the processor variables that were set, as received
	id       string
	name     string
	manifest manifest
	restPort int
	zmqPort  int
	stateDir string
}

// loadSettings reads and checks the processor's environment.
func loadSettings(lookup func(string) (string, bool)) (settings, error) {
	s := settings{env: make(map[string]string)}
	for _, name := range processorVariables {
		if v, ok := lookup(name); ok {
			s.env[name] = v
		}
	}

	s.id = s.env["PROCESSOR_ID"]
	if s.id == "" {
		return s, errors.New("PROCESSOR_ID is not set: kato-manager must pass the processor id")
	}
	if !validID(s.id) {
		return s, fmt.Errorf("invalid PROCESSOR_ID %q: must contain only letters, digits, hyphens and underscores", s.id)
	}
	s.name = s.env["PROCESSOR_NAME"]

	raw, ok := s.env["MANIFEST"]
	if !ok {
		return s, errors.New("MANIFEST is not set: kato-manager must pass the processor manifest")
	}
	if !strings.HasPrefix(strings.TrimSpace(raw), "{") {
		return s, fmt.Errorf("invalid MANIFEST %q: must be a JSON object", raw)
	}
	if err := json.Unmarshal([]byte(raw), &s.manifest); err != nil {
		return s, fmt.Errorf("invalid MANIFEST %q: %w", raw, err)
	}
	if s.manifest.ID != s.id {
		return s, fmt.Errorf("invalid MANIFEST id %q: must match PROCESSOR_ID %q", s.manifest.ID, s.id)
	}

	var err error
	if s.restPort, err = port(s.env, "REST_PORT"); err != nil {
		return s, err
	}
	if s.zmqPort, err = port(s.env, "ZMQ_PORT"); err != nil {
		return s, err
	}
	if s.restPort == s.zmqPort {
		return s, fmt.Errorf("invalid ZMQ_PORT %d: must differ from REST_PORT %d", s.zmqPort, s.restPort)
	}

	// systemd joins several state directories with colons; the first is
	// the processor's own.
	dirs, ok := s.env["STATE_DIRECTORY"]
	if !ok || dirs == "" {
		return s, errors.New("STATE_DIRECTORY is not set: the unit must set StateDirectory=")
	}
	s.stateDir, _, _ = strings.Cut(dirs, ":")
	info, err := os.Stat(s.stateDir)
	if err != nil {
		return s, fmt.Errorf("invalid STATE_DIRECTORY %q: %w", dirs, err)
	}
	if !info.IsDir() {
		return s, fmt.Errorf("invalid STATE_DIRECTORY %q: must be a directory", dirs)
	}
	return s, nil
}

// validID reports whether id follows the processor id naming rule.
func validID(id string) bool {
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return id != ""
}

// port parses the TCP port in the variable name of env.
func port(env map[string]string, name string) (int, error) {
	v, ok := env[name]
	if !ok {
		return 0, fmt.Errorf("%s is not set: kato-manager must pass the port", name)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid %s %q: must be a port number between 1 and 65535", name, v)
	}
	return n, nil
}

// processor answers the processor's HTTP API.
type processor struct {
	settings settings
	mu       sync.Mutex // serialises updates of the learned counter
}

// newProcessor returns a processor for validated settings.
func newProcessor(s settings) *processor {
	return &processor{settings: s}
}

// handler returns the processor's HTTP routes.
func (p *processor) handler() http.Handler {
	id := p.settings.id
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+id+"/ping", p.ping)
	if id != "kato-api" {
		mux.HandleFunc("GET /kato-api/ping", p.ping)
	}
	mux.HandleFunc("GET /env", p.environment)
	mux.HandleFunc("POST /"+id+"/learn", p.learn)
	mux.HandleFunc("GET /"+id+"/learned", p.learned)
	return mux
}

// pingResponse is the body of a ping.
type pingResponse struct {
	Status string `json:"status"`
	ID     string `json:"id"`
}

// learnedResponse reports the learned counter.
type learnedResponse struct {
	ID      string `json:"id"`
	Learned int    `json:"learned"`
}

func (p *processor) ping(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, pingResponse{Status: "okay", ID: p.settings.id})
}

func (p *processor) environment(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, p.settings.env)
}

func (p *processor) learn(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, err := p.readLearned()
	if err == nil {
		n++
		err = p.writeLearned(n)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, learnedResponse{ID: p.settings.id, Learned: n})
}

func (p *processor) learned(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	n, err := p.readLearned()
	p.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, learnedResponse{ID: p.settings.id, Learned: n})
}

// readLearned returns the counter from the state directory; a missing file
// means nothing was learned yet.
func (p *processor) readLearned() (int, error) {
	path := filepath.Join(p.settings.stateDir, learnedFile)
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
	dir := p.settings.stateDir
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

// writeJSON sends v as a JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
