package kgworker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
	"github.com/kato-manager/kato-manager/kgworker"
)

// refusedURL returns the URL of a local port nothing listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func reply(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		w.Write([]byte(body))
	}
}

func TestNewClientRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts kgworker.ClientOpts
		want string
	}{
		{"empty url", kgworker.ClientOpts{Enabled: true}, `invalid service_url "": must be an http or https URL with a host`},
		{"no scheme", kgworker.ClientOpts{Enabled: true, URL: "localhost:8088"}, `invalid service_url "localhost:8088": must be an http or https URL with a host`},
		{"other scheme", kgworker.ClientOpts{Enabled: true, URL: "ftp://kg"}, `invalid service_url "ftp://kg": must be an http or https URL with a host`},
		{"negative timeout", kgworker.ClientOpts{Enabled: true, URL: "http://kg", Timeout: -time.Second}, "invalid service_timeout -1s: must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := kgworker.NewClient(tc.opts); err == nil || err.Error() != tc.want {
				t.Errorf("NewClient error = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := kgworker.NewClient(kgworker.ClientOpts{Enabled: false}); err != nil {
		t.Errorf("disabled client without a URL: %v, want accepted", err)
	}
}

func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		refused bool
		healthy bool
	}{
		{name: "healthy", handler: reply(200, `{"status":"healthy"}`), healthy: true},
		{name: "degraded still takes work", handler: reply(200, `{"status":"degraded","detail":"neo4j slow"}`), healthy: true},
		{name: "unhealthy status", handler: reply(200, `{"status":"unhealthy"}`)},
		{name: "503", handler: reply(503, `{"status":"healthy"}`)},
		{name: "not JSON", handler: reply(200, `ok`)},
		{name: "too slow", handler: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}},
		{name: "connection refused", refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := ""
			if tc.refused {
				url = refusedURL(t)
			} else {
				srv := httptest.NewServer(tc.handler)
				t.Cleanup(srv.Close)
				url = srv.URL
			}
			c, err := kgworker.NewClient(kgworker.ClientOpts{URL: url, Enabled: true, HealthTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 2; i++ {
				err = c.Health(context.Background())
				if tc.healthy != (err == nil) || (err != nil && !errors.Is(err, kgworker.ErrServiceUnavailable)) {
					t.Fatalf("Health = %v, want healthy %v or ErrServiceUnavailable", err, tc.healthy)
				}
			}
			st := c.Status()
			wantFailures := 2
			if tc.healthy {
				wantFailures = 0
			}
			if st.IsHealthy != tc.healthy || st.ConsecutiveFailures != wantFailures || st.LastHealthCheck.IsZero() ||
				!st.Enabled || st.URL != url {
				t.Errorf("Status = %+v, want healthy %v with %d failures, checked, enabled, url %s", st, tc.healthy, wantFailures, url)
			}
		})
	}
}

func TestHealthRecovers(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			reply(503, `{"status":"unhealthy"}`)(w, r)
			return
		}
		reply(200, `{"status":"healthy"}`)(w, r)
	}))
	t.Cleanup(srv.Close)
	c, _ := kgworker.NewClient(kgworker.ClientOpts{URL: srv.URL + "/", Enabled: true})
	for i := 0; i < 3; i++ {
		c.Health(context.Background())
	}
	if st := c.Status(); st.ConsecutiveFailures != 3 || st.IsHealthy {
		t.Fatalf("after 3 failed checks: %+v", st)
	}
	down.Store(false)
	if err := c.Health(context.Background()); err != nil {
		t.Fatalf("Health after recovery: %v", err)
	}
	if st := c.Status(); st.ConsecutiveFailures != 0 || !st.IsHealthy {
		t.Errorf("after recovery: %+v, want healthy with no failures", st)
	}
	js, _ := json.Marshal(c.Status())
	for _, key := range []string{`"enabled":true`, `"url":"` + srv.URL + `/"`, `"is_healthy":true`, `"last_health_check":`, `"consecutive_failures":0`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("status JSON %s lacks %s", js, key)
		}
	}
}

// okBody is a success answer of the contract's model for content_id 7.
const okBody = `{"success":true,"content_id":7,"neo4j_document_id":"doc-7","entities_extracted":1,"relationships_extracted":1,
"processing_time_ms":12.5,
"entities":[{"text":"Go","normalized":"go","type_primary":"Technology","type_sub1":null,"type_sub2":null,"type_sub3":null,
 "type_full":"Technology","confidence":0.9,"neo4j_node_id":"n1","context_before":"","context_after":" is fast","sentence":"Go is fast",
 "chunk_appearances":[{"vector_rowid":700,"chunk_index":0,"offset_start":0,"offset_end":2}],"spans_multiple_chunks":false}],
"relationships":[{"subject_text":"Go","predicate":"is","object_text":"fast","subject_neo4j_id":"n1","object_neo4j_id":null,
 "confidence":0.5,"context":"Go is fast","neo4j_relationship_id":"r1","spans_chunks":true,"chunk_rowids":[700,701]}],
"summary":{"entities_by_type":{"Technology":1},"relationships_by_predicate":{"is":1},"chunks_with_entities":1,"avg_entities_per_chunk":1.0}}`

// without returns okBody with the top-level field dropped.
func without(t *testing.T, field string) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(okBody), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, field)
	b, _ := json.Marshal(m)
	return string(b)
}

// edited returns okBody with old replaced by new once.
func edited(old, new string) string { return strings.Replace(okBody, old, new, 1) }

func TestIngest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		handler   http.HandlerFunc
		refused   bool
		cancel    bool
		wantErr   error
		wantFault kgworker.Fault
		wantMsg   string
		wantAfter time.Duration
	}{
		{name: "success", handler: reply(200, okBody)},
		{name: "success false", handler: reply(200, `{"success":false,"error":"empty document","error_type":"ValueError"}`),
			wantErr: kgworker.ErrBadAnswer, wantFault: kgworker.FaultAttempt, wantMsg: "success false"},
		{name: "success alone", handler: reply(200, `{"success":true}`),
			wantErr: kgworker.ErrBadAnswer, wantFault: kgworker.FaultAttempt, wantMsg: "lacks content_id, neo4j_document_id"},
		{name: "500 item error", handler: reply(500, `{"success":false,"error":"spaCy crashed","error_type":"RuntimeError"}`),
			wantErr: kgworker.ErrIngestFailed, wantFault: kgworker.FaultAttempt, wantMsg: "RuntimeError: spaCy crashed"},
		{name: "500 without body", handler: reply(500, ``), wantErr: kgworker.ErrIngestFailed, wantFault: kgworker.FaultAttempt, wantMsg: "500 Internal Server Error"},
		{name: "422 rejected", handler: reply(422, `{"detail":[{"loc":["body","markdown"],"msg":"too short"}]}`),
			wantErr: kgworker.ErrRejected, wantFault: kgworker.FaultFinal, wantMsg: "too short"},
		{name: "503 with Retry-After", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			reply(503, `{"success":false,"error":"processors not initialised","error_type":"ServiceUnavailable"}`)(w, r)
		}, wantErr: kgworker.ErrDeferred, wantFault: kgworker.FaultDeferred, wantMsg: "processors not initialised", wantAfter: 7 * time.Second},
		{name: "429 with Retry-After", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "3")
			reply(429, ``)(w, r)
		}, wantErr: kgworker.ErrDeferred, wantFault: kgworker.FaultDeferred, wantAfter: 3 * time.Second},
		{name: "503 without Retry-After", handler: reply(503, ``), wantErr: kgworker.ErrDeferred, wantFault: kgworker.FaultDeferred, wantAfter: time.Second},
		{name: "502 from a proxy", handler: reply(502, `<html>bad gateway</html>`), wantErr: kgworker.ErrIngestFailed, wantFault: kgworker.FaultAttempt},
		{name: "answer not JSON", handler: reply(200, `<html>`), wantErr: kgworker.ErrBadAnswer, wantFault: kgworker.FaultAttempt},
		{name: "answer for another document", handler: reply(200, edited(`"content_id":7`, `"content_id":8`)),
			wantErr: kgworker.ErrBadAnswer, wantFault: kgworker.FaultAttempt, wantMsg: "answer is for content_id 8"},
		{name: "count disagrees", handler: reply(200, edited(`"entities_extracted":1`, `"entities_extracted":2`)),
			wantErr: kgworker.ErrBadAnswer, wantFault: kgworker.FaultAttempt, wantMsg: "entities_extracted 2 but 1 entities"},
		{name: "relationship count disagrees", handler: reply(200, edited(`"relationships_extracted":1`, `"relationships_extracted":0`)),
			wantErr: kgworker.ErrBadAnswer, wantFault: kgworker.FaultAttempt, wantMsg: "relationships_extracted 0"},
		{name: "no document id", handler: reply(200, without(t, "neo4j_document_id")), wantErr: kgworker.ErrBadAnswer, wantMsg: "lacks neo4j_document_id"},
		{name: "no summary", handler: reply(200, without(t, "summary")), wantErr: kgworker.ErrBadAnswer, wantMsg: "lacks summary"},
		{name: "no entities", handler: reply(200, without(t, "entities")), wantErr: kgworker.ErrBadAnswer, wantMsg: "lacks entities"},
		{name: "content_id a string", handler: reply(200, edited(`"content_id":7`, `"content_id":"7"`)), wantErr: kgworker.ErrBadAnswer, wantMsg: "content_id"},
		{name: "entity without appearances", handler: reply(200, edited(`"chunk_appearances":[{"vector_rowid":700,"chunk_index":0,"offset_start":0,"offset_end":2}],`, ``)),
			wantErr: kgworker.ErrBadAnswer, wantMsg: "entity lacks chunk_appearances"},
		{name: "appearance in another chunk", handler: reply(200, edited(`"vector_rowid":700`, `"vector_rowid":999`)),
			wantErr: kgworker.ErrBadAnswer, wantMsg: "vector_rowid 999 is not a chunk of the request"},
		{name: "relationship without subject", handler: reply(200, edited(`"subject_text":"Go",`, ``)),
			wantErr: kgworker.ErrBadAnswer, wantMsg: "relationship lacks subject_text"},
		{name: "confidence above 1", handler: reply(200, edited(`"confidence":0.9`, `"confidence":1.5`)),
			wantErr: kgworker.ErrBadAnswer, wantMsg: "confidence 1.5"},
		{name: "no answer within the timeout", handler: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}, wantErr: kgworker.ErrIngestFailed, wantFault: kgworker.FaultAttempt, wantMsg: "no answer"},
		{name: "read, then the connection drops", handler: func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, wantErr: kgworker.ErrIngestFailed, wantFault: kgworker.FaultAttempt, wantMsg: "sent, then"},
		{name: "connection refused", refused: true, wantErr: kgworker.ErrServiceUnavailable, wantFault: kgworker.FaultNotSent, wantMsg: "not sent"},
		{name: "caller gives up", cancel: true, handler: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, wantErr: context.Canceled, wantFault: kgworker.FaultAttempt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got kgworker.IngestRequest
			var path, ctype string
			url := refusedURL(t)
			if !tc.refused {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					path, ctype = r.URL.Path, r.Header.Get("Content-Type")
					json.NewDecoder(r.Body).Decode(&got)
					tc.handler(w, r)
				}))
				t.Cleanup(srv.Close)
				url = srv.URL
			}
			c, err := kgworker.NewClient(kgworker.ClientOpts{URL: url, Enabled: true, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			req := kgworker.NewIngestRequest(&kgworker.Content{ID: 7, URL: "https://a", Title: "A", Markdown: "# A",
				Chunks: []kgworker.Chunk{{VectorRowID: 700, ChunkIndex: 0, CharStart: 0, CharEnd: 10, Text: "Go is fast"},
					{VectorRowID: 701, ChunkIndex: 1, CharStart: 10, CharEnd: 30, Text: "and it is simple"}}})
			res, err := c.Ingest(ctx, req)

			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Ingest error = %v, want %v", err, tc.wantErr)
				}
				if res != nil {
					t.Errorf("Ingest returned a result with its error: %+v", res)
				}
				if tc.wantErr == context.Canceled && (errors.Is(err, kgworker.ErrIngestFailed) || errors.Is(err, kgworker.ErrServiceUnavailable)) {
					t.Errorf("cancelled ingest classified as %v", err)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("Ingest error = %q, want it to contain %q", err, tc.wantMsg)
				}
				want := tc.wantFault
				if want == kgworker.FaultNone {
					want = kgworker.FaultAttempt
				}
				if f, after := kgworker.ClassifyFault(err); f != want || after != tc.wantAfter {
					t.Errorf("ClassifyFault = %v, %s; want %v, %s", f, after, want, tc.wantAfter)
				}
				if healthy := c.Status().IsHealthy; (errors.Is(err, kgworker.ErrServiceUnavailable) || errors.Is(err, kgworker.ErrDeferred)) && healthy {
					t.Errorf("service still marked healthy after %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if path != "/api/v1/ingest" || ctype != "application/json" {
				t.Errorf("request went to %s as %q", path, ctype)
			}
			if got.ContentID != 7 || len(got.Chunks) != 2 || got.Chunks[0].VectorRowID != 700 || string(got.Metadata) != "{}" {
				t.Errorf("service received %+v", got)
			}
			e := res.Entities[0]
			if res.EntitiesExtracted != 1 || len(res.Entities) != 1 || len(e.ChunkAppearances) != 1 ||
				e.ChunkAppearances[0] != (kgworker.ChunkAppearance{VectorRowID: 700, ChunkIndex: 0, OffsetStart: 0, OffsetEnd: 2}) ||
				e.TypeSub1 != nil || e.TypeFull != "Technology" || e.Neo4jNodeID == nil || *e.Neo4jNodeID != "n1" || e.Sentence != "Go is fast" ||
				res.ProcessingTimeMS != 12.5 || res.Neo4jDocumentID != "doc-7" {
				t.Errorf("result = %+v", res)
			}
			r := res.Relationships[0]
			if len(res.Relationships) != 1 || r.SubjectText != "Go" || r.ObjectText != "fast" || r.Predicate != "is" ||
				len(r.ChunkRowIDs) != 2 || !r.SpansChunks || r.ObjectNeo4jID != nil || *r.SubjectNeo4jID != "n1" {
				t.Errorf("relationship = %+v", r)
			}
			var sum kgworker.Summary
			if err := json.Unmarshal(res.Summary, &sum); err != nil || sum.EntitiesByType["Technology"] != 1 || sum.ChunksWithEntities != 1 {
				t.Errorf("summary = %s, %v", res.Summary, err)
			}
			if !c.Status().IsHealthy {
				t.Error("service not marked healthy after a successful ingest")
			}
		})
	}
}

// TestIngestLargestAnswer checks the size limit against the largest real
// answer: 1000 chunks, with 30 entities per chunk each carrying its
// context and sentence (some 30 MiB). It must fit under the default limit
// and be decoded as it arrives, without copies of it: the old client's
// io.ReadAll and Unmarshal took about twelve times the answer's size.
func TestIngestLargestAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("large answer")
	}
	req := &kgworker.IngestRequest{ContentID: 9, URL: "https://example.org/big", Title: "Big", Markdown: strings.Repeat("m", 50)}
	for i := 0; i < kgworker.MaxChunks; i++ {
		req.Chunks = append(req.Chunks, kgworker.Chunk{VectorRowID: int64(i + 1), ChunkIndex: i, CharStart: i * 10, CharEnd: i*10 + 10, Text: "ten chars!"})
	}
	answer := kgservicefake.Extract(kgservicefake.IngestRequest{ContentID: 9})
	ctxText := strings.Repeat("c", 300)
	for i := 0; i < kgworker.MaxChunks; i++ {
		for k := 0; k < 30; k++ {
			node := fmt.Sprintf("node-%d-%d", i, k)
			answer.Entities = append(answer.Entities, kgservicefake.Entity{
				Text: fmt.Sprintf("Entity %d.%d", i, k), Normalized: fmt.Sprintf("entity %d.%d", i, k), TypePrimary: "Concept",
				TypeFull: "Concept", Confidence: 0.5, Neo4jNodeID: &node, ContextBefore: ctxText, ContextAfter: ctxText, Sentence: ctxText,
				ChunkAppearances: []kgservicefake.ChunkAppearance{{VectorRowID: int64(i + 1), ChunkIndex: i, OffsetStart: 0, OffsetEnd: 5}},
			})
		}
	}
	answer.EntitiesExtracted = len(answer.Entities)
	body, err := json.Marshal(answer)
	if err != nil {
		t.Fatal(err)
	}
	// The handler writes the prepared bytes: no copy of them is made on the
	// server's side of this process.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	if len(body) >= kgworker.DefaultMaxResponseBytes/2 {
		t.Errorf("the largest answer is %d bytes, too close to the limit of %d", len(body), kgworker.DefaultMaxResponseBytes)
	}
	c, err := kgworker.NewClient(kgworker.ClientOpts{URL: srv.URL, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := c.Ingest(context.Background(), req)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entities) != 30*kgworker.MaxChunks {
		t.Fatalf("answer has %d entities", len(res.Entities))
	}
	// What the decoded entities themselves take, plus the decoder's
	// buffer and per-entity scratch.
	allocated := after.TotalAlloc - before.TotalAlloc
	if limit := 3 * uint64(len(body)); allocated > limit {
		t.Errorf("ingesting a %d-byte answer allocated %d bytes, want at most %d", len(body), allocated, limit)
	}
	t.Logf("answer %d bytes, allocated %d bytes", len(body), allocated)

	small, err := kgworker.NewClient(kgworker.ClientOpts{URL: srv.URL, Enabled: true, MaxResponseBytes: int64(len(body) / 2)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Ingest(context.Background(), req); !errors.Is(err, kgworker.ErrBadAnswer) || !strings.Contains(err.Error(), "larger than the limit") {
		t.Errorf("an answer over the limit gave %v", err)
	}
}

func TestDisabledClientSendsNothing(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	c, err := kgworker.NewClient(kgworker.ClientOpts{URL: srv.URL, Enabled: false})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Health(context.Background()); !errors.Is(err, kgworker.ErrServiceDisabled) {
		t.Errorf("Health = %v, want ErrServiceDisabled", err)
	}
	if _, err := c.Ingest(context.Background(), &kgworker.IngestRequest{ContentID: 1}); !errors.Is(err, kgworker.ErrServiceDisabled) {
		t.Errorf("Ingest = %v, want ErrServiceDisabled", err)
	}
	if hits.Load() != 0 {
		t.Errorf("disabled client made %d requests", hits.Load())
	}
	if st := c.Status(); st.Enabled {
		t.Errorf("Status = %+v, want disabled", st)
	}
}

// The status a worker reports (and /stats shows) never carries the
// credentials of the service URL.
func TestClientStatusRedactsURL(t *testing.T) {
	c, err := kgworker.NewClient(kgworker.ClientOpts{URL: "http://kg:hunter2@127.0.0.1:1", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Status().URL; got != "http://REDACTED@127.0.0.1:1" {
		t.Errorf("Status().URL = %q", got)
	}
}
