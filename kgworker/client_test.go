package kgworker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

func TestIngest(t *testing.T) {
	const okBody = `{"success":true,"content_id":7,"entities_extracted":1,"relationships_extracted":1,
"processing_time_ms":12.5,"document_id":"doc-7",
"entities":[{"text":"Go","normalized":"go","type_primary":"Technology","type_sub1":null,"confidence":0.9,
 "chunk_rowid":700,"offset_start":0,"offset_end":2,"neo4j_node_id":"n1","spans_multiple_chunks":false}],
"relationships":[{"subject":"Go","predicate":"is","object":"fast","confidence":0.5,"context":"Go is fast",
 "neo4j_relationship_id":"r1","spans_chunks":true,"chunk_rowids":[700,701]}]}`
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		refused bool
		cancel  bool
		wantErr error
		wantMsg string
	}{
		{name: "success", handler: reply(200, okBody)},
		{name: "success false", handler: reply(200, `{"success":false,"error":"empty document","error_type":"ValueError"}`),
			wantErr: kgworker.ErrIngestFailed, wantMsg: "ValueError: empty document"},
		{name: "500 item error", handler: reply(500, `{"success":false,"error":"spaCy crashed","error_type":"RuntimeError"}`),
			wantErr: kgworker.ErrIngestFailed, wantMsg: "RuntimeError: spaCy crashed"},
		{name: "500 without body", handler: reply(500, ``), wantErr: kgworker.ErrIngestFailed, wantMsg: "500 Internal Server Error"},
		{name: "422 bad request", handler: reply(422, `{"detail":"bad"}`), wantErr: kgworker.ErrIngestFailed},
		{name: "503 unavailable", handler: reply(503, `{"success":false,"error":"neo4j down","error_type":"ServiceUnavailable"}`),
			wantErr: kgworker.ErrServiceUnavailable, wantMsg: "neo4j down"},
		{name: "502 from a proxy", handler: reply(502, `<html>bad gateway</html>`), wantErr: kgworker.ErrServiceUnavailable},
		{name: "answer not JSON", handler: reply(200, `<html>`), wantErr: kgworker.ErrIngestFailed, wantMsg: "unreadable answer"},
		{name: "answer for another document", handler: reply(200, `{"success":true,"content_id":8}`),
			wantErr: kgworker.ErrIngestFailed, wantMsg: "answered for content_id 8"},
		{name: "no answer within the timeout", handler: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}, wantErr: kgworker.ErrIngestFailed, wantMsg: "no answer"},
		{name: "connection refused", refused: true, wantErr: kgworker.ErrServiceUnavailable},
		{name: "caller gives up", cancel: true, handler: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, wantErr: context.Canceled},
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
				Chunks: []kgworker.Chunk{{VectorRowID: 700, ChunkIndex: 0, CharStart: 0, CharEnd: 10, Text: "Go is fast"}}})
			res, err := c.Ingest(ctx, req)

			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Ingest error = %v, want %v", err, tc.wantErr)
				}
				if tc.wantErr == context.Canceled && (errors.Is(err, kgworker.ErrIngestFailed) || errors.Is(err, kgworker.ErrServiceUnavailable)) {
					t.Errorf("cancelled ingest classified as %v", err)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("Ingest error = %q, want it to contain %q", err, tc.wantMsg)
				}
				if healthy := c.Status().IsHealthy; errors.Is(err, kgworker.ErrServiceUnavailable) && healthy {
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
			if got.ContentID != 7 || len(got.Chunks) != 1 || got.Chunks[0].VectorRowID != 700 || string(got.Metadata) != "{}" {
				t.Errorf("service received %+v", got)
			}
			if res.EntitiesExtracted != 1 || len(res.Entities) != 1 || res.Entities[0].ChunkRowID != 700 ||
				res.Entities[0].TypeSub1 != "" || res.ProcessingTimeMS != 12.5 || res.DocumentID != "doc-7" ||
				len(res.Relationships) != 1 || len(res.Relationships[0].ChunkRowIDs) != 2 || !res.Relationships[0].SpansChunks {
				t.Errorf("result = %+v", res)
			}
			if !c.Status().IsHealthy {
				t.Error("service not marked healthy after a successful ingest")
			}
		})
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
