package kgworker

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
)

// Errors from the KG service client. Every error Ingest returns is a
// *ServiceError whose Fault says what the worker does with the item.
var (
	// ErrServiceUnavailable means nothing reached the KG service: it is
	// down or unreachable. The item goes back to the queue without
	// spending an attempt.
	ErrServiceUnavailable = errors.New("kg service unavailable")
	// ErrServiceDisabled means KG processing is switched off in the
	// configuration; nothing is sent.
	ErrServiceDisabled = errors.New("kg service disabled")
	// ErrIngestFailed means the request was sent and the attempt failed:
	// the connection broke, no answer came in time, the service answered
	// with an error status, or its answer broke the contract. The item
	// spends an attempt.
	ErrIngestFailed = errors.New("kg ingest failed")
	// ErrBadAnswer is the ErrIngestFailed of an answer that breaks the
	// contract: unreadable, wrong types, required fields missing, counts
	// that disagree with the lists, another document's answer.
	ErrBadAnswer = errors.New("kg service answer breaks the contract")
	// ErrDeferred means the service answered 429 or 503: it is busy or
	// still starting, whatever the document. The item goes back without
	// spending an attempt, due again after the Retry-After.
	ErrDeferred = errors.New("kg service asked to try again later")
	// ErrRejected means the service answered 422: the request broke its
	// limits, and sending it again cannot help. The item fails for good.
	ErrRejected = errors.New("kg service rejected the request")
)

// Fault is what a failed ingest means for the item.
type Fault int

// The faults, as ClassifyFault gives them.
const (
	// FaultNone: no error.
	FaultNone Fault = iota
	// FaultNotSent: nothing was sent; hand the item back, no attempt.
	FaultNotSent
	// FaultAttempt: the request was sent and failed; spend an attempt
	// and back off.
	FaultAttempt
	// FaultFinal: the service refuses this request for good.
	FaultFinal
	// FaultDeferred: the service asked to be left alone for a while (429,
	// or 503 while its processors start): hand the item back without an
	// attempt, not due again before the delay, and claim nothing
	// meanwhile.
	FaultDeferred
)

// ServiceError is an error of Ingest or Health.
type ServiceError struct {
	// Kind is ErrServiceUnavailable, ErrIngestFailed, ErrDeferred or
	// ErrRejected.
	Kind error
	// RetryAfter is the delay the service asked for with Retry-After on a
	// 429 or 503, zero when it gave none.
	RetryAfter time.Duration
	// Msg says what happened.
	Msg string
	// Cause is the underlying error, ErrBadAnswer for contract breaches.
	Cause error
}

func (e *ServiceError) Error() string { return e.Kind.Error() + ": " + e.Msg }

// Unwrap gives errors.Is the kind and the cause.
func (e *ServiceError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

// ClassifyFault is the one place that turns an ingest error into what the
// worker does: hand back, spend an attempt, or fail for good, and the least
// delay before the item is tried again.
func ClassifyFault(err error) (Fault, time.Duration) {
	var se *ServiceError
	switch {
	case err == nil:
		return FaultNone, 0
	case errors.As(err, &se):
		switch {
		case errors.Is(se.Kind, ErrServiceUnavailable):
			return FaultNotSent, se.RetryAfter
		case errors.Is(se.Kind, ErrRejected):
			return FaultFinal, 0
		case errors.Is(se.Kind, ErrDeferred):
			return FaultDeferred, max(se.RetryAfter, minDefer)
		default:
			return FaultAttempt, se.RetryAfter
		}
	case errors.Is(err, ErrServiceDisabled):
		return FaultNotSent, 0
	default:
		// Anything else happened after the request was built and may have
		// been sent: it counts.
		return FaultAttempt, 0
	}
}

// present is a field of the answer that notes whether the answer has it at
// all, null included.
type present[T any] struct {
	set bool
	v   T
}

// UnmarshalJSONFrom decodes the field from dec as it arrives.
func (p *present[T]) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	p.set = true
	return jsonv2.UnmarshalDecode(dec, &p.v)
}

// answer is the success model, each field noting whether it was there.
// Its names are matched exactly, as the worker always did; those of the
// entities and relationships without regard to case, as encoding/json does.
type answer struct {
	Success                present[bool]                `json:"success,case:strict"`
	ContentID              present[int64]               `json:"content_id,case:strict"`
	Neo4jDocumentID        present[string]              `json:"neo4j_document_id,case:strict"`
	EntitiesExtracted      present[int]                 `json:"entities_extracted,case:strict"`
	RelationshipsExtracted present[int]                 `json:"relationships_extracted,case:strict"`
	ProcessingTimeMS       present[float64]             `json:"processing_time_ms,case:strict"`
	Entities               present[[]kgdb.Entity]       `json:"entities,case:strict"`
	Relationships          present[[]kgdb.Relationship] `json:"relationships,case:strict"`
	Summary                present[json.RawMessage]     `json:"summary,case:strict"`
}

// answerOptions decode as encoding/json does (field names matched without
// regard to case, duplicate names and invalid UTF-8 let through), except
// that an error names where in the answer it is, as a JSON pointer.
var answerOptions = jsonv2.JoinOptions(json.DefaultOptionsV1(), json.ReportErrorsWithLegacySemantics(false))

// decodeResult decodes a success answer from body in one pass, as it
// arrives, holding no copy of the whole answer: the decoder reads no more
// than MaxValueBytes past the end of the last whole token, so that a single
// string (or the summary, or an unknown field, which are read whole) larger
// than that fails with errValueTooLarge. It insists on every field of the
// success model; the checks against the request are in checkResult.
func decodeResult(body io.Reader) (*kgdb.IngestResult, error) {
	ar := &answerReader{r: body}
	dec := jsontext.NewDecoder(ar, answerOptions)
	ar.dec = dec
	var a answer
	if err := jsonv2.UnmarshalDecode(dec, &a); err != nil {
		if errors.Is(err, errValueTooLarge) || errors.Is(err, errTooLarge) {
			return nil, ar.err
		}
		return nil, err
	}
	if !a.Success.set {
		return nil, errors.New("answer lacks success")
	}
	if !a.Success.v {
		return nil, errors.New("answer reports success false")
	}
	var lacking []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"content_id", a.ContentID.set}, {"neo4j_document_id", a.Neo4jDocumentID.set}, {"entities_extracted", a.EntitiesExtracted.set},
		{"relationships_extracted", a.RelationshipsExtracted.set}, {"processing_time_ms", a.ProcessingTimeMS.set},
		{"entities", a.Entities.set}, {"relationships", a.Relationships.set}, {"summary", a.Summary.set}} {
		if !f.set {
			lacking = append(lacking, f.name)
		}
	}
	if len(lacking) > 0 {
		return nil, fmt.Errorf("answer lacks %s", strings.Join(lacking, ", "))
	}
	var s kgdb.Summary
	if err := json.Unmarshal(a.Summary.v, &s); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	if s.EntitiesByType == nil || s.RelationshipsByPredicate == nil {
		return nil, errors.New("summary lacks entities_by_type or relationships_by_predicate")
	}
	if a.Entities.v == nil || a.Relationships.v == nil {
		return nil, errors.New("answer has null entities or relationships")
	}
	return &kgdb.IngestResult{
		Success:                true,
		ContentID:              a.ContentID.v,
		Neo4jDocumentID:        a.Neo4jDocumentID.v,
		EntitiesExtracted:      a.EntitiesExtracted.v,
		RelationshipsExtracted: a.RelationshipsExtracted.v,
		ProcessingTimeMS:       a.ProcessingTimeMS.v,
		Entities:               a.Entities.v,
		Relationships:          a.Relationships.v,
		Summary:                a.Summary.v,
	}, nil
}

// checkResult holds a decoded answer r against the request req it answers.
func checkResult(r *kgdb.IngestResult, req *kgdb.IngestRequest) error {
	if r.ContentID != req.ContentID {
		return fmt.Errorf("answer is for content_id %d", r.ContentID)
	}
	if r.Neo4jDocumentID == "" {
		return errors.New("neo4j_document_id is empty")
	}
	if r.EntitiesExtracted != len(r.Entities) {
		return fmt.Errorf("entities_extracted %d but %d entities", r.EntitiesExtracted, len(r.Entities))
	}
	if r.RelationshipsExtracted != len(r.Relationships) {
		return fmt.Errorf("relationships_extracted %d but %d relationships", r.RelationshipsExtracted, len(r.Relationships))
	}
	isChunk := func(id int64) bool {
		return slices.ContainsFunc(req.Chunks, func(ch kgdb.Chunk) bool { return ch.VectorRowID == id })
	}
	if len(req.Chunks) > 16 {
		// A long document: a set of its chunks.
		rowids := make(map[int64]bool, len(req.Chunks))
		for _, ch := range req.Chunks {
			rowids[ch.VectorRowID] = true
		}
		isChunk = func(id int64) bool { return rowids[id] }
	}
	for i, e := range r.Entities {
		if !(e.Confidence >= 0 && e.Confidence <= 1) {
			return fmt.Errorf("entities[%d].confidence %v is not between 0 and 1", i, e.Confidence)
		}
		for j, a := range e.ChunkAppearances {
			switch {
			case !isChunk(a.VectorRowID):
				return fmt.Errorf("entities[%d].chunk_appearances[%d].vector_rowid %d is not a chunk of the request", i, j, a.VectorRowID)
			case a.OffsetStart < 0 || a.OffsetEnd < a.OffsetStart:
				return fmt.Errorf("entities[%d].chunk_appearances[%d] offsets %d..%d are not a span", i, j, a.OffsetStart, a.OffsetEnd)
			}
		}
	}
	for i, rel := range r.Relationships {
		if !(rel.Confidence >= 0 && rel.Confidence <= 1) {
			return fmt.Errorf("relationships[%d].confidence %v is not between 0 and 1", i, rel.Confidence)
		}
		for _, id := range rel.ChunkRowIDs {
			if !isChunk(id) {
				return fmt.Errorf("relationships[%d].chunk_rowids holds %d, not a chunk of the request", i, id)
			}
		}
	}
	return nil
}

// errorAnswer is the service's failure model.
type errorAnswer struct {
	Success   bool   `json:"success"`
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
	Detail    any    `json:"detail"`
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
	// MaxResponseBytes bounds an ingest answer; the default is
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Transport carries the requests; nil means a transport of this
	// client's own that keeps enough idle connections for MaxConns.
	Transport http.RoundTripper
	// MaxConns is how many requests the caller runs at once, so that the
	// default transport keeps a connection for each. Default 8.
	MaxConns int
}

// Client talks to the KG service and keeps track of its health.
type Client struct {
	enabled       bool
	base          *url.URL
	timeout       time.Duration
	healthTimeout time.Duration
	maxBytes      int64
	http          *http.Client
	// ingestURL is the ingest endpoint, made once.
	ingestURL string

	mu     sync.Mutex
	status kgdb.ServiceStatus
}

// DefaultMaxResponseBytes bounds an ingest answer. The largest real answer,
// for 1000 chunks of 10,000 characters, carries a few dozen entities per
// chunk, each with its context and sentence (a few hundred bytes): some
// tens of MiB. 96 MiB leaves room for that, and the answer is decoded as it
// arrives, without a copy of it in memory.
const DefaultMaxResponseBytes = 96 << 20

// maxHealthBytes bounds a health answer.
const maxHealthBytes = 1 << 20

// minDefer is the least delay after a 429 or 503, when the service gave no
// Retry-After.
const minDefer = time.Second

// maxRetryAfter caps the delay a Retry-After may ask for.
const maxRetryAfter = time.Hour

// NewClient returns a client for the service described by opts.
func NewClient(opts ClientOpts) (*Client, error) {
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("invalid service_timeout %s: must be positive", opts.Timeout)
	}
	if opts.HealthTimeout < 0 {
		return nil, fmt.Errorf("invalid health timeout %s: must be positive", opts.HealthTimeout)
	}
	if opts.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("invalid response size limit %d: must be positive", opts.MaxResponseBytes)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Minute
	}
	if opts.HealthTimeout == 0 {
		opts.HealthTimeout = 5 * time.Second
	}
	if opts.MaxResponseBytes == 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 8
	}
	transport := opts.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = opts.MaxConns + 1
		transport = t
	}
	c := &Client{
		enabled:       opts.Enabled,
		timeout:       opts.Timeout,
		healthTimeout: opts.HealthTimeout,
		maxBytes:      opts.MaxResponseBytes,
		status:        kgdb.ServiceStatus{Enabled: opts.Enabled, URL: config.RedactURL(opts.URL)},
	}
	c.http = &http.Client{Transport: transport, CheckRedirect: c.checkRedirect}
	if opts.Enabled || opts.URL != "" {
		u, err := url.Parse(opts.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("invalid service_url %q: must be an http or https URL with a host", config.RedactURL(opts.URL))
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		c.base = u
		c.ingestURL = c.endpoint("/api/v1/ingest")
	}
	return c, nil
}

// ErrRedirectRefused means the service redirected a request away from its
// configured origin: the document is never sent anywhere else.
var ErrRedirectRefused = errors.New("redirect off the kg service's origin refused")

// maxRedirects bounds the redirects followed within the origin.
const maxRedirects = 10

// checkRedirect follows a redirect only within the configured origin: the
// same scheme, host and port. Anything else would send the document, or the
// credentials of the URL, to another server, or over plain HTTP.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if c.base == nil || !sameOrigin(c.base, req.URL) {
		return fmt.Errorf("%w: %s is not %s", ErrRedirectRefused, config.RedactURL(originOf(req.URL)), config.RedactURL(originOf(c.base)))
	}
	return nil
}

// sameOrigin reports whether a and b have the same scheme, host and port,
// the port defaulting by scheme.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

func originOf(u *url.URL) string {
	if u == nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

// Status returns a snapshot of what the client knows about the service.
func (c *Client) Status() kgdb.ServiceStatus {
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
	unavailable := func(format string, args ...any) error {
		return &ServiceError{Kind: ErrServiceUnavailable, Msg: "health at " + target + ": " + fmt.Sprintf(format, args...)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return unavailable("%v", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return unavailable("%v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	decodeErr := json.NewDecoder(io.LimitReader(resp.Body, maxHealthBytes)).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		return unavailable("answered %s", resp.Status)
	}
	if decodeErr != nil {
		return unavailable("unreadable answer: %v", decodeErr)
	}
	if body.Status != "healthy" && body.Status != "degraded" {
		return unavailable("reports status %q", body.Status)
	}
	return nil
}

// Ingest sends one document to the service and returns its checked result.
// Every error is a *ServiceError (see ClassifyFault), or wraps ctx's error
// when ctx itself ended, or is ErrServiceDisabled.
func (c *Client) Ingest(ctx context.Context, in *kgdb.IngestRequest) (*kgdb.IngestResult, error) {
	if !c.enabled {
		return nil, ErrServiceDisabled
	}
	res, err := c.ingest(ctx, in)
	switch f, _ := ClassifyFault(err); {
	case err == nil:
		c.record(false, true)
	case ctx.Err() != nil:
	case f == FaultNotSent || f == FaultDeferred:
		c.record(false, false)
	}
	return res, err
}

// sizeLimit reads at most n bytes and then fails with err, unlike
// io.LimitReader, which would make an oversized answer look merely
// truncated.
type sizeLimit struct {
	r   io.Reader
	n   int64
	err error
}

var (
	errTooLarge      = errors.New("answer is larger than the limit")
	errValueTooLarge = fmt.Errorf("a value of the answer is larger than %d bytes", MaxValueBytes)
)

func (l *sizeLimit) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, l.err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// MaxValueBytes bounds what the answer's decoder holds at once beyond the
// end of the last whole token: one string of the answer, or a value read
// whole (the summary, a field the worker does not know). Its buffer grows by
// doubling, so a single huge string would cost about three times its size at
// once, whatever the answer's own bound. Every string of an answer comes
// from the document, at most 1,000,000 characters: 6 MB even with every
// character escaped as \uXXXX.
const MaxValueBytes = 8 << 20

// answerReader feeds the answer's decoder, failing a read once the decoder
// would hold more than MaxValueBytes past the end of its last whole token.
// err is the error it failed with.
type answerReader struct {
	r    io.Reader
	read int64
	dec  *jsontext.Decoder
	err  error
}

func (a *answerReader) Read(p []byte) (int, error) {
	room := MaxValueBytes - (a.read - a.dec.InputOffset())
	if room <= 0 {
		a.err = errValueTooLarge
		return 0, a.err
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := a.r.Read(p)
	a.read += int64(n)
	if errors.Is(err, errTooLarge) {
		a.err = err
	}
	return n, err
}

func (c *Client) ingest(ctx context.Context, in *kgdb.IngestRequest) (*kgdb.IngestResult, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("ingest content_id %d: %w", in.ContentID, err)
	}
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// wrote tells a failure before anything was sent (connection refused,
	// no route) from one after: only the latter spends an attempt.
	var wrote atomic.Bool
	reqCtx = httptrace.WithClientTrace(reqCtx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	})
	target := c.ingestURL
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("ingest content_id %d: %w", in.ContentID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	fail := func(kind error, cause error, format string, args ...any) error {
		return &ServiceError{Kind: kind, Cause: cause, Msg: fmt.Sprintf("content_id %d at %s: ", in.ContentID, target) + fmt.Sprintf(format, args...)}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("ingest content_id %d: %w", in.ContentID, ctx.Err())
		case errors.Is(err, ErrRedirectRefused):
			return nil, fail(ErrIngestFailed, ErrRedirectRefused, "%v", err)
		case !wrote.Load():
			return nil, fail(ErrServiceUnavailable, nil, "not sent: %v", err)
		case errors.Is(reqCtx.Err(), context.DeadlineExceeded):
			return nil, fail(ErrIngestFailed, nil, "no answer within %s", c.timeout)
		default:
			return nil, fail(ErrIngestFailed, nil, "sent, then %v", err)
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorAnswer
		json.NewDecoder(io.LimitReader(resp.Body, maxHealthBytes)).Decode(&e) //nolint:errcheck // the status says enough
		detail := describe(e)
		switch resp.StatusCode {
		case http.StatusUnprocessableEntity:
			return nil, fail(ErrRejected, nil, "answered %s%s", resp.Status, detail)
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			err := fail(ErrDeferred, nil, "answered %s%s", resp.Status, detail)
			err.(*ServiceError).RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
			return nil, err
		default:
			return nil, fail(ErrIngestFailed, nil, "answered %s%s", resp.Status, detail)
		}
	}
	if resp.ContentLength > c.maxBytes {
		return nil, fail(ErrIngestFailed, ErrBadAnswer, "answer of %d bytes is larger than the limit of %d", resp.ContentLength, c.maxBytes)
	}
	res, err := decodeResult(&sizeLimit{r: resp.Body, n: c.maxBytes, err: errTooLarge})
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("ingest content_id %d: %w", in.ContentID, ctx.Err())
		case errors.Is(err, errTooLarge):
			return nil, fail(ErrIngestFailed, ErrBadAnswer, "answer is larger than the limit of %d bytes", c.maxBytes)
		case errors.Is(err, errValueTooLarge):
			return nil, fail(ErrIngestFailed, ErrBadAnswer, "%v", err)
		case errors.Is(reqCtx.Err(), context.DeadlineExceeded):
			return nil, fail(ErrIngestFailed, nil, "no whole answer within %s", c.timeout)
		}
		return nil, fail(ErrIngestFailed, ErrBadAnswer, "%v", err)
	}
	if err := checkResult(res, in); err != nil {
		return nil, fail(ErrIngestFailed, ErrBadAnswer, "%v", err)
	}
	return res, nil
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		d = time.Duration(min(s, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, maxRetryAfter))
}

// describe renders the service's own error fields for an error message.
func describe(e errorAnswer) string {
	switch {
	case e.Error != "" && e.ErrorType != "":
		return fmt.Sprintf(": %s: %s", e.ErrorType, e.Error)
	case e.Error != "":
		return ": " + e.Error
	case e.Detail != nil:
		b, _ := json.Marshal(e.Detail)
		return ": " + string(b)
	}
	return ""
}
