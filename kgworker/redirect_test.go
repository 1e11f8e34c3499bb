package kgworker_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
)

// TestRedirectOffOriginIsRefused points the client at a service that
// redirects to a second server: the document must never reach the second
// server, whatever the redirect's status, and the attempt fails with a
// reason naming both origins. A redirect within the configured origin is
// followed.
func TestRedirectOffOriginIsRefused(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		reply(200, okBody)(w, r)
	}))
	t.Cleanup(other.Close)

	for _, tc := range []struct {
		name   string
		tls    bool
		code   int
		target func(self string) string
		// followed: the redirect stays on the origin and the ingest works.
		followed bool
	}{
		{"307 to another origin", false, http.StatusTemporaryRedirect, func(string) string { return other.URL }, false},
		{"308 to another origin", false, http.StatusPermanentRedirect, func(string) string { return other.URL }, false},
		{"302 to another origin", false, http.StatusFound, func(string) string { return other.URL }, false},
		{"https to http on the same port", true, http.StatusTemporaryRedirect, func(self string) string {
			return strings.Replace(self, "https://", "http://", 1)
		}, false},
		{"the other server by another name", false, http.StatusTemporaryRedirect, func(string) string {
			return strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
		}, false},
		{"within the origin", false, http.StatusTemporaryRedirect, func(self string) string { return self + "/moved" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			elsewhere.Store(0)
			var srv *httptest.Server
			mux := http.NewServeMux()
			mux.HandleFunc("/api/v1/ingest", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, tc.target(srv.URL)+"/api/v1/ingest", tc.code)
			})
			mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, tc.target(srv.URL)+"/health", tc.code)
			})
			mux.HandleFunc("/moved/api/v1/ingest", reply(200, okBody))
			mux.HandleFunc("/moved/health", reply(200, `{"status":"healthy"}`))
			if tc.tls {
				srv = httptest.NewTLSServer(mux)
			} else {
				srv = httptest.NewServer(mux)
			}
			t.Cleanup(srv.Close)
			c, err := kgworker.NewClient(kgworker.ClientOpts{URL: srv.URL, Enabled: true, Transport: srv.Client().Transport})
			if err != nil {
				t.Fatal(err)
			}
			req := kgdb.NewIngestRequest(&kgdb.Content{ID: 7, URL: "https://a", Title: "A", Markdown: strings.Repeat("m", 60),
				Chunks: []kgdb.Chunk{{VectorRowID: 700, ChunkIndex: 0, CharStart: 0, CharEnd: 10, Text: "Go is fast"},
					{VectorRowID: 701, ChunkIndex: 1, CharStart: 10, CharEnd: 30, Text: "and it is simple"}}})
			_, ingestErr := c.Ingest(context.Background(), req)
			healthErr := c.Health(context.Background())
			if tc.followed {
				if ingestErr != nil || healthErr != nil {
					t.Fatalf("a redirect within the origin gave %v and %v", ingestErr, healthErr)
				}
				return
			}
			if n := elsewhere.Load(); n != 0 {
				t.Errorf("the other server received %d requests", n)
			}
			if !errors.Is(ingestErr, kgworker.ErrRedirectRefused) || !errors.Is(ingestErr, kgworker.ErrIngestFailed) {
				t.Errorf("Ingest error = %v, want a failed attempt wrapping ErrRedirectRefused", ingestErr)
			}
			if f, _ := kgworker.ClassifyFault(ingestErr); f != kgworker.FaultAttempt {
				t.Errorf("fault %v, want FaultAttempt", f)
			}
			if ingestErr != nil && !strings.Contains(ingestErr.Error(), srv.URL) {
				t.Errorf("Ingest error %q does not name the configured origin %s", ingestErr, srv.URL)
			}
			if !errors.Is(healthErr, kgworker.ErrServiceUnavailable) || !strings.Contains(healthErr.Error(), "redirect") {
				t.Errorf("Health error = %v, want unavailable for the redirect", healthErr)
			}
		})
	}
}
