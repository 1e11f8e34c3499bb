package kgdb

import (
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The KG service's request and answer, as the contract gives them, are
// what the database stores: a document is loaded as the request it becomes,
// and an answer is written back as it came.

// Chunk is one chunk of a document as the KG service receives it.
// VectorRowID is the content_chunks rowid.
type Chunk struct {
	VectorRowID int64  `json:"vector_rowid"`
	ChunkIndex  int    `json:"chunk_index"`
	CharStart   int    `json:"char_start"`
	CharEnd     int    `json:"char_end"`
	Text        string `json:"text"`
}

// IngestRequest is the body of POST /api/v1/ingest.
type IngestRequest struct {
	ContentID int64           `json:"content_id"`
	URL       string          `json:"url"`
	Title     string          `json:"title"`
	Markdown  string          `json:"markdown"`
	Chunks    []Chunk         `json:"chunks"`
	Metadata  json.RawMessage `json:"metadata"`
}

// The KG service's request limits; it answers 422 outside them.
const (
	MaxURLChars      = 2048
	MaxTitleChars    = 500
	MinMarkdownChars = 50
	MaxMarkdownChars = 1_000_000
	MinChunks        = 1
	MaxChunks        = 1000
	MinChunkChars    = 10
	MaxChunkChars    = 10_000
)

// NewIngestRequest builds the request for a loaded document.
func NewIngestRequest(c *Content) *IngestRequest {
	chunks := c.Chunks
	if chunks == nil {
		chunks = []Chunk{}
	}
	meta := c.Metadata
	if len(meta) == 0 {
		meta = json.RawMessage("{}")
	}
	return &IngestRequest{ContentID: c.ID, URL: c.URL, Title: c.Title, Markdown: c.Markdown, Chunks: chunks, Metadata: meta}
}

// chars counts characters the way the service does: Unicode code points.
func chars(s string) int { return len([]rune(s)) }

// Validate checks the request against the service's limits and names the
// first field that breaks one.
func (r *IngestRequest) Validate() error {
	bad := func(field string, v any, rule string) error {
		return fmt.Errorf("invalid %s %v: %s", field, v, rule)
	}
	switch {
	case r.ContentID <= 0:
		return bad("content_id", r.ContentID, "must be greater than 0")
	case chars(r.URL) > MaxURLChars:
		return bad("url", fmt.Sprintf("of %d characters", chars(r.URL)), fmt.Sprintf("must be at most %d characters", MaxURLChars))
	case !strings.HasPrefix(r.URL, "http://") && !strings.HasPrefix(r.URL, "https://"):
		return bad("url", strconv.Quote(r.URL), "must start with http:// or https://")
	case chars(r.Title) > MaxTitleChars:
		return bad("title", fmt.Sprintf("of %d characters", chars(r.Title)), fmt.Sprintf("must be at most %d characters", MaxTitleChars))
	}
	if n := chars(r.Markdown); n < MinMarkdownChars || n > MaxMarkdownChars {
		return bad("markdown", fmt.Sprintf("of %d characters", n), fmt.Sprintf("must have %d to %d characters", MinMarkdownChars, MaxMarkdownChars))
	}
	if n := len(r.Chunks); n < MinChunks || n > MaxChunks {
		return bad("chunks", fmt.Sprintf("list of %d", n), fmt.Sprintf("must have %d to %d chunks", MinChunks, MaxChunks))
	}
	for i, ch := range r.Chunks {
		f := fmt.Sprintf("chunks[%d].", i)
		switch {
		case ch.VectorRowID <= 0:
			return bad(f+"vector_rowid", ch.VectorRowID, "must be greater than 0")
		case ch.ChunkIndex < 0:
			return bad(f+"chunk_index", ch.ChunkIndex, "must be 0 or more")
		case i > 0 && ch.ChunkIndex <= r.Chunks[i-1].ChunkIndex:
			return bad(f+"chunk_index", ch.ChunkIndex, fmt.Sprintf("must be greater than the previous chunk's %d", r.Chunks[i-1].ChunkIndex))
		case ch.CharStart < 0:
			return bad(f+"char_start", ch.CharStart, "must be 0 or more")
		case ch.CharEnd <= ch.CharStart:
			return bad(f+"char_end", ch.CharEnd, fmt.Sprintf("must be greater than char_start %d", ch.CharStart))
		}
		if n := chars(ch.Text); n < MinChunkChars || n > MaxChunkChars {
			return bad(f+"text", fmt.Sprintf("of %d characters", n), fmt.Sprintf("must have %d to %d characters", MinChunkChars, MaxChunkChars))
		}
	}
	if len(r.Metadata) > 0 && !json.Valid(r.Metadata) {
		return bad("metadata", "", "must be a JSON object")
	}
	return nil
}

// ChunkAppearance is where an entity appears in one chunk.
type ChunkAppearance struct {
	VectorRowID int64 `json:"vector_rowid"`
	ChunkIndex  int   `json:"chunk_index"`
	OffsetStart int   `json:"offset_start"`
	OffsetEnd   int   `json:"offset_end"`
}

// Entity is an entity the KG service found in the document.
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

// Relationship is a relationship between two entities the KG service found.
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

// Summary is the service's overview of one document's extraction.
type Summary struct {
	EntitiesByType           map[string]int `json:"entities_by_type"`
	RelationshipsByPredicate map[string]int `json:"relationships_by_predicate"`
	ChunksWithEntities       int            `json:"chunks_with_entities"`
	AvgEntitiesPerChunk      float64        `json:"avg_entities_per_chunk"`
}

// IngestResult is the KG service's successful answer to an ingest request.
type IngestResult struct {
	Success                bool           `json:"success"`
	ContentID              int64          `json:"content_id"`
	Neo4jDocumentID        string         `json:"neo4j_document_id"`
	EntitiesExtracted      int            `json:"entities_extracted"`
	RelationshipsExtracted int            `json:"relationships_extracted"`
	ProcessingTimeMS       float64        `json:"processing_time_ms"`
	Entities               []Entity       `json:"entities"`
	Relationships          []Relationship `json:"relationships"`
	// Summary is the answer's summary object, kept as the service sent
	// it after it was checked against Summary.
	Summary json.RawMessage `json:"summary"`
}

// The answer's types decode in one streaming pass (UnmarshalJSONFrom, which
// both encoding/json and encoding/json/v2 prefer) and insist on the fields
// the write-back needs. UnmarshalJSON does the same for a caller holding the
// value's bytes.

// required is a field the write-back needs: set records that the value
// had it, not null.
type required[T any] struct {
	v   T
	set bool
}

// UnmarshalJSONFrom decodes the field from dec as it arrives; null leaves
// it unset.
func (r *required[T]) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		return err
	}
	r.set = true
	return jsonv2.UnmarshalDecode(dec, &r.v)
}

// UnmarshalJSON decodes the field; null leaves it unset.
func (r *required[T]) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	r.set = true
	return json.Unmarshal(data, &r.v)
}

// lacking names the fields of an answer's value that are not set.
func lacking(what string, fields ...any) error {
	var out []string
	for i := 0; i+1 < len(fields); i += 2 {
		if !fields[i+1].(bool) {
			out = append(out, fields[i].(string))
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fmt.Errorf("%s lacks %s", what, strings.Join(out, ", "))
}

// entityFields is an entity with its required fields noting whether they
// were there.
type entityFields struct {
	plainEntity
	Text             required[string]            `json:"text"`
	Normalized       required[string]            `json:"normalized"`
	TypePrimary      required[string]            `json:"type_primary"`
	Confidence       required[float64]           `json:"confidence"`
	ChunkAppearances required[[]ChunkAppearance] `json:"chunk_appearances"`
}

type plainEntity Entity

func (w *entityFields) entity(e *Entity) error {
	if err := lacking("entity", "text", w.Text.set, "normalized", w.Normalized.set, "type_primary", w.TypePrimary.set,
		"confidence", w.Confidence.set, "chunk_appearances", w.ChunkAppearances.set); err != nil {
		return err
	}
	*e = Entity(w.plainEntity)
	e.Text, e.Normalized, e.TypePrimary, e.Confidence, e.ChunkAppearances = w.Text.v, w.Normalized.v, w.TypePrimary.v, w.Confidence.v, w.ChunkAppearances.v
	return nil
}

// UnmarshalJSONFrom decodes an entity from dec as it arrives.
func (e *Entity) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	var w entityFields
	if err := jsonv2.UnmarshalDecode(dec, &w); err != nil {
		return err
	}
	return w.entity(e)
}

// UnmarshalJSON decodes an entity.
func (e *Entity) UnmarshalJSON(data []byte) error {
	var w entityFields
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	return w.entity(e)
}

// relationshipFields is a relationship with its required fields noting
// whether they were there.
type relationshipFields struct {
	plainRelationship
	SubjectText required[string]  `json:"subject_text"`
	Predicate   required[string]  `json:"predicate"`
	ObjectText  required[string]  `json:"object_text"`
	Confidence  required[float64] `json:"confidence"`
}

type plainRelationship Relationship

func (w *relationshipFields) relationship(r *Relationship) error {
	if err := lacking("relationship", "subject_text", w.SubjectText.set, "predicate", w.Predicate.set,
		"object_text", w.ObjectText.set, "confidence", w.Confidence.set); err != nil {
		return err
	}
	*r = Relationship(w.plainRelationship)
	r.SubjectText, r.Predicate, r.ObjectText, r.Confidence = w.SubjectText.v, w.Predicate.v, w.ObjectText.v, w.Confidence.v
	return nil
}

// UnmarshalJSONFrom decodes a relationship from dec as it arrives.
func (r *Relationship) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	var w relationshipFields
	if err := jsonv2.UnmarshalDecode(dec, &w); err != nil {
		return err
	}
	return w.relationship(r)
}

// UnmarshalJSON decodes a relationship.
func (r *Relationship) UnmarshalJSON(data []byte) error {
	var w relationshipFields
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	return w.relationship(r)
}

// appearanceFields is an appearance, every field noting whether it was
// there.
type appearanceFields struct {
	VectorRowID required[int64] `json:"vector_rowid"`
	ChunkIndex  required[int]   `json:"chunk_index"`
	OffsetStart required[int]   `json:"offset_start"`
	OffsetEnd   required[int]   `json:"offset_end"`
}

func (w *appearanceFields) appearance(a *ChunkAppearance) error {
	if err := lacking("chunk appearance", "vector_rowid", w.VectorRowID.set, "chunk_index", w.ChunkIndex.set,
		"offset_start", w.OffsetStart.set, "offset_end", w.OffsetEnd.set); err != nil {
		return err
	}
	*a = ChunkAppearance{VectorRowID: w.VectorRowID.v, ChunkIndex: w.ChunkIndex.v, OffsetStart: w.OffsetStart.v, OffsetEnd: w.OffsetEnd.v}
	return nil
}

// UnmarshalJSONFrom decodes an appearance from dec as it arrives.
func (a *ChunkAppearance) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	var w appearanceFields
	if err := jsonv2.UnmarshalDecode(dec, &w); err != nil {
		return err
	}
	return w.appearance(a)
}

// UnmarshalJSON decodes an appearance and insists on all of its fields.
func (a *ChunkAppearance) UnmarshalJSON(data []byte) error {
	var w appearanceFields
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	return w.appearance(a)
}

// ServiceStatus is what the client last learned about the KG service.
type ServiceStatus struct {
	Enabled             bool      `json:"enabled"`
	URL                 string    `json:"url"`
	IsHealthy           bool      `json:"is_healthy"`
	LastHealthCheck     time.Time `json:"last_health_check,omitzero"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
}

// WorkerStats counts what one worker has done since it started. Processed is the
// sum of the other three; items handed back to the queue are not counted.
type WorkerStats struct {
	TotalProcessed  int       `json:"total_processed"`
	TotalSuccess    int       `json:"total_success"`
	TotalFailed     int       `json:"total_failed"`
	TotalSkipped    int       `json:"total_skipped"`
	LastProcessedAt time.Time `json:"last_processed_at,omitzero"`
}
