// Package kgservicefake is a test double of the KG service, written from
// the contract (../shared/contracts/kg-service.md, the original service's
// request and response models): an http.Handler that serves GET /health and
// POST /api/v1/ingest field for field, answers 422 to a request outside the
// service's limits, answers with a few deterministic entities and
// relationships per chunk, and can be told to be slow, to be down, or to
// answer chosen content ids with any of the faults below. It counts
// successful ingests per content id so that tests can check exactly-once
// processing.
//
// Besides the service's own endpoints it serves:
//
//	GET  /control   the current Control as JSON
//	POST /control   change the Control; fields left out of the JSON body
//	                keep their value
//	GET  /ingested  successful ingests per content id, as a JSON object
//	GET  /received  ingest requests received per content id (valid ones,
//	                whatever the answer)
package kgservicefake

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The faults a content id can be given in Control.Faults.
const (
	// FaultError answers 500 with the failure model.
	FaultError = "error"
	// FaultDrop reads the request and closes the connection without an
	// answer, as a service that crashes on the document.
	FaultDrop = "drop"
	// FaultHang never answers; the client's timeout ends the request.
	FaultHang = "hang"
	// FaultThrottle answers 429 with Retry-After: RetryAfterS.
	FaultThrottle = "throttle"
	// FaultUnavailable answers 503 with Retry-After: RetryAfterS, as the
	// service does while its processors are not initialised.
	FaultUnavailable = "unavailable"
	// FaultWrongContentID answers for another content_id.
	FaultWrongContentID = "wrong_content_id"
	// FaultCountMismatch answers with entities_extracted one more than the
	// entities listed.
	FaultCountMismatch = "count_mismatch"
	// FaultMissingFields answers without neo4j_document_id and summary.
	FaultMissingFields = "missing_fields"
	// FaultSuccessOnly answers {"success": true} and nothing else.
	FaultSuccessOnly = "success_only"
	// FaultWrongTypes answers content_id as a string.
	FaultWrongTypes = "wrong_types"
	// FaultUnknownChunk answers with an entity in a chunk the request did
	// not have.
	FaultUnknownChunk = "unknown_chunk"
)

// Faults lists every fault name.
var Faults = []string{FaultError, FaultDrop, FaultHang, FaultThrottle, FaultUnavailable, FaultWrongContentID,
	FaultCountMismatch, FaultMissingFields, FaultSuccessOnly, FaultWrongTypes, FaultUnknownChunk}

// Control is how a test steers the fake.
type Control struct {
	// LatencyMS is how long every ingest takes, in milliseconds, before
	// its answer or fault.
	LatencyMS int `json:"latency_ms"`
	// Outage makes the health check report unhealthy and every ingest
	// answer 503.
	Outage bool `json:"outage"`
	// Degraded makes the health check report "degraded", which still
	// means "send work".
	Degraded bool `json:"degraded"`
	// FailIDs are content ids whose ingest fails with a 500; the same as
	// FaultError in Faults.
	FailIDs []int64 `json:"fail_ids"`
	// Faults maps content ids to the fault their ingest answers with.
	Faults map[int64]string `json:"faults"`
	// RetryAfterS is the Retry-After of the throttle and unavailable
	// faults and of an outage, in seconds; 0 sends none.
	RetryAfterS int `json:"retry_after_s"`
	// AnswerBytes, when more than the answer would take, pads every
	// successful answer to about this many bytes with padding entities:
	// contract-valid answers as large as a test needs (the contract puts
	// no bound on an answer's size).
	AnswerBytes int64 `json:"answer_bytes"`
	// PadChars is the length of a padding entity's sentence; 0 means
	// 800, some 1 KiB per entity in all, as a real entity with its context.
	PadChars int `json:"pad_chars"`
	// ErrorText, when set, is the error field of the error fault's answer,
	// as a service that puts a whole page or a stack trace there.
	ErrorText string `json:"error_text"`
}

func (c Control) clone() Control {
	c.FailIDs = append([]int64{}, c.FailIDs...)
	m := make(map[int64]string, len(c.Faults))
	for k, v := range c.Faults {
		m[k] = v
	}
	c.Faults = m
	return c
}

// fault returns the fault of contentID, "" for none.
func (c Control) fault(contentID int64) string {
	if f, ok := c.Faults[contentID]; ok {
		return f
	}
	for _, id := range c.FailIDs {
		if id == contentID {
			return FaultError
		}
	}
	return ""
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
	Metadata  json.RawMessage `json:"metadata,omitempty"`
}

// ChunkAppearance is where an entity appears in one chunk.
type ChunkAppearance struct {
	VectorRowID int64 `json:"vector_rowid"`
	ChunkIndex  int   `json:"chunk_index"`
	OffsetStart int   `json:"offset_start"`
	OffsetEnd   int   `json:"offset_end"`
}

// Entity is an extracted entity as the KG service reports it.
type Entity struct {
	Text                string            `json:"text"`
	Normalized          string            `json:"normalized"`
	TypePrimary         string            `json:"type_primary"`
	TypeSub1            *string           `json:"type_sub1"`
	TypeSub2            *string           `json:"type_sub2"`
	TypeSub3            *string           `json:"type_sub3"`
	TypeFull            string            `json:"type_full"`
	Confidence          float64           `json:"confidence"`
	Neo4jNodeID         *string           `json:"neo4j_node_id"`
	ContextBefore       string            `json:"context_before"`
	ContextAfter        string            `json:"context_after"`
	Sentence            string            `json:"sentence"`
	ChunkAppearances    []ChunkAppearance `json:"chunk_appearances"`
	SpansMultipleChunks bool              `json:"spans_multiple_chunks"`
}

// Relationship is an extracted relationship as the KG service reports it.
type Relationship struct {
	SubjectText         string  `json:"subject_text"`
	Predicate           string  `json:"predicate"`
	ObjectText          string  `json:"object_text"`
	SubjectNeo4jID      *string `json:"subject_neo4j_id"`
	ObjectNeo4jID       *string `json:"object_neo4j_id"`
	Confidence          float64 `json:"confidence"`
	Context             string  `json:"context"`
	Neo4jRelationshipID *string `json:"neo4j_relationship_id"`
	SpansChunks         bool    `json:"spans_chunks"`
	ChunkRowIDs         []int64 `json:"chunk_rowids"`
}

// Summary is the answer's overview.
type Summary struct {
	EntitiesByType           map[string]int `json:"entities_by_type"`
	RelationshipsByPredicate map[string]int `json:"relationships_by_predicate"`
	ChunksWithEntities       int            `json:"chunks_with_entities"`
	AvgEntitiesPerChunk      float64        `json:"avg_entities_per_chunk"`
}

// IngestResponse is the KG service's successful answer.
type IngestResponse struct {
	Success                bool           `json:"success"`
	ContentID              int64          `json:"content_id"`
	Neo4jDocumentID        string         `json:"neo4j_document_id"`
	EntitiesExtracted      int            `json:"entities_extracted"`
	RelationshipsExtracted int            `json:"relationships_extracted"`
	ProcessingTimeMS       float64        `json:"processing_time_ms"`
	Entities               []Entity       `json:"entities"`
	Relationships          []Relationship `json:"relationships"`
	Summary                Summary        `json:"summary"`
}

// ErrorResponse is the KG service's answer when it cannot process a request.
type ErrorResponse struct {
	Success   bool   `json:"success"`
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
	ContentID *int64 `json:"content_id,omitempty"`
	Timestamp string `json:"timestamp"`
}

// validationError is the 422 answer, as FastAPI gives it.
type validationError struct {
	Detail []validationDetail `json:"detail"`
}

type validationDetail struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// Server is the fake KG service. The zero value is not usable; call New.
type Server struct {
	mux     *http.ServeMux
	started time.Time

	// BeforeAnswer, when set before the server is used, runs after an
	// ingest's latency and before its answer, with its content id: a test
	// hook to act while the worker waits.
	BeforeAnswer func(contentID int64)

	mu       sync.Mutex
	control  Control
	ingested map[int64]int
	received map[int64]int
	last     map[int64]IngestRequest
}

// New returns a healthy, instant fake service.
func New() *Server {
	s := &Server{started: time.Now(), ingested: make(map[int64]int), received: make(map[int64]int),
		last: make(map[int64]IngestRequest), control: Control{Faults: map[int64]string{}}}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /health", s.health)
	s.mux.HandleFunc("POST /api/v1/ingest", s.ingest)
	s.mux.HandleFunc("GET /control", s.getControl)
	s.mux.HandleFunc("POST /control", s.postControl)
	s.mux.HandleFunc("GET /ingested", s.getIngested)
	s.mux.HandleFunc("GET /received", s.getReceived)
	return s
}

// ServeHTTP serves the fake's endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// SetControl replaces the fake's behaviour.
func (s *Server) SetControl(c Control) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.control = c.clone()
}

// Control returns the fake's current behaviour.
func (s *Server) Control() Control {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.control.clone()
}

// Ingested returns how many times each content id was ingested successfully.
func (s *Server) Ingested() map[int64]int { return s.counts(s.ingested) }

// Received returns how many valid ingest requests came for each content id.
func (s *Server) Received() map[int64]int { return s.counts(s.received) }

func (s *Server) counts(m map[int64]int) map[int64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int64]int, len(m))
	for id, n := range m {
		out[id] = n
	}
	return out
}

// LastRequest returns the last valid ingest request received for contentID.
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

func timestamp() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000000") }

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	c := s.Control()
	status, state := "healthy", "connected"
	switch {
	case c.Outage:
		status, state = "unhealthy", "disconnected"
	case c.Degraded:
		status = "degraded"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status":         status,
		"timestamp":      timestamp(),
		"services":       map[string]string{"neo4j": state, "vllm": state, "gliner": state},
		"version":        "1.0.0-fake",
		"uptime_seconds": time.Since(s.started).Seconds(),
	})
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	var req IngestRequest
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, validationError{Detail: []validationDetail{{
			Loc: []any{"body"}, Msg: "invalid request body: " + err.Error(), Type: "value_error.jsondecode"}}})
		return
	}
	if d := validate(&req); d != nil {
		writeJSON(w, http.StatusUnprocessableEntity, validationError{Detail: []validationDetail{*d}})
		return
	}
	c := s.Control()
	if c.Outage {
		s.retryAfter(w, c)
		writeJSON(w, http.StatusServiceUnavailable, ErrorResponse{Error: "KG processors not initialized",
			ErrorType: "ServiceUnavailable", ContentID: &req.ContentID, Timestamp: timestamp()})
		return
	}
	s.mu.Lock()
	s.last[req.ContentID] = req
	s.received[req.ContentID]++
	s.mu.Unlock()
	if !sleep(r.Context(), time.Duration(c.LatencyMS)*time.Millisecond) {
		return
	}
	if s.BeforeAnswer != nil {
		s.BeforeAnswer(req.ContentID)
	}
	resp := Extract(req)
	resp.ProcessingTimeMS = float64(c.LatencyMS)
	switch fault := c.fault(req.ContentID); fault {
	case "":
	case FaultError:
		text := c.ErrorText
		if text == "" {
			text = fmt.Sprintf("extraction failed for content_id %d", req.ContentID)
		}
		writeJSON(w, http.StatusInternalServerError, ErrorResponse{
			Error: text, ErrorType: "ExtractionError",
			ContentID: &req.ContentID, Timestamp: timestamp()})
		return
	case FaultDrop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case FaultHang:
		<-r.Context().Done()
		return
	case FaultThrottle, FaultUnavailable:
		s.retryAfter(w, c)
		code := http.StatusTooManyRequests
		if fault == FaultUnavailable {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, ErrorResponse{Error: "try again later", ErrorType: "Busy", ContentID: &req.ContentID, Timestamp: timestamp()})
		return
	case FaultWrongContentID:
		resp.ContentID++
	case FaultCountMismatch:
		resp.EntitiesExtracted++
	case FaultUnknownChunk:
		if len(resp.Entities) > 0 {
			resp.Entities[0].ChunkAppearances[0].VectorRowID = -1
		}
	case FaultMissingFields:
		var m map[string]any
		b, _ := json.Marshal(resp)
		json.Unmarshal(b, &m) //nolint:errcheck // marshalled above
		delete(m, "neo4j_document_id")
		delete(m, "summary")
		writeJSON(w, http.StatusOK, m)
		return
	case FaultSuccessOnly:
		writeJSON(w, http.StatusOK, map[string]bool{"success": true})
		return
	case FaultWrongTypes:
		var m map[string]any
		b, _ := json.Marshal(resp)
		json.Unmarshal(b, &m) //nolint:errcheck // marshalled above
		m["content_id"] = strconv.FormatInt(req.ContentID, 10)
		writeJSON(w, http.StatusOK, m)
		return
	default:
		writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: "unknown fault " + fault, ErrorType: "FakeError", Timestamp: timestamp()})
		return
	}
	if c.AnswerBytes > 0 {
		pad(&resp, req, c.AnswerBytes, c.PadChars)
	}
	if c.fault(req.ContentID) == "" {
		s.mu.Lock()
		s.ingested[req.ContentID]++
		s.mu.Unlock()
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) retryAfter(w http.ResponseWriter, c Control) {
	if c.RetryAfterS > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(c.RetryAfterS))
	}
}

// The service's request limits (the contract's table).
const (
	maxURLChars      = 2048
	maxTitleChars    = 500
	minMarkdownChars = 50
	maxMarkdownChars = 1_000_000
	maxChunks        = 1000
	minChunkChars    = 10
	maxChunkChars    = 10_000
)

// validate applies the service's limits and returns the first breach.
func validate(r *IngestRequest) *validationDetail {
	bad := func(msg string, loc ...any) *validationDetail {
		return &validationDetail{Loc: append([]any{"body"}, loc...), Msg: msg, Type: "value_error"}
	}
	n := utf8.RuneCountInString
	switch {
	case r.ContentID <= 0:
		return bad("ensure this value is greater than 0", "content_id")
	case n(r.URL) > maxURLChars:
		return bad(fmt.Sprintf("ensure this value has at most %d characters", maxURLChars), "url")
	case !strings.HasPrefix(r.URL, "http://") && !strings.HasPrefix(r.URL, "https://"):
		return bad("URL must start with http:// or https://", "url")
	case n(r.Title) > maxTitleChars:
		return bad(fmt.Sprintf("ensure this value has at most %d characters", maxTitleChars), "title")
	case n(r.Markdown) < minMarkdownChars || n(r.Markdown) > maxMarkdownChars:
		return bad(fmt.Sprintf("markdown must have %d to %d characters", minMarkdownChars, maxMarkdownChars), "markdown")
	case len(r.Chunks) < 1 || len(r.Chunks) > maxChunks:
		return bad(fmt.Sprintf("chunks must have 1 to %d items", maxChunks), "chunks")
	}
	if len(r.Metadata) > 0 && string(r.Metadata) != "null" {
		var m map[string]any
		if json.Unmarshal(r.Metadata, &m) != nil {
			return bad("value is not a valid dict", "metadata")
		}
	}
	for i, ch := range r.Chunks {
		switch {
		case ch.VectorRowID <= 0:
			return bad("ensure this value is greater than 0", "chunks", i, "vector_rowid")
		case ch.ChunkIndex < 0:
			return bad("ensure this value is greater than or equal to 0", "chunks", i, "chunk_index")
		case i > 0 && ch.ChunkIndex <= r.Chunks[i-1].ChunkIndex:
			return bad("chunk_index must be strictly increasing", "chunks", i, "chunk_index")
		case ch.CharStart < 0:
			return bad("ensure this value is greater than or equal to 0", "chunks", i, "char_start")
		case ch.CharEnd <= ch.CharStart:
			return bad("char_end must be greater than char_start", "chunks", i, "char_end")
		case n(ch.Text) < minChunkChars || n(ch.Text) > maxChunkChars:
			return bad(fmt.Sprintf("text must have %d to %d characters", minChunkChars, maxChunkChars), "chunks", i, "text")
		}
	}
	return nil
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

func ptr(s string) *string { return &s }

// Extract is the fake's extraction: an entity for the document, appearing
// in every chunk; an entity for each chunk's topic, appearing in that
// chunk; a relationship from the document to each topic. The same request
// always gives the same answer.
func Extract(req IngestRequest) IngestResponse {
	resp := IngestResponse{
		Success:         true,
		ContentID:       req.ContentID,
		Neo4jDocumentID: fmt.Sprintf("doc-%d", req.ContentID),
		Entities:        []Entity{},
		Relationships:   []Relationship{},
		Summary: Summary{
			EntitiesByType:           map[string]int{},
			RelationshipsByPredicate: map[string]int{},
		},
	}
	doc := fmt.Sprintf("Document %d", req.ContentID)
	docNode := fmt.Sprintf("node-%d-doc", req.ContentID)
	docEntity := Entity{
		Text: doc, Normalized: strings.ToLower(doc), TypePrimary: "Document", TypeSub1: ptr("WebPage"),
		TypeFull: "Document.WebPage", Confidence: 0.9, Neo4jNodeID: ptr(docNode),
		ChunkAppearances: []ChunkAppearance{}, SpansMultipleChunks: len(req.Chunks) > 1,
	}
	var topics []Entity
	for _, ch := range req.Chunks {
		snippet := prefix(ch.Text, 40)
		end := len([]rune(snippet))
		docEntity.ChunkAppearances = append(docEntity.ChunkAppearances,
			ChunkAppearance{VectorRowID: ch.VectorRowID, ChunkIndex: ch.ChunkIndex, OffsetStart: 0, OffsetEnd: end})
		topic := fmt.Sprintf("Topic %d.%d", req.ContentID, ch.ChunkIndex)
		topicNode := fmt.Sprintf("node-%d-%d", req.ContentID, ch.ChunkIndex)
		topics = append(topics, Entity{
			Text: topic, Normalized: strings.ToLower(topic), TypePrimary: "Concept", TypeSub1: ptr("Topic"),
			TypeFull: "Concept.Topic", Confidence: 0.8, Neo4jNodeID: ptr(topicNode),
			ContextBefore: "", ContextAfter: snippet, Sentence: snippet,
			ChunkAppearances: []ChunkAppearance{{VectorRowID: ch.VectorRowID, ChunkIndex: ch.ChunkIndex, OffsetStart: 1, OffsetEnd: end}},
		})
		resp.Relationships = append(resp.Relationships, Relationship{
			SubjectText: doc, Predicate: "mentions", ObjectText: topic,
			SubjectNeo4jID: ptr(docNode), ObjectNeo4jID: ptr(topicNode), Confidence: 0.75,
			Context:             snippet,
			Neo4jRelationshipID: ptr(fmt.Sprintf("rel-%d-%d", req.ContentID, ch.ChunkIndex)),
			ChunkRowIDs:         []int64{ch.VectorRowID},
		})
	}
	if len(req.Chunks) > 0 {
		resp.Entities = append(resp.Entities, docEntity)
		resp.Entities = append(resp.Entities, topics...)
	}
	for _, e := range resp.Entities {
		resp.Summary.EntitiesByType[e.TypePrimary]++
	}
	for _, r := range resp.Relationships {
		resp.Summary.RelationshipsByPredicate[r.Predicate]++
	}
	resp.Summary.ChunksWithEntities = len(req.Chunks)
	if len(req.Chunks) > 0 {
		resp.Summary.AvgEntitiesPerChunk = float64(2*len(req.Chunks)) / float64(len(req.Chunks))
	}
	resp.EntitiesExtracted = len(resp.Entities)
	resp.RelationshipsExtracted = len(resp.Relationships)
	return resp
}

// defaultPadChars is the default length of a padding entity's sentence:
// some 1 KiB per entity in all, the size of a real entity with its context.
const defaultPadChars = 800

// pad appends padding entities with sentences of padChars characters to
// resp, each appearing in the request's first chunk, until its JSON is
// about size bytes long.
func pad(resp *IngestResponse, req IngestRequest, size int64, padChars int) {
	if len(req.Chunks) == 0 {
		return
	}
	base, _ := json.Marshal(resp)
	ch := req.Chunks[0]
	sentence := strings.Repeat("p", cmp.Or(padChars, defaultPadChars))
	one := func(i int) Entity {
		text := fmt.Sprintf("Padding %09d", i)
		return Entity{
			Text: text, Normalized: strings.ToLower(text), TypePrimary: "Padding", TypeFull: "Padding", Confidence: 0.5,
			Sentence:         sentence,
			ChunkAppearances: []ChunkAppearance{{VectorRowID: ch.VectorRowID, ChunkIndex: ch.ChunkIndex, OffsetStart: 0, OffsetEnd: 1}},
		}
	}
	e, _ := json.Marshal(one(0))
	n := int(max(0, (size-int64(len(base)))/int64(len(e)+1)))
	for i := range n {
		resp.Entities = append(resp.Entities, one(i))
	}
	resp.Summary.EntitiesByType["Padding"] += n
	resp.EntitiesExtracted = len(resp.Entities)
	resp.Summary.AvgEntitiesPerChunk = float64(2*len(req.Chunks)+n) / float64(len(req.Chunks))
}

func (s *Server) getControl(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Control())
}

// controlPatch is the body of POST /control: fields left out keep their
// current value.
type controlPatch struct {
	LatencyMS   *int              `json:"latency_ms"`
	Outage      *bool             `json:"outage"`
	Degraded    *bool             `json:"degraded"`
	FailIDs     *[]int64          `json:"fail_ids"`
	Faults      *map[int64]string `json:"faults"`
	RetryAfterS *int              `json:"retry_after_s"`
	AnswerBytes *int64            `json:"answer_bytes"`
	PadChars    *int              `json:"pad_chars"`
	ErrorText   *string           `json:"error_text"`
}

func (s *Server) postControl(w http.ResponseWriter, r *http.Request) {
	var p controlPatch
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	bad := func(msg string) {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: msg, ErrorType: "ValidationError", Timestamp: timestamp()})
	}
	if err := dec.Decode(&p); err != nil {
		bad("invalid control body: " + err.Error())
		return
	}
	if p.LatencyMS != nil && *p.LatencyMS < 0 {
		bad(fmt.Sprintf("invalid latency_ms %d: must be zero or more", *p.LatencyMS))
		return
	}
	if p.RetryAfterS != nil && *p.RetryAfterS < 0 {
		bad(fmt.Sprintf("invalid retry_after_s %d: must be zero or more", *p.RetryAfterS))
		return
	}
	if p.AnswerBytes != nil && *p.AnswerBytes < 0 {
		bad(fmt.Sprintf("invalid answer_bytes %d: must be zero or more", *p.AnswerBytes))
		return
	}
	if p.PadChars != nil && *p.PadChars < 0 {
		bad(fmt.Sprintf("invalid pad_chars %d: must be zero or more", *p.PadChars))
		return
	}
	if p.Faults != nil {
		for id, f := range *p.Faults {
			known := false
			for _, k := range Faults {
				known = known || k == f
			}
			if !known {
				bad(fmt.Sprintf("invalid fault %q for content_id %d: must be one of %s", f, id, strings.Join(Faults, ", ")))
				return
			}
		}
	}
	s.mu.Lock()
	if p.LatencyMS != nil {
		s.control.LatencyMS = *p.LatencyMS
	}
	if p.Outage != nil {
		s.control.Outage = *p.Outage
	}
	if p.Degraded != nil {
		s.control.Degraded = *p.Degraded
	}
	if p.FailIDs != nil {
		s.control.FailIDs = append([]int64(nil), (*p.FailIDs)...)
	}
	if p.Faults != nil {
		s.control.Faults = *p.Faults
	}
	if p.RetryAfterS != nil {
		s.control.RetryAfterS = *p.RetryAfterS
	}
	if p.AnswerBytes != nil {
		s.control.AnswerBytes = *p.AnswerBytes
	}
	if p.PadChars != nil {
		s.control.PadChars = *p.PadChars
	}
	if p.ErrorText != nil {
		s.control.ErrorText = *p.ErrorText
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.Control())
}

func (s *Server) getIngested(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Ingested())
}

func (s *Server) getReceived(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Received())
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
