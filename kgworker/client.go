package kgworker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// Errors from the KG service client.
var (
	// ErrServiceUnavailable means the KG service could not take the request
	// at all: it is down, unreachable or answered 503. Items are handed
	// back to the queue without spending an attempt.
	ErrServiceUnavailable = errors.New("kg service unavailable")
	// ErrServiceDisabled means KG processing is switched off in the
	// configuration; nothing is sent.
	ErrServiceDisabled = errors.New("kg service disabled")
	// ErrIngestFailed means the KG service took the request and rejected
	// or failed this item. The item spends an attempt.
	ErrIngestFailed = errors.New("kg ingest failed")
)

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

// Entity is an entity the KG service found in a chunk.
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

// Relationship is a relationship between two entities the KG service found.
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

// IngestResult is the KG service's answer to an ingest request.
type IngestResult struct {
	Success                bool           `json:"success"`
	ContentID              int64          `json:"content_id"`
	EntitiesExtracted      int            `json:"entities_extracted"`
	RelationshipsExtracted int            `json:"relationships_extracted"`
	ProcessingTimeMS       float64        `json:"processing_time_ms"`
	Entities               []Entity       `json:"entities"`
	Relationships          []Relationship `json:"relationships"`
	DocumentID             string         `json:"document_id"`
	Error                  string         `json:"error,omitempty"`
	ErrorType              string         `json:"error_type,omitempty"`
}

// ServiceStatus is what the client last learned about the KG service.
type ServiceStatus struct {
	Enabled             bool      `json:"enabled"`
	URL                 string    `json:"url"`
	IsHealthy           bool      `json:"is_healthy"`
	LastHealthCheck     time.Time `json:"last_health_check,omitzero"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
}

// ClientOpts configures a Client. Zero durations take the defaults.
type ClientOpts struct {
	// URL is the service's base URL, e.g. http://localhost:8088.
	URL string
	// Enabled switches KG processing on; a disabled client sends nothing.
	Enabled bool
	// Timeout bounds one ingest request. The default is 30 minutes: the
	// service extracts entities from whole documents.
	Timeout time.Duration
	// HealthTimeout bounds one health check. The default is 5 seconds.
	HealthTimeout time.Duration
	// Transport carries the requests; nil means http.DefaultTransport.
	Transport http.RoundTripper
}

// Client talks to the KG service and keeps track of its health.
type Client struct {
	enabled       bool
	base          *url.URL
	timeout       time.Duration
	healthTimeout time.Duration
	http          *http.Client

	mu     sync.Mutex
	status ServiceStatus
}

// maxResponseBytes bounds how much of a response the client reads.
const maxResponseBytes = 256 << 20

// NewClient returns a client for the service described by opts.
func NewClient(opts ClientOpts) (*Client, error) {
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("invalid service_timeout %s: must be positive", opts.Timeout)
	}
	if opts.HealthTimeout < 0 {
		return nil, fmt.Errorf("invalid health timeout %s: must be positive", opts.HealthTimeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Minute
	}
	if opts.HealthTimeout == 0 {
		opts.HealthTimeout = 5 * time.Second
	}
	c := &Client{
		enabled:       opts.Enabled,
		timeout:       opts.Timeout,
		healthTimeout: opts.HealthTimeout,
		http:          &http.Client{Transport: opts.Transport},
		status:        ServiceStatus{Enabled: opts.Enabled, URL: config.RedactURL(opts.URL)},
	}
	if opts.Enabled || opts.URL != "" {
		u, err := url.Parse(opts.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("invalid service_url %q: must be an http or https URL with a host", config.RedactURL(opts.URL))
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		c.base = u
	}
	return c, nil
}

// Status returns a snapshot of what the client knows about the service.
func (c *Client) Status() ServiceStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Client) endpoint(path string) string {
	u := *c.base
	u.Path += path
	return u.String()
}

// record notes the outcome of a call: checked says whether it was a health
// check, healthy whether the service was usable.
func (c *Client) record(checked, healthy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if checked {
		c.status.LastHealthCheck = time.Now().UTC()
	}
	c.status.IsHealthy = healthy
	if healthy {
		c.status.ConsecutiveFailures = 0
	} else {
		c.status.ConsecutiveFailures++
	}
}

// Health asks the service whether it can take work. It returns nil when the
// service answers 200 with status "healthy" or "degraded", an error wrapping
// ErrServiceUnavailable otherwise, and ErrServiceDisabled when processing
// is switched off.
func (c *Client) Health(ctx context.Context) error {
	if !c.enabled {
		return ErrServiceDisabled
	}
	err := c.health(ctx)
	if ctx.Err() != nil {
		// The caller gave up; that says nothing about the service.
		return ctx.Err()
	}
	c.record(true, err == nil)
	return err
}

func (c *Client) health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.healthTimeout)
	defer cancel()
	target := c.endpoint("/health")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("check health at %s: %w", target, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: check health at %s: %v", ErrServiceUnavailable, target, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	decodeErr := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: health at %s answered %s", ErrServiceUnavailable, target, resp.Status)
	}
	if decodeErr != nil {
		return fmt.Errorf("%w: health at %s: unreadable answer: %v", ErrServiceUnavailable, target, decodeErr)
	}
	if body.Status != "healthy" && body.Status != "degraded" {
		return fmt.Errorf("%w: health at %s reports status %q", ErrServiceUnavailable, target, body.Status)
	}
	return nil
}

// Ingest sends one document to the service and returns its result. Errors
// wrap ErrServiceUnavailable when the service could not take the request
// (connection failure, 502, 503, 504) and ErrIngestFailed when it failed this
// item (success false, any other error status, no answer within the
// timeout). When ctx itself ends, the error wraps ctx's error instead.
func (c *Client) Ingest(ctx context.Context, in *IngestRequest) (*IngestResult, error) {
	if !c.enabled {
		return nil, ErrServiceDisabled
	}
	res, err := c.ingest(ctx, in)
	switch {
	case err == nil:
		c.record(false, true)
	case errors.Is(err, ErrServiceUnavailable):
		c.record(false, false)
	}
	return res, err
}

func (c *Client) ingest(ctx context.Context, in *IngestRequest) (*IngestResult, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("ingest content_id %d: %w", in.ContentID, err)
	}
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	target := c.endpoint("/api/v1/ingest")
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("ingest content_id %d: %w", in.ContentID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var raw []byte
		raw, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		if err == nil {
			return c.interpret(in.ContentID, target, resp, raw)
		}
	}
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("ingest content_id %d: %w", in.ContentID, ctx.Err())
	case errors.Is(reqCtx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("%w: content_id %d: no answer from %s within %s", ErrIngestFailed, in.ContentID, target, c.timeout)
	default:
		return nil, fmt.Errorf("%w: ingest content_id %d at %s: %v", ErrServiceUnavailable, in.ContentID, target, err)
	}
}

func (c *Client) interpret(contentID int64, target string, resp *http.Response, raw []byte) (*IngestResult, error) {
	var res IngestResult
	decodeErr := json.Unmarshal(raw, &res)
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return nil, fmt.Errorf("%w: ingest content_id %d at %s answered %s%s",
			ErrServiceUnavailable, contentID, target, resp.Status, describe(decodeErr, &res))
	case http.StatusOK:
	default:
		return nil, fmt.Errorf("%w: content_id %d: %s answered %s%s",
			ErrIngestFailed, contentID, target, resp.Status, describe(decodeErr, &res))
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("%w: content_id %d: unreadable answer from %s: %v", ErrIngestFailed, contentID, target, decodeErr)
	}
	if !res.Success {
		return nil, fmt.Errorf("%w: content_id %d: service reports failure%s", ErrIngestFailed, contentID, describe(nil, &res))
	}
	if res.ContentID != 0 && res.ContentID != contentID {
		return nil, fmt.Errorf("%w: content_id %d: service answered for content_id %d", ErrIngestFailed, contentID, res.ContentID)
	}
	return &res, nil
}

// describe renders the service's own error fields for an error message.
func describe(decodeErr error, res *IngestResult) string {
	if decodeErr != nil || res.Error == "" {
		return ""
	}
	if res.ErrorType != "" {
		return fmt.Sprintf(": %s: %s", res.ErrorType, res.Error)
	}
	return ": " + res.Error
}
