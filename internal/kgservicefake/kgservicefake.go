// Package kgservicefake is a test double of the KG service: an http.Handler
// that speaks the service's health and ingest protocol, answers with a few
// deterministic entities and relationships per chunk, and can be told to be
// slow, to fail chosen content ids or to be down. It counts successful
// ingests per content id so that tests can check exactly-once processing.
//
// Besides the service's own endpoints it serves:
//
//	GET  /control   the current Control as JSON
//	POST /control   change the Control; fields left out of the JSON body
//	                keep their value
//	GET  /ingested  successful ingests per content id, as a JSON object
package kgservicefake

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Control is how a test steers the fake.
type Control struct {
	// LatencyMS is how long every ingest takes, in milliseconds.
	LatencyMS int `json:"latency_ms"`
	// Outage makes the health check and every ingest answer 503.
	Outage bool `json:"outage"`
	// FailIDs are content ids whose ingest fails with a 500.
	FailIDs []int64 `json:"fail_ids"`
}

// Chunk is a chunk as the KG service receives it.
type Chunk struct {
	VectorRowID int64  `json:"vector_rowid"`
	ChunkIndex  int    `json:"chunk_index"`
	CharStart   int    `json:"char_start"`
	CharEnd     int    `json:"char_end"`
	Text        string `json:"text"`
}

// IngestRequest is the body of POST /api/v1/ingest as the KG service reads it.
type IngestRequest struct {
	ContentID int64           `json:"content_id"`
	URL       string          `json:"url"`
	Title     string          `json:"title"`
	Markdown  string          `json:"markdown"`
	Chunks    []Chunk         `json:"chunks"`
	Metadata  json.RawMessage `json:"metadata"`
}

// Entity is an extracted entity as the KG service reports it.
type Entity struct {
	Text                string  `json:"text"`
	Normalized          string  `json:"normalized"`
	TypePrimary         string  `json:"type_primary"`
	TypeSub1            string  `json:"type_sub1"`
	TypeSub2            string  `json:"type_sub2"`
	TypeSub3            string  `json:"type_sub3"`
	Confidence          float64 `json:"confidence"`
	ChunkRowID          int64   `json:"chunk_rowid"`
	OffsetStart         int     `json:"offset_start"`
	OffsetEnd           int     `json:"offset_end"`
	Neo4jNodeID         string  `json:"neo4j_node_id"`
	SpansMultipleChunks bool    `json:"spans_multiple_chunks"`
}

// Relationship is an extracted relationship as the KG service reports it.
type Relationship struct {
	Subject             string  `json:"subject"`
	Predicate           string  `json:"predicate"`
	Object              string  `json:"object"`
	Confidence          float64 `json:"confidence"`
	Context             string  `json:"context"`
	Neo4jRelationshipID string  `json:"neo4j_relationship_id"`
	SpansChunks         bool    `json:"spans_chunks"`
	ChunkRowIDs         []int64 `json:"chunk_rowids"`
}

// IngestResponse is the KG service's successful answer.
type IngestResponse struct {
	Success                bool           `json:"success"`
	ContentID              int64          `json:"content_id"`
	EntitiesExtracted      int            `json:"entities_extracted"`
	RelationshipsExtracted int            `json:"relationships_extracted"`
	ProcessingTimeMS       int            `json:"processing_time_ms"`
	Entities               []Entity       `json:"entities"`
	Relationships          []Relationship `json:"relationships"`
	DocumentID             string         `json:"document_id"`
}

// ErrorResponse is the KG service's answer when it cannot process a request.
type ErrorResponse struct {
	Success   bool   `json:"success"`
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
}

// Server is the fake KG service. The zero value is not usable; call New.
type Server struct {
	mux *http.ServeMux

	mu       sync.Mutex
	control  Control
	ingested map[int64]int
	last     map[int64]IngestRequest
}

// New returns a healthy, instant fake service.
func New() *Server {
	s := &Server{ingested: make(map[int64]int), last: make(map[int64]IngestRequest)}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /health", s.health)
	s.mux.HandleFunc("POST /api/v1/ingest", s.ingest)
	s.mux.HandleFunc("GET /control", s.getControl)
	s.mux.HandleFunc("POST /control", s.postControl)
	s.mux.HandleFunc("GET /ingested", s.getIngested)
	return s
}

// ServeHTTP serves the fake's endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// SetControl replaces the fake's behaviour.
func (s *Server) SetControl(c Control) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.FailIDs = append([]int64(nil), c.FailIDs...)
	s.control = c
}

// Control returns the fake's current behaviour.
func (s *Server) Control() Control {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.control
	c.FailIDs = append([]int64{}, c.FailIDs...)
	return c
}

// Ingested returns how many times each content id was ingested successfully.
func (s *Server) Ingested() map[int64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int64]int, len(s.ingested))
	for id, n := range s.ingested {
		out[id] = n
	}
	return out
}

// LastRequest returns the last ingest request received for contentID.
func (s *Server) LastRequest(contentID int64) (IngestRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.last[contentID]
	return r, ok
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	if s.Control().Outage {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	var req IngestRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "invalid request body: " + err.Error(), ErrorType: "ValidationError"})
		return
	}
	if req.ContentID <= 0 {
		writeJSON(w, http.StatusUnprocessableEntity, ErrorResponse{
			Error: fmt.Sprintf("invalid content_id %d: must be positive", req.ContentID), ErrorType: "ValidationError"})
		return
	}
	c := s.Control()
	if c.Outage {
		writeJSON(w, http.StatusServiceUnavailable, ErrorResponse{Error: "kg service unavailable", ErrorType: "ServiceUnavailable"})
		return
	}
	if !sleep(r.Context(), time.Duration(c.LatencyMS)*time.Millisecond) {
		return
	}
	s.mu.Lock()
	s.last[req.ContentID] = req
	s.mu.Unlock()
	for _, id := range c.FailIDs {
		if id == req.ContentID {
			writeJSON(w, http.StatusInternalServerError, ErrorResponse{
				Error: fmt.Sprintf("extraction failed for content_id %d", id), ErrorType: "ExtractionError"})
			return
		}
	}
	resp := Extract(req)
	resp.ProcessingTimeMS = c.LatencyMS
	s.mu.Lock()
	s.ingested[req.ContentID]++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// sleep waits for d and reports whether the request is still wanted.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Extract is the fake's extraction: for every chunk, an entity for the
// document, an entity for the chunk's topic and a relationship between the
// two. The same request always gives the same answer.
func Extract(req IngestRequest) IngestResponse {
	resp := IngestResponse{
		Success:       true,
		ContentID:     req.ContentID,
		Entities:      []Entity{},
		Relationships: []Relationship{},
		DocumentID:    fmt.Sprintf("doc-%d", req.ContentID),
	}
	doc := fmt.Sprintf("Document %d", req.ContentID)
	for _, ch := range req.Chunks {
		topic := fmt.Sprintf("Topic %d.%d", req.ContentID, ch.ChunkIndex)
		snippet := prefix(ch.Text, 40)
		end := len(snippet)
		resp.Entities = append(resp.Entities,
			Entity{
				Text: doc, Normalized: strings.ToLower(doc), TypePrimary: "Document", TypeSub1: "WebPage",
				Confidence: 0.9, ChunkRowID: ch.VectorRowID, OffsetStart: 0, OffsetEnd: end,
				Neo4jNodeID: fmt.Sprintf("node-%d-doc", req.ContentID),
			},
			Entity{
				Text: topic, Normalized: strings.ToLower(topic), TypePrimary: "Concept", TypeSub1: "Topic",
				Confidence: 0.8, ChunkRowID: ch.VectorRowID, OffsetStart: 0, OffsetEnd: end,
				Neo4jNodeID: fmt.Sprintf("node-%d-%d", req.ContentID, ch.ChunkIndex),
			})
		resp.Relationships = append(resp.Relationships, Relationship{
			Subject: doc, Predicate: "mentions", Object: topic, Confidence: 0.75,
			Context:             snippet,
			Neo4jRelationshipID: fmt.Sprintf("rel-%d-%d", req.ContentID, ch.ChunkIndex),
			ChunkRowIDs:         []int64{ch.VectorRowID},
		})
	}
	resp.EntitiesExtracted = len(resp.Entities)
	resp.RelationshipsExtracted = len(resp.Relationships)
	return resp
}

func (s *Server) getControl(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Control())
}

// controlPatch is the body of POST /control: fields left out keep their
// current value.
type controlPatch struct {
	LatencyMS *int     `json:"latency_ms"`
	Outage    *bool    `json:"outage"`
	FailIDs   *[]int64 `json:"fail_ids"`
}

func (s *Server) postControl(w http.ResponseWriter, r *http.Request) {
	var p controlPatch
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "invalid control body: " + err.Error(), ErrorType: "ValidationError"})
		return
	}
	if p.LatencyMS != nil && *p.LatencyMS < 0 {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{
			Error: fmt.Sprintf("invalid latency_ms %d: must be zero or more", *p.LatencyMS), ErrorType: "ValidationError"})
		return
	}
	s.mu.Lock()
	if p.LatencyMS != nil {
		s.control.LatencyMS = *p.LatencyMS
	}
	if p.Outage != nil {
		s.control.Outage = *p.Outage
	}
	if p.FailIDs != nil {
		s.control.FailIDs = append([]int64(nil), (*p.FailIDs)...)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.Control())
}

func (s *Server) getIngested(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Ingested())
}

// prefix returns the longest start of s that is at most n bytes and ends on
// a character boundary.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
